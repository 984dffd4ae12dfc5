"""Serving a whole model (`--checkpoint merged`, or a full fine-tune's model/): the base for
comparison is then a second load, made on first use. Here the "merged export" is the embedded
model's own files, so the tuned and base answers must be identical (greedy)."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.slow


def test_merged_export_served_with_the_base_beside(tmp_path, embedded_model_dir):
    from ftwizard.chat.client import ChatClient
    from ftwizard.serve.launch import start_server
    from ftwizard.serve.target import resolve_target
    from helpers import tiny_config

    cfg = tiny_config(tmp_path)
    run = tmp_path / "runs" / "demo"
    merged = run / "export" / "merged"
    merged.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.read_text())
    (run / "status.json").write_text(json.dumps({"state": "completed", "started_at": time.time()}))
    for f in embedded_model_dir.iterdir():
        (merged / f.name).symlink_to(f)
    target = resolve_target("demo", tmp_path / "runs", "merged")
    assert (target.kind, target.model_ids) == ("full", ["demo", "base"])
    server = start_server(target)
    try:
        server.wait_ready(600)
        client = ChatClient(server.base_url, server.token)
        q = [{"role": "user", "content": "What colour is the sky?"}]
        tuned = client.complete(q, "demo", max_tokens=12)
        base = client.complete(q, "base", max_tokens=12)
        assert tuned["choices"][0]["message"]["content"] == base["choices"][0]["message"]["content"] != ""
        client.close()
    finally:
        server.stop()
