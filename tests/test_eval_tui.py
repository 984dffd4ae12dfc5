"""The Evaluate step through the Pilot: it finds the run, shows the table and pages samples.

The eval folder is written here from hand-made per-model results (the step only reads
files; the real evaluation is covered in test_eval_run.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ftwizard.config import load_config
from ftwizard.evaluation import metrics as M
from ftwizard.evaluation.compare import build_summary, write_summary
from ftwizard.tui.app import available_steps

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config  # noqa: E402
from test_tui_app import app_for_tests, cwd_tmp, text_of, wait_for  # noqa: E402,F401


def _write_result(eval_dir: Path, mid: str, kind: str, step: int, outputs: list[str], refs: list[str]) -> None:
    scores = M.score("label", outputs, refs)
    metrics = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    metrics.update(eval_loss=2.0 if kind == "base" else 0.3, probe_score=0.6)
    res = {"id": mid, "label": "base" if kind == "base" else mid, "kind": kind, "step": step, "task": "label",
           "metrics": metrics, "details": {},
           "samples": [{"row": i + 1, "input": f"What colour is thing {i}?", "reference": r, "output": o,
                        "correct": M.sample_correct("label", o, r)} for i, (o, r) in enumerate(zip(outputs, refs))]}
    (eval_dir / f"{mid}.json").write_text(json.dumps(res))


def _fake_run(tmp_path: Path) -> Path:
    cfg = load_config(tiny_config(tmp_path))
    run = tmp_path / "runs" / "tiny"
    (run / "eval").mkdir(parents=True)
    cfg.model_copy(update={"name": "tiny"}).save(run / "config.yaml")
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 4, "started_at": 1.0}))
    refs = ["blue", "green", "white"]
    _write_result(run / "eval", "base", "base", 0, ["The sky is blue", "grass", "snowy"], refs)
    _write_result(run / "eval", "final", "adapter", 4, ["blue", "green", "white"], refs)
    write_summary(run / "eval", build_summary(run / "eval", ["base", "final"]))
    return run


def test_evaluate_step_is_in_the_wizard_after_train():
    titles = [c.TITLE for c in available_steps()]
    assert titles.index("Evaluate") == titles.index("Train") + 1


def test_evaluate_step_imports_no_heavy_library():
    code = ("import sys, ftwizard.tui.screens.evaluate, ftwizard.commands.eval_cmds, ftwizard.evaluation.launch, "
            "ftwizard.evaluation.report; heavy = {'torch','transformers','peft','trl','datasets'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_evaluate_step_shows_table_and_pages_samples(cwd_tmp):
    run = _fake_run(cwd_tmp)
    app = app_for_tests(runs_dir=run.parent)
    titles = [c.TITLE for c in available_steps()]
    async with app.run_test(size=(110, 40)) as pilot:
        for _ in range(titles.index("Evaluate")):
            await pilot.press("ctrl+n")
        step = app.screen.query_one(f"#step-{titles.index('Evaluate')}")
        await wait_for(pilot, lambda: step.summary is not None)
        table = text_of(step.query_one("#eval-table"))
        assert "base" in table and "final" in table and "acc" in table
        assert "final macro F1 100%" in table
        head = text_of(step.query_one("#eval-head"))
        assert "run tiny" in head
        assert "sample 1 of 3" in text_of(step.query_one("#eval-sample"))
        await pilot.press("pagedown")
        await pilot.pause()
        sample = text_of(step.query_one("#eval-sample"))
        assert "sample 2 of 3" in sample and "green" in sample
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        assert "sample 3 of 3" in text_of(step.query_one("#eval-sample"))


def _json_eval_run(tmp_path: Path) -> Path:
    """A finished JSON-task evaluation with a k-shot row, per-field columns and behaviour columns."""
    from test_eval_truth import _ticket, write_result

    cfg = load_config(tiny_config(tmp_path))
    run = tmp_path / "runs" / "tiny"
    (run / "eval").mkdir(parents=True)
    cfg.model_copy(update={"name": "tiny"}).save(run / "config.yaml")
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 50, "started_at": 1.0}))
    words = ["printer", "invoice", "login", "parcel", "refund", "password", "screen", "order"] * 3
    refs = [_ticket(f"Customer reports a broken {w} since Monday", ["low", "high"][i % 2],
                    ["billing", "technical"][i % 2]) for i, w in enumerate(words)]
    write_result(run / "eval", "base", "base", ["Sure! Here is the JSON."] * len(refs), refs, probe=[1, 0, 1, 1])
    write_result(run / "eval", "base-3shot", "base", [_ticket(f"broken {w}", "low", "billing") for w in words], refs,
                 few_shot=3)
    write_result(run / "eval", "checkpoint-25", "adapter", [_ticket(w, "low", "technical") for w in words], refs,
                 step=25, probe=[1, 0, 1, 0])
    write_result(run / "eval", "final", "adapter",
                 [_ticket(f"Customer reports a broken {w}", ["low", "high"][i % 2], ["billing", "technical"][i % 2])
                  for i, w in enumerate(words)], refs, step=50, probe=[1, 1, 1, 0])
    write_summary(run / "eval", build_summary(run / "eval"))
    return run


async def test_evaluate_step_at_80x24_cuts_nothing_and_keeps_its_keys(cwd_tmp):
    from rich.console import Console

    from ftwizard.tui.widgets.keys_footer import KeysFooter

    run = _json_eval_run(cwd_tmp)
    app = app_for_tests(runs_dir=run.parent)
    titles = [c.TITLE for c in available_steps()]
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(titles.index("Evaluate")):
            await pilot.press("ctrl+n")
        step = app.screen.query_one(f"#step-{titles.index('Evaluate')}")
        await wait_for(pilot, lambda: step.summary is not None)
        await pilot.pause()
        table = step.query_one("#eval-table")
        width = table.content_size.width
        assert 60 <= width <= 80
        console = Console(width=width, record=True, file=open("/dev/null", "w"))
        console.print(table.content)
        shown = console.export_text()
        assert "…" not in shown
        lines = shown.splitlines()
        for head in ("fields", "JSON", "schema", "fld F1", "exact", "summary RL", "urgency acc", "category acc",
                     "stops", "loops", "len/ref", "loss", "ppl", "probe"):
            assert any(head in ln for ln in lines), head
        for m in step.summary["models"]:  # every number on one line with its model, never wrapped
            row = [ln for ln in lines if ln.lstrip().startswith(m["label"])]
            assert row, m["label"]
        assert "fine-tuning beats base 3-shot" in shown and "95% CI" in shown
        footer = app.screen.query_one(KeysFooter)
        keys = "\n".join(t.plain for t in footer.lines(footer.content_size.width))
        for desc in ("Evaluate", "Baseline", "Other run", "Prev sample", "Next sample"):
            assert desc in keys, desc
        assert len(footer.lines(footer.content_size.width)) <= 3 and footer.region.bottom == 24


async def test_evaluate_step_shows_progress_with_an_eta(cwd_tmp):
    import os
    import time

    import psutil

    run = _json_eval_run(cwd_tmp)
    eval_dir = run / "eval"
    now = time.time()
    (eval_dir / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid(),
                                                      "pid_started": psutil.Process().create_time()}))
    app = app_for_tests(runs_dir=run.parent)
    titles = [c.TITLE for c in available_steps()]
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(titles.index("Evaluate")):
            await pilot.press("ctrl+n")
        step = app.screen.query_one(f"#step-{titles.index('Evaluate')}")
        await pilot.pause()
        events = [{"event": "plan", "models": ["base", "final"], "time": now - 100},
                  {"event": "model_start", "model": "base", "time": now - 100},
                  {"event": "model_done", "model": "base", "time": now - 40},
                  {"event": "model_start", "model": "final", "time": now - 40},
                  {"event": "progress", "model": "final", "phase": "generate", "done": 8, "total": 40,
                   "time": now - 30},
                  {"event": "progress", "model": "final", "phase": "generate", "done": 16, "total": 40,
                   "time": now - 20}]
        with open(eval_dir / "events.jsonl", "a") as f:
            f.writelines(json.dumps({"kind": "eval", **e}) + "\n" for e in events)
        await wait_for(pilot, lambda: "left" in text_of(step.query_one("#eval-head")))
        head = text_of(step.query_one("#eval-head"))
        assert "final: generate 16/40 (model 2 of 2), about" in head and "left" in head


def test_eta_from_events():
    from ftwizard.evaluation.launch import EvalProgress

    p = EvalProgress()
    for e in [{"event": "plan", "models": ["base", "base-3shot", "final"], "time": 0},
              {"event": "model_start", "model": "base", "time": 0},
              {"event": "progress", "phase": "generate", "done": 10, "total": 40, "time": 10},
              {"event": "progress", "phase": "generate", "done": 20, "total": 40, "time": 20}]:
        p.feed(e)
    # 20 rows left at 1 s/row; the two models to come are guessed from this one's pace (a floor)
    assert p.eta_s(now=20) == 20 + 2 * 40
    for e in [{"event": "model_done", "model": "base", "time": 60},
              {"event": "model_skipped", "model": "base-3shot", "time": 60},
              {"event": "model_start", "model": "final", "time": 60}]:
        p.feed(e)
    assert p.remaining_models() == 0 and p.eta_s(now=70) == 50  # the finished model's 60 s, 10 in
    assert "final: loading (model 2 of 2), about 50 s left" == p.line(now=70)
