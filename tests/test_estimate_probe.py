"""`ftwizard estimate --probe`: real training steps in a subprocess, measured peak beside
the estimate. On this CPU machine it measures live tensor bytes with torch.profiler."""

from __future__ import annotations

import json

import pytest

from ftwizard.cli import main


@pytest.mark.slow
def test_probe_on_cpu_with_the_embedded_model(tmp_path, capsys, embedded_model_dir):
    rows = [{"messages": [{"role": "user", "content": "Summarise: printer jams " * k},
                          {"role": "assistant", "content": '{"urgency": "low"}'}]} for k in (1, 3, 8)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["estimate", "--model", "embedded", "--method", "lora", "--max-length", "64", "--batch", "2",
                 "--data", str(data), "--probe", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    p = d["probe"]
    assert "error" not in p, p
    assert p["device"] == "cpu" and p["steps"] == 2 and p["micro_batch"] == 2
    assert p["seq_len"] <= 64 and all(x == x for x in p["losses"])  # finite losses
    # the CPU estimate (fp32, allocated bytes) against the profiler's peak
    assert abs(p["error_pct"]) < 15, p
    assert data.read_text().count("\n") == 3  # the user's file is untouched


def test_probe_reports_a_bad_model_cleanly(tmp_path):
    from types import SimpleNamespace

    from ftwizard.hardware.estimate import EstimateInput, estimate
    from ftwizard.hardware.probe import run_probe_subprocess

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "vocab_size": 100}))
    est = estimate(EstimateInput(model=str(folder), max_length=32))
    res = run_probe_subprocess(SimpleNamespace(probe_steps=1), est, None, None)
    assert "error" in res and "Traceback" not in res["error"]
