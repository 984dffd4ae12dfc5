"""Which weights `ftwizard serve/chat RUN [--checkpoint C] [--base]` loads, and the errors when
they are not there (fast: folders only, no model is loaded)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from ftwizard.errors import UserError
from ftwizard.serve import protocol as P
from ftwizard.serve.target import ServeTarget, resolve_target, servable_runs
from helpers import tiny_config


@pytest.fixture
def run(tmp_path):
    cfg_path = tiny_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    runs = tmp_path / "runs"
    run = runs / "demo"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "name": "demo"}))
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 4, "started_at": time.time()}))
    for d in ("checkpoints/checkpoint-2", "checkpoints/checkpoint-4", "adapter"):
        (run / d).mkdir(parents=True)
        (run / d / "adapter_config.json").write_text("{}")
    return runs, run


def test_final_checkpoint_and_base(run):
    runs, folder = run
    t = resolve_target("demo", runs)
    assert (t.name, t.kind, t.label, t.path) == ("demo", "adapter", "final", str(folder / "adapter"))
    assert t.system_prompt == "Answer with one word."  # shared by every training row
    assert t.model_ids == ["demo", "base"]
    assert resolve_target("demo", runs, "2").path == str(folder / "checkpoints" / "checkpoint-2")
    assert resolve_target("demo", runs, "checkpoint-4").label == "checkpoint-4"
    assert resolve_target("demo", runs, "best").label == "checkpoint-4"  # no eval loss logged: the latest
    b = resolve_target("demo", runs, base_only=True)
    assert (b.kind, b.path, b.model_ids) == ("base", None, ["base"])
    assert ServeTarget.from_json(t.to_json()) == t
    assert servable_runs(runs) == [folder]


def test_missing_weights_are_clear_errors(run):
    runs, folder = run
    with pytest.raises(UserError, match="no checkpoint at step 7") as e:
        resolve_target("demo", runs, "7")
    assert "2, 4" in e.value.fix
    with pytest.raises(UserError, match="no merged export") as e:
        resolve_target("demo", runs, "merged")
    assert "ftwizard export demo --format merged" in e.value.fix
    with pytest.raises(UserError, match="not a checkpoint"):
        resolve_target("demo", runs, "latest")
    with pytest.raises(UserError, match="--checkpoint needs a run"):
        resolve_target("demo", runs, "2", base_only=True)
    with pytest.raises(UserError, match="no run named"):
        resolve_target("nope", runs)
    (folder / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(UserError, match="no final model yet") as e:
        resolve_target("demo", runs)
    assert "--checkpoint 4" in e.value.fix


def test_merged_export_is_served_as_a_whole_model(run):
    runs, folder = run
    (folder / "export" / "merged").mkdir(parents=True)
    (folder / "export" / "merged" / "config.json").write_text("{}")
    t = resolve_target("demo", runs, "merged")
    assert (t.kind, t.label) == ("full", "merged")


def test_request_rules():
    ok = P.parse_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                    {"type": "text", "text": "b"}]}],
                          "stop": "x", "max_completion_tokens": 9, "logprobs": False})
    assert ok.turns() == [{"role": "user", "content": "ab"}] and ok.stops == ["x"] and ok.token_limit == 9
    assert ok.temperature == 0.0  # greedy unless asked
    for body, field in [({"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}, "max_tokens"),
                        ({"messages": [{"role": "user", "content": "a"}], "top_p": 0}, "top_p"),
                        ({"messages": [{"role": "user", "content": "a"}], "stop": ["a"] * 5}, "stop"),
                        ([1, 2], "body")]:
        with pytest.raises(P.RequestError) as e:
            P.parse_request(body)
        assert e.value.status == 400 and field in e.value.message


def _feed(tok, text: str, stops: list[str]):
    import numpy as np

    from ftwizard.serve.model import _Streamer

    out: list[str] = []
    s = _Streamer(tok, out.append, stops, on_token=lambda: None)
    s.put(np.array([[1, 2, 3]]))  # the prompt comes first and is skipped
    for i in tok(text, add_special_tokens=False)["input_ids"]:
        s.put(np.array([i]))
        if s.stopped:
            break
    s.end()
    return out, s


def test_streamer_emits_tokens_and_cuts_at_stop_strings(embedded_tokenizer):
    text = "Paris is the capital. It has the Eiffel tower ✓ END and more"
    out, s = _feed(embedded_tokenizer, text, [])
    assert "".join(out) == text and len(out) > 8  # one piece per token, multi-byte characters whole
    assert all("\ufffd" not in p for p in out)
    out, s = _feed(embedded_tokenizer, text, [" END", "zzz"])
    assert "".join(out) == s.final_text() == "Paris is the capital. It has the Eiffel tower ✓"
    assert s.stopped
