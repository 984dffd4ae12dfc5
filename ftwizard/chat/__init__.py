"""Talking to a served model: an HTTP client for the OpenAI-compatible API (`client`),
the terminal chat (`terminal`). Light: no torch; the model runs in the server process."""
