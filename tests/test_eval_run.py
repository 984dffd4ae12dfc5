"""A real evaluation of a real short run of the embedded model (CPU): baseline before
training, then base / checkpoint / final side by side, resume, and the CLI's errors."""

from __future__ import annotations

import json
import os

import pytest

from ftwizard.cli import main
from helpers import tiny_config

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the trainer and eval processes inherit it


def _eval_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_baseline_then_run_eval_side_by_side(tmp_path, capsys):
    cfg = tiny_config(tmp_path, "lora", save_every=2)
    quick = ["--max-samples", "4", "--probe-size", "8", "--runs-dir", str(tmp_path / "runs")]

    # Baseline first: the base model on the held-out file, before any run exists.
    base_only = _eval_json(capsys, str(cfg), *quick)
    assert [m["id"] for m in base_only["models"]] == ["base", "base-3shot"]  # k-shot row by default
    assert base_only["task"] == "label" and base_only["best_checkpoint"] is None
    baselines = list((tmp_path / "runs" / ".baselines").glob("*/base.json"))
    assert len(baselines) == 1
    kshot = json.loads((baselines[0].parent / "base-3shot.json").read_text())
    assert kshot["probe"] is None and kshot["few_shot"] == 3  # same weights as base: the probe is not re-run
    assert base_only["models"][1]["metrics"]["probe_score"] == base_only["models"][0]["metrics"]["probe_score"]

    assert main(["train", str(cfg), "--name", "tiny"]) == 0
    run = tmp_path / "runs" / "tiny"
    assert (run / "checkpoints" / "checkpoint-2").is_dir() and (run / "adapter").is_dir()

    s = _eval_json(capsys, "tiny", *quick)
    ids = [m["id"] for m in s["models"]]
    assert ids == ["base", "base-3shot", "checkpoint-2", "final"]  # checkpoint-4 is the final weights: scored once
    events = [json.loads(line) for line in (run / "eval" / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "model_skipped" and e["model"] == "base" and "baseline" in e["reason"]
               for e in events)
    by_id = {m["id"]: m["metrics"] for m in s["models"]}
    for mid in ids:
        assert set(by_id[mid]) >= {"accuracy", "macro_f1", "exact_match", "eval_loss", "perplexity", "probe_score",
                                   "stop_rate", "loop_rate", "length_ratio"}
        assert 0 <= by_id[mid]["stop_rate"] <= 1 and by_id[mid]["length_ratio"] > 0
    # The fine-tuned model learned the colour task; the base answers in sentences.
    assert by_id["final"]["accuracy"] > by_id["base"]["accuracy"]
    assert by_id["final"]["eval_loss"] < by_id["base"]["eval_loss"]
    assert s["best_checkpoint"] in ("checkpoint-2", "final")
    # one-word answers learned on 4 rows: the verdict states its margin and interval, whatever it decides
    v = s["verdict"]
    assert v["status"] in ("better", "inconclusive") and v["low"] <= v["margin"] <= v["high"] and v["n"] == 4
    assert f"{v['n']} rows" in v["text"]
    final_rows = json.loads((run / "eval" / "final.json").read_text())
    assert len(final_rows["rows"]["loss"]) == 4 and all(st in (True, False) for st in
                                                        (x["stopped"] for x in final_rows["samples"]))
    assert len(s["samples"]) == 4 and all(x["tuned"] is not None for x in s["samples"])
    final = json.loads((run / "eval" / "final.json").read_text())
    assert final["probe"]["probe_score"] == by_id["final"]["probe_score"] and len(final["probe"]["outputs"]) == 8
    assert final["device"] == "cpu" and final["precision"] == "fp32"
    # the run's one-page summary (written when training ended) now carries the results
    summary_md = (run / "summary.md").read_text()
    assert "No evaluation yet" not in summary_md and "macro" in summary_md.lower()

    # Resume: nothing is recomputed, and the Rich table names every model.
    results = [run / "eval" / f"{mid}.json" for mid in ids]
    mtimes = [p.stat().st_mtime_ns for p in results]
    capsys.readouterr()
    # again with a relative run path from the run's parent folder (issue 19: paths cross process boundaries)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["eval", "./runs/tiny", *quick[:-2], "--runs-dir", "runs"]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    assert [p.stat().st_mtime_ns for p in results] == mtimes
    assert "step 2" in out.out and "final" in out.out and "base" in out.out
    assert "kept" in out.err


def test_eval_errors_are_clear(tmp_path, capsys):
    cfg = tiny_config(tmp_path, "lora")
    assert main(["eval", "nope", "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "no run named 'nope'" in capsys.readouterr().err
    train = tmp_path / "train.jsonl"
    assert main(["eval", str(cfg), "--eval-file", str(train), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "held-out file is the training file" in capsys.readouterr().err
    assert main(["eval", str(cfg), "--eval-file", str(tmp_path / "missing.jsonl")]) == 1
    assert "held-out file not found" in capsys.readouterr().err
    assert main(["eval", str(cfg), "--metric", "bleu", "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "metric 'bleu' does not apply to this label task" in err and "accuracy, macro_f1" in err
