"""The scenario suite: realistic doomed set-ups each caught by the right rule, and sound
set-ups with no error and no warning; all before any model weights load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "preflight"
SPEC = yaml.safe_load((FIXTURES / "scenarios.yaml").read_text())


@pytest.fixture(scope="module")
def outcome():
    """All scenarios in one fresh process, so it can report whether torch was ever imported."""
    r = subprocess.run([sys.executable, str(FIXTURES / "run_scenarios.py")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_suite_has_at_least_ten_doomed_and_three_sound_setups():
    assert len(SPEC["doomed"]) >= 10 and len(SPEC["sound"]) >= 3
    rules = {rule for sc in SPEC["doomed"].values() for rule in sc["expect"]}
    assert len(rules) >= 10  # one failure mode each, not ten flavours of one


def test_no_weights_were_loaded(outcome):
    assert outcome["torch_imported"] is False


@pytest.mark.parametrize("name", list(SPEC["doomed"]))
def test_doomed_setup_is_caught_by_its_rule(outcome, name):
    rep = outcome["doomed"][name]["report"]
    expect = SPEC["doomed"][name]["expect"]
    got = {}
    for f in rep["findings"]:
        got.setdefault(f["rule"], f["severity"])
    for rule, severity in expect.items():
        assert got.get(rule) == severity, (rule, got)
    errors = {f["rule"] for f in rep["findings"] if f["severity"] == "error"}
    assert errors <= set(expect), f"other errors fired: {errors - set(expect)}"
    assert rep["ok"] is (not any(s == "error" for s in expect.values()))
    for f in rep["findings"]:
        if f["rule"] in expect:  # each finding says what, why and what to change
            assert f["message"] and f["why"] and f["fix"] and f["threshold"] and f["source"]


@pytest.mark.parametrize("name", list(SPEC["sound"]))
def test_sound_setup_draws_no_error_and_no_warning(outcome, name):
    rep = outcome["sound"][name]["report"]
    assert rep["ok"] and rep["counts"]["error"] == 0
    assert rep["counts"]["warning"] == 0, [f["message"] for f in rep["findings"] if f["severity"] == "warning"]
    assert rep["facts"]["train"]["valid_rows"] == 300 and rep["estimate"]["verdict"] in ("fits", "unknown")


def test_does_not_fit_comes_with_ranked_fixes_that_fit(outcome):
    f = next(f for f in outcome["doomed"]["oom_full_long_context_on_t4"]["report"]["findings"]
             if f["rule"] == "memory.does_not_fit")
    assert f["advice"] and f["advice"][0]["verdict"] == "fits"
    assert f["edit"]  # the best config change, for --fix
    assert "Fixes, best first: 1." in f["message"]


def test_default_init_config_has_no_error(tmp_path):
    """`ftwizard init`'s config (embedded model, sample data): no error and no warning but one.

    The sample data's eval file shares most of its 8-word sequences with training rows
    (templated tickets), which the decontamination rightly reports as eval.overlap; that
    is a property of the sample data (reported to its owner), not of the config."""
    from ftwizard.config import load_config
    from ftwizard.preflight import run_check

    cfg_path = tmp_path / "ftwizard.yaml"
    r = subprocess.run([sys.executable, "-m", "ftwizard", "init", "-o", str(cfg_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = run_check(load_config(cfg_path))
    assert rep.ok, [f.message for f in rep.errors]
    assert rep.rules_hit("warning") <= {"eval.overlap"}, [f.message for f in rep.warnings]
