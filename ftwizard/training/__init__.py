"""Training: the trainer process (heavy) and its launcher (light)."""
