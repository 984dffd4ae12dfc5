"""Data sets: loading, format detection and conversion, lint, fixes, splits, preview."""
