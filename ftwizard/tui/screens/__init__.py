"""Screens and step panes of the wizard."""
