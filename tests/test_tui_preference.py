"""Issue 14 in the wizard: preference tuning (DPO, ORPO, KTO) at 80x24, keys only.

The wizard walks each objective from the Decide and Data steps to the Train step's plan (the config it would
start, checked field by field; nothing trains here), the monitor shows a preference run's own curves, and the
Evaluate step shows preference accuracy and the reward margin from eval/summary.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from textual.widgets import Input, Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, tab_to, text_of, wait_for  # noqa: E402,F401
from tui_fakerun import write_history, write_preference_history  # noqa: E402
from tui_scenes import pin_machine  # noqa: E402

from ftwizard.config import RunConfig, default_learning_rate  # noqa: E402
from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.screens.decide import ObjectiveScreen  # noqa: E402
from ftwizard.tui.widgets.light import Choice  # noqa: E402
from ftwizard.tui.widgets.toggle import Toggle  # noqa: E402
from ftwizard.tui.widgets.loss_plot import LossPlot, RewardPlot  # noqa: E402
from ftwizard.tui.widgets.monitor import RunMonitor  # noqa: E402


async def open_step(pilot, title: str):
    """Straight to a step (walking through Train would start a pre-flight check this test does not need)."""
    screen = pilot.app.screen
    await screen.go([c.TITLE for c in screen.step_classes].index(title))
    await pilot.pause()
    return screen.current_step()


def footer_keys(app) -> str:
    from ftwizard.tui.widgets.keys_footer import KeysFooter

    return " ".join(text_of(f) for f in app.screen.query(KeysFooter))


# ---- monitor ------------------------------------------------------------------------------------------------

async def test_monitor_shows_a_preference_runs_rewards_beside_the_loss(tmp_path):
    run = RunDir(tmp_path / "runs" / "dpo")
    write_preference_history(run, 60, eval_every=20, kto=True)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        assert mon.watch.preference
        metrics = text_of(mon.query_one("#mon-metrics", Static))
        for word in ("margin", "accuracy", "chosen/rej", "kl"):
            assert word in metrics, metrics
        assert "2.000" in metrics.split("margin")[1].splitlines()[0]       # the last margin
        assert "0.800 / -1.200" in metrics                                 # chosen / rejected rewards
        assert any(c in metrics for c in "▁▂▃▄▅▆▇█")                       # the trend as a sparkline
        # every row of the panel fits in it at 80x24 (nothing cut off at the bottom)
        panel = mon.query_one("#mon-metrics")
        assert len(metrics.rstrip().splitlines()) <= panel.content_size.height
        assert "p Rewards" in footer_keys(app)
        assert mon.query_one(LossPlot).display and not mon.query_one(RewardPlot).display
        await pilot.press("p")                                             # the second plot: rewards over steps
        await pilot.pause(0.8)
        plot = mon.query_one(RewardPlot)
        assert plot.display and not mon.query_one(LossPlot).display
        drawn = plot.render().plain
        assert "60" in drawn and "-1" in drawn                            # x axis to step 60; negative rewards
        assert "chosen" in str(plot.border_title) and "margin" in str(plot.border_title)
        assert plot.border_subtitle == "eval: margin 1.600, accuracy 75%"  # held-out pairs, last eval
        await pilot.press("p")
        await pilot.pause(0.6)
        assert mon.query_one(LossPlot).display


async def test_monitor_of_an_sft_run_offers_no_rewards(tmp_path):
    run = RunDir(tmp_path / "runs" / "sft")
    write_history(run, 30)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        assert not mon.watch.preference
        assert "margin" not in text_of(mon.query_one("#mon-metrics", Static))
        assert "Rewards" not in footer_keys(app)
        await pilot.press("p")
        await pilot.pause(0.3)
        assert mon.query_one(LossPlot).display


# ---- the paths: Decide / Data -> Model -> Tune -> the Train step's plan (80x24, keys only) -------------------

def _pairs(n: int, start: int = 0) -> str:
    return "".join(json.dumps({"prompt": f"Ticket {i}: I was charged twice for order {1000 + i}. What now?",
                               "chosen": f"Sorry about that: I refunded the duplicate charge on order {1000 + i}; "
                                         "it shows in 3-5 days. - The help desk",
                               "rejected": f"I refunded the duplicate charge on order {1000 + i}; it shows in "
                                           "3-5 days. Bye now."}) + "\n"
                   for i in range(start, start + n))


def _kto_rows(n: int) -> str:
    return "".join(json.dumps({"prompt": f"Where is my parcel {2000 + i}?",
                               "completion": f"Parcel {2000 + i} left the depot today. - The help desk" if i % 2 == 0
                               else "No idea.", "label": i % 2 == 0}) + "\n" for i in range(n))


def _config(folder: Path, train: str, eval_rows: str | None = None) -> Path:
    """A wizard config on `train` (objective sft, the starting defaults), as `ftwizard --config` opens it."""
    from ftwizard.config import starting_config

    (folder / "train.jsonl").write_text(train)
    eval_file = None
    if eval_rows:
        (folder / "eval.jsonl").write_text(eval_rows)
        eval_file = folder / "eval.jsonl"
    cfg = starting_config(folder / "train.jsonl", eval_file)
    cfg.runs_dir = folder / "runs"
    cfg.save(folder / "wizard.yaml")
    return folder / "wizard.yaml"


async def _lint_done(pilot, step) -> None:
    await wait_for(pilot, lambda: step.report is not None and not step.busy, timeout=180)
    await pilot.pause(0.3)


async def _to_train_plan(pilot):
    """On to the Train step; its summary (the plan) drawn. No run starts: `t` is never pressed."""
    step = await go_to(pilot, "Train")
    await wait_for(pilot, lambda: "objective" in text_of(step.query_one("#train-summary", Static))
                   or pilot.app.state.config.training.objective == "sft", timeout=30)
    await pilot.pause(0.3)
    return step


def no_preflight(monkeypatch) -> None:
    """The Train step draws its plan without starting the pre-flight subprocess (the DPO path runs the real
    check once; the other paths check the plan and the config only)."""
    from ftwizard.tui.screens.train import TrainStep

    monkeypatch.setattr(TrainStep, "recheck_if_changed", lambda self: None)


def _shown_pref_fields(step) -> set[str]:
    from ftwizard.tui.screens.hyperparams import FieldRow

    return {r.path.split(".", 1)[1] for r in step.query(FieldRow) if r.path.startswith("preference.")
            and r.styles.display != "none"}


async def test_dpo_path_from_decide_to_the_train_plan(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)                                     # a measured speed: no wall-time probe starts
    config = _config(cwd_tmp, _pairs(16), _pairs(4, start=100))
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # Decide: a fine-tune verdict, then the objective, with its guidance from the domain data
        await pilot.press("down", "down", "enter", "down", "enter", "down", "enter", *"1500", "enter", "down",
                          "enter")
        await pilot.pause(0.3)
        assert "o: choose the objective" in text_of(app.screen.query_one("#decide-question", Static))
        await pilot.press("o")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ObjectiveScreen)
        await pilot.press("down")                                # DPO
        await pilot.pause(0.2)
        why = text_of(app.screen.query_one("#objective-why", Static))
        assert "beta 0.1" in why and "5e-6" in why and "SFT first, then DPO" in why and "source:" in why
        await pilot.press("enter")
        await pilot.pause(0.3)
        cfg = app.state.config
        assert cfg.training.objective == "dpo" and cfg.training.learning_rate == default_learning_rate("dpo", "lora")
        assert "DPO (now)" in text_of(app.screen.query_one("#decide-question", Static))
        # Data: the pairs are recognised and fit the objective (no offer to change it)
        data = await go_to(pilot, "Data")
        await _lint_done(pilot, data)
        kind = text_of(data.query_one("#data-kind", Static))
        assert "preference pairs (16 prompts" in kind and "objective dpo: fits this data" in kind
        assert data.offer is None and "Use suggestion" not in footer_keys(app)
        # Tune: the preference group with DPO's own fields only
        tune = await go_to(pilot, "Hyperparameters")
        await pilot.pause(0.3)
        assert tune.query_one("#group-preference").display
        assert {"beta", "loss_type"} <= _shown_pref_fields(tune)
        assert not {"desirable_weight", "undesirable_weight"} & _shown_pref_fields(tune)
        lr_note = text_of(tune.query_one("#note-training-learning_rate"))
        assert "LoRA usually learns at 1e-4" not in lr_note       # no SFT guardrail on a DPO learning rate
        train = await _to_train_plan(pilot)
        summary = text_of(train.query_one("#train-summary", Static))
        assert "DPO: beta 0.1, loss sigmoid" in summary and "lr 5e-06" in summary
        # the config the wizard would start, field by field
        cfg = app.state.config
        assert (cfg.training.objective, cfg.training.learning_rate, cfg.preference.beta, cfg.preference.loss_type,
                cfg.data.packing, cfg.model.method) == ("dpo", 5e-6, 0.1, "sigmoid", False, "lora")
        assert Path(cfg.data.train) == cwd_tmp / "train.jsonl" and Path(cfg.data.eval) == cwd_tmp / "eval.jsonl"
        RunConfig.model_validate(cfg.to_dict())                  # the whole config passes its own validation
        await wait_for(pilot, lambda: train.report is not None and not train.checking, timeout=240)
        assert train.report.facts.get("config_hash") == train.config_hash()
        assert not [f for f in train.report.errors if "learning_rate" in f.message], \
            [f.message for f in train.report.errors]


async def test_orpo_path_data_step_sets_the_objective_the_pairs_need(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)
    no_preflight(monkeypatch)
    config = _config(cwd_tmp, _pairs(16))
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        data = await go_to(pilot, "Data")
        await _lint_done(pilot, data)
        kind = text_of(data.query_one("#data-kind", Static))
        assert "preference pairs" in kind and "Ctrl+G sets training.objective: dpo" in kind  # not a dead end
        assert "ready to train" not in text_of(data.query_one("#data-summary", Static))
        assert "Use suggestion" in footer_keys(app)
        await pilot.press("ctrl+g")
        await pilot.pause(0.3)
        assert app.state.config.training.objective == "dpo"
        await _lint_done(pilot, data)
        await wait_for(pilot, lambda: "fits this data" in text_of(data.query_one("#data-kind", Static)))
        # Tune: DPO -> ORPO on the objective row; the learning rate follows ORPO's default
        tune = await go_to(pilot, "Hyperparameters")
        objective = tune.query_one("#field-training-objective").query_one(Choice)
        await tab_to(pilot, objective)
        await pilot.press("right")                               # sft, dpo, [orpo], kto
        await pilot.pause(0.3)
        cfg = app.state.config
        assert cfg.training.objective == "orpo" and cfg.training.learning_rate == default_learning_rate("orpo", "lora")
        assert _shown_pref_fields(tune) == {"beta"}              # ORPO reads beta (its lambda) only
        lr = tune.query_one("#field-training-learning_rate").query_one(Input)
        assert float(lr.value) == cfg.training.learning_rate     # the form shows the new default
        await pilot.press("ctrl+a")                              # every setting: packing is an advanced one
        packing = tune.query_one("#field-data-packing").query_one(Toggle)
        await tab_to(pilot, packing)
        await pilot.press("space")                               # the config's cross-field rule refuses it
        await pilot.pause(0.3)
        assert cfg.data.packing is False and packing.value is False
        assert "packing is for SFT only" in text_of(tune.query_one("#note-data-packing"))
        train = await _to_train_plan(pilot)
        assert "ORPO: beta 0.1" in text_of(train.query_one("#train-summary", Static))
        assert (cfg.training.objective, cfg.training.learning_rate, cfg.preference.beta, cfg.data.packing) == \
            ("orpo", 8e-6, 0.1, False)
        RunConfig.model_validate(cfg.to_dict())


async def test_kto_path_with_its_weights(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)
    no_preflight(monkeypatch)
    config = _config(cwd_tmp, _kto_rows(16))
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        data = await go_to(pilot, "Data")
        await _lint_done(pilot, data)
        kind = text_of(data.query_one("#data-kind", Static))
        assert "KTO rows" in kind and "Ctrl+G sets training.objective: kto" in kind
        await wait_for(pilot, lambda: "label" in text_of(data.query_one("#data-preview", Static)))
        preview = text_of(data.query_one("#data-preview", Static))
        assert "desirable (label true)" in preview and "Parcel 2000" in preview
        await pilot.press("ctrl+g")
        await pilot.pause(0.3)
        assert app.state.config.training.objective == "kto"
        tune = await go_to(pilot, "Hyperparameters")
        await pilot.pause(0.3)
        assert {"beta", "desirable_weight", "undesirable_weight"} <= _shown_pref_fields(tune)
        assert "loss_type" not in _shown_pref_fields(tune)
        weight = tune.query_one("#field-preference-desirable_weight").query_one(Input)
        await tab_to(pilot, weight)
        await pilot.press("end", "ctrl+u", *"0", "enter")        # out of range: refused, the config keeps 1.0
        await pilot.pause(0.3)
        assert "x " in text_of(tune.query_one("#note-preference-desirable_weight"))
        assert app.state.config.preference.desirable_weight == 1.0
        await pilot.press("end", "ctrl+u", *"1.2")
        await pilot.pause(0.3)
        beta = tune.query_one("#field-preference-beta").query_one(Input)
        await tab_to(pilot, beta)
        await pilot.press("end", "ctrl+u", *"2")                 # valid, but far outside KTO's usual range
        await pilot.pause(0.3)
        assert "0.01-0.5" in text_of(tune.query_one("#note-preference-beta"))
        await pilot.press("end", "ctrl+u", *"0.1")
        await pilot.pause(0.3)
        train = await _to_train_plan(pilot)
        assert "KTO: beta 0.1, desirable weight 1.2" in text_of(train.query_one("#train-summary", Static))
        cfg = app.state.config
        assert (cfg.training.objective, cfg.training.learning_rate, cfg.preference.beta,
                cfg.preference.desirable_weight, cfg.preference.undesirable_weight) == ("kto", 5e-6, 0.1, 1.2, 1.0)
        RunConfig.model_validate(cfg.to_dict())


# ---- evaluate ---------------------------------------------------------------------------------------------

def _summary(metrics: dict[str, tuple[float, float]], task: str) -> dict:
    names = list(metrics)
    return {"task": task, "metrics": [{"name": n, "description": n} for n in names], "best": {},
            "models": [{"id": "base", "label": "base", "kind": "base", "step": 0,
                        "metrics": {n: b for n, (b, _t) in metrics.items()}},
                       {"id": "final", "label": "final", "kind": "adapter", "step": 40,
                        "metrics": {n: t for n, (_b, t) in metrics.items()}}],
            "samples": [], "warnings": [], "notes": []}


async def test_evaluate_step_shows_preference_accuracy_and_margin_base_vs_tuned(cwd_tmp):
    run = RunDir(cwd_tmp / "runs" / "dpo")
    write_preference_history(run, 10)
    config = _config(cwd_tmp, _pairs(8), _pairs(4, start=100))
    from ftwizard.config import load_config

    load_config(config).model_copy(update={"name": "dpo"}).save(run.config)
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    (run.eval_dir / "summary.json").write_text(json.dumps(_summary(
        {"pref_accuracy": (0.5, 0.85), "pref_accuracy_norm": (0.45, 0.8), "reward_margin": (0.0, 1.6)},
        "preference")))
    app = app_for_tests(config=str(config))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await open_step(pilot, "Evaluate")
        await wait_for(pilot, lambda: step.summary is not None)
        await pilot.pause(0.3)
        view = text_of(step.query_one("#eval-objective", Static))
        assert "preference (held-out pairs): base -> final" in view
        line = next(ln for ln in view.splitlines() if "preference accuracy" in ln)
        assert "50%" in line and "85%" in line and "+35 points" in line
        margin = next(ln for ln in view.splitlines() if "reward margin" in ln)
        assert "+0.00" in margin and "+1.60" in margin
        assert "tool" not in view                                 # no tool-call metrics in this summary
