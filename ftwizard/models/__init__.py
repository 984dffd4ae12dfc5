"""Base models: the embedded default and the resolution of hub ids and local folders."""
