"""A real tool-calling SFT of the embedded model on the CPU: its own template drops tools, so the run sets
data.chat_template: chatml (Hermes-style tools); loss falls, `ftwizard eval` scores the calls (base vs tuned),
and the exported adapter loads back with the template that renders tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.rundir import RunDir, latest_by_step

from helpers import write_jsonl

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
CITIES = ["Oslo", "Paris", "Lima", "Tokyo", "Cairo", "Quito", "Seoul", "Dublin", "Hanoi", "Madrid", "Rome"]


def tool_rows(cities: list[str], plain: int = 0) -> list[dict]:
    rows = []
    for i, city in enumerate(cities):
        msgs = [{"role": "user", "content": f"Weather in {city}?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}]
        if i % 2 == 0:  # half the rows go on to the result and the answer; the rest end at the call
            msgs += [{"role": "tool", "tool_call_id": f"c{i}", "content": json.dumps({"temp": 10 + i})},
                     {"role": "assistant", "content": f"It is {10 + i} C in {city}."}]
        rows.append({"messages": msgs, "tools": [WEATHER]})
    for _ in range(plain):
        rows.append({"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hello!"}],
                     "tools": [WEATHER]})
    return rows


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory) -> RunDir:
    tmp = tmp_path_factory.mktemp("tools")
    train = write_jsonl(tmp / "train.jsonl", tool_rows(CITIES[:6]))
    held_out = write_jsonl(tmp / "eval.jsonl", tool_rows(CITIES[8:10]))
    cfg = {"runs_dir": str(tmp / "runs"), "model": {"base": "embedded", "method": "lora"},
           "data": {"train": str(train), "eval": str(held_out), "max_length": 256, "chat_template": "chatml"},
           "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
           "training": {"learning_rate": 2e-3, "max_steps": 3, "batch_size": 2, "gradient_accumulation": 1,
                        "warmup_ratio": 0.0, "scheduler": "constant", "eval_every": 0, "save_every": 0, "seed": 7,
                        "log_every": 1}}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = cli("train", str(path), "--name", "tools")
    run = RunDir(tmp / "runs" / "tools")
    assert r.returncode == 0, r.stdout + r.stderr + (run.log.read_text() if run.log.exists() else "")
    return run


def test_tool_calling_sft_trains_evaluates_and_exports(tool_run):
    run = tool_run
    assert run.status()["state"] == "completed"
    losses = {e["step"]: e["loss"] for e in latest_by_step(list(run.iter_events()))}
    assert sorted(losses) == [1, 2, 3] and losses[3] < losses[1], losses

    # eval: call-name accuracy, argument exact match and JSON validity, base and tuned, in the summary
    r = cli("eval", str(run.path), "--checkpoints", "final", "--no-probe", "--few-shot", "0", "--max-samples", "2", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((run.path / "eval" / "summary.json").read_text())
    names = [m["name"] for m in summary["metrics"]]
    assert {"tool_name_accuracy", "tool_args_exact", "tool_json_valid"} <= set(names), names
    assert len(summary["models"]) == 2, summary["models"]  # base and final
    results = {p.stem: json.loads(p.read_text()) for p in (run.path / "eval").glob("*.json") if p.stem != "summary"}
    tuned = next(v for v in results.values() if v.get("kind") != "base" and v.get("tool_calls"))
    tc = tuned["tool_calls"]
    assert tc["counts"] == {"call_rows": 2, "plain_rows": 0} and len(tc["samples"]) == 2
    for m in ("tool_name_accuracy", "tool_args_exact", "tool_json_valid"):
        assert 0.0 <= tuned["metrics"][m] <= 1.0
    # the metrics agree with the outputs they were computed from
    from ftwizard.evaluation.toolcalls import parse_calls

    outs = [s["output"] for s in tc["samples"]]
    assert tuned["metrics"]["tool_json_valid"] == sum(bool(parse_calls(o)[0]) and parse_calls(o)[1] for o in outs) / 2

    # export the adapter: the exporter loads it back with PEFT and checks it against the trained model; its
    # tokenizer carries the template that renders tools
    r = cli("export", str(run.path), "--format", "adapter", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads((run.path / "export" / "manifest.json").read_text())
    adapter = manifest["exports"]["adapter"]
    assert adapter["state"] == "ok" and all(c["ok"] for c in adapter["checks"]), adapter
    assert "loaded back" in adapter["checks"][0]["name"]
    from transformers import AutoTokenizer

    from ftwizard.data.tools import template_tool_problem

    tok = AutoTokenizer.from_pretrained(run.path / "export" / adapter["path"])
    assert template_tool_problem(tok) is None
