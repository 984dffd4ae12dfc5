"""One home for the default config: `ftwizard init` and the wizard opened without a config agree."""

from __future__ import annotations

import subprocess
import sys

from ftwizard.config import load_config


def _plan(cfg) -> dict:
    d = cfg.to_dict()
    d.pop("runs_dir")
    d.pop("name")
    return d


def test_init_and_the_wizard_start_from_the_same_config(tmp_path):
    from ftwizard.advice import training_plan
    from ftwizard.tui.state import WizardState

    r = subprocess.run([sys.executable, "-m", "ftwizard", "init", "-o", "c.yaml"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from_init = load_config(tmp_path / "c.yaml")
    wizard = WizardState.create().config
    assert _plan(wizard) == _plan(from_init)
    # the tuned demo: 50 optimizer steps of 8 rows over the 400 sample rows, lr 4e-4 (not 75 steps at 2e-4)
    plan = training_plan(wizard, 400)
    assert plan.steps == 50 and wizard.training.learning_rate == 4e-4 and wizard.training.epochs == 1


def test_a_users_own_file_keeps_the_guidance_defaults(tmp_path):
    from ftwizard.config import starting_config

    (tmp_path / "t.jsonl").write_text("{}\n")
    cfg = starting_config(tmp_path / "t.jsonl", method="qlora")
    assert cfg.data.eval is None and cfg.training.learning_rate == 2e-4 and cfg.model.method == "qlora"
