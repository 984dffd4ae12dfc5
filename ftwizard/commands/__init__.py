"""Headless command handlers, one module per step; imports stay lazy."""
