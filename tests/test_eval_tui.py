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
