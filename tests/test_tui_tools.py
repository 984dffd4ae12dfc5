"""Issue 14 in the wizard: tool-calling SFT and a base model without a chat template, at 80x24, keys only.

Each walks to the Train step's plan and checks the config the wizard would start field by field (nothing
trains here); the Evaluate step shows the tool-call metrics base vs tuned from eval/summary.json.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from textual.widgets import Select, Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, tab_to, text_of, wait_for  # noqa: E402,F401
from test_tui_preference import _lint_done, _summary, _to_train_plan, footer_keys, no_preflight, open_step  # noqa: E402,E501
from tui_fakerun import write_history  # noqa: E402
from tui_scenes import pin_machine  # noqa: E402

from ftwizard.config import RunConfig, load_config, starting_config  # noqa: E402
from ftwizard.rundir import RunDir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _tools_config(folder: Path) -> Path:
    for name in ("tools_train.jsonl", "tools_eval.jsonl"):
        shutil.copy(REPO / "sample_data" / name, folder / name)
    cfg = starting_config(folder / "tools_train.jsonl", folder / "tools_eval.jsonl")
    cfg.runs_dir = folder / "runs"
    cfg.save(folder / "wizard.yaml")
    return folder / "wizard.yaml"


async def test_tool_calling_sft_path_to_the_train_plan(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)
    no_preflight(monkeypatch)
    config = _tools_config(cwd_tmp)
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        data = await go_to(pilot, "Data")
        await _lint_done(pilot, data)
        kind = text_of(data.query_one("#data-kind", Static))
        rows = [json.loads(line) for line in (cwd_tmp / "tools_train.jsonl").read_text().splitlines()]
        calls = sum(len(m.get("tool_calls") or []) for r in rows for m in r["messages"])  # counted here, by hand
        assert f"tool calling: {len(rows)} rows, {calls} calls to 3 tools" in kind and "SFT trains the calls" in kind
        # the embedded model's own template drops tools: the step says so and offers the one that renders them
        assert "cannot render tools" in kind and "Ctrl+G sets data.chat_template: chatml" in kind
        assert "Use suggestion" in footer_keys(app)
        await pilot.press("pagedown", "pagedown")                # row 3: a call and its result
        await wait_for(pilot, lambda: "call " in text_of(data.query_one("#data-preview", Static)))
        preview = text_of(data.query_one("#data-preview", Static))
        assert 'call {"name": "calculate"' in preview and "result: " in preview
        await pilot.press("ctrl+g")
        await pilot.pause(0.3)
        assert app.state.config.data.chat_template == "chatml"
        await _lint_done(pilot, data)
        await wait_for(pilot, lambda: "fits this data" in text_of(data.query_one("#data-kind", Static)), timeout=120)
        assert not any(f["rule"].startswith("tools.template") for f in data.report["errors"])
        assert data.offer is None
        tune = await go_to(pilot, "Hyperparameters")
        await pilot.pause(0.3)
        assert not tune.query_one("#group-preference").display    # SFT: no preference settings
        train = await _to_train_plan(pilot)
        summary = text_of(train.query_one("#train-summary", Static))
        assert "template" in summary and "chatml" in summary and "objective" not in summary
        cfg = app.state.config
        assert (cfg.training.objective, cfg.data.chat_template, cfg.data.assistant_only_loss, cfg.model.base) == \
            ("sft", "chatml", True, "embedded")
        assert Path(cfg.data.train) == cwd_tmp / "tools_train.jsonl"
        RunConfig.model_validate(cfg.to_dict())


def _base_without_template(folder: Path, embedded: Path) -> Path:
    """The embedded model's files without its chat template: a base model as Llama-3.1-8B ships."""
    base = folder / "base-no-template"
    base.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(embedded / name, base / name)
    tok = json.loads((embedded / "tokenizer_config.json").read_text())
    tok.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(tok))
    (base / "model.safetensors").symlink_to(embedded / "model.safetensors")
    return base


async def test_base_model_without_a_template_gets_one_chosen_in_the_model_step(cwd_tmp, monkeypatch,
                                                                              embedded_model_dir):
    pin_machine(monkeypatch)
    no_preflight(monkeypatch)
    base = _base_without_template(cwd_tmp, embedded_model_dir)
    config = _tools_config(cwd_tmp)
    cfg = load_config(config)
    cfg.model.base = str(base)
    cfg.save(config)
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        model = await go_to(pilot, "Model")
        await wait_for(pilot, lambda: model.query_one("#model-template-row").display)
        helptext = text_of(model.query_one("#model-template-help", Static))
        assert "no chat template" in helptext and "<|im_start|>" in helptext and "embedding rows train" in helptext
        await wait_for(pilot, lambda: "MB in the estimate below" in text_of(model.query_one("#model-template-help")))
        assert model.estimate.parts["template_token_rows"] > 0       # the trained rows' memory, in the estimate
        select = model.query_one("#model-template", Select)
        assert select.value == "auto"                            # auto gives a base without one ChatML
        await tab_to(pilot, select)
        await pilot.press("enter")                               # open the list
        await pilot.pause(0.2)
        await pilot.press("down", "down")                        # auto, chatml, [llama3]
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.state.config.data.chat_template == "llama3"
        assert "Llama" in text_of(model.query_one("#model-template-help", Static))
        train = await _to_train_plan(pilot)
        assert "llama3" in text_of(train.query_one("#train-summary", Static))
        cfg = app.state.config
        assert (cfg.model.base, cfg.data.chat_template, cfg.training.objective) == (str(base), "llama3", "sft")
        RunConfig.model_validate(cfg.to_dict())


async def test_evaluate_step_shows_tool_call_metrics_base_vs_tuned(cwd_tmp):
    run = RunDir(cwd_tmp / "runs" / "tools")
    write_history(run, 10)
    config = _tools_config(cwd_tmp)
    load_config(config).model_copy(update={"name": "tools"}).save(run.config)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    (run.eval_dir / "summary.json").write_text(json.dumps(_summary(
        {"tool_name_accuracy": (0.4, 0.9), "tool_args_exact": (0.1, 0.7), "tool_json_valid": (0.6, 1.0)}, "tools")))
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await open_step(pilot, "Evaluate")
        await wait_for(pilot, lambda: step.summary is not None)
        await pilot.pause(0.3)
        view = text_of(step.query_one("#eval-objective", Static))
        assert "tool calls: base -> final" in view and "preference" not in view
        lines = {k: next(ln for ln in view.splitlines() if k in ln)
                 for k in ("tool name accuracy", "arguments exact match", "valid JSON arguments")}
        assert "40%" in lines["tool name accuracy"] and "90%" in lines["tool name accuracy"]
        assert "+60 points" in lines["arguments exact match"]
        assert "100%" in lines["valid JSON arguments"]
