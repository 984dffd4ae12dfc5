"""Shared fixtures. The embedded model is converted once per machine into the user
cache (FTWIZARD_CACHE, default ~/.cache/ftwizard) and reused by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"

# Quiet, offline, deterministic: nothing in the tests may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads when tests share the cores
# The per-user run index (ftwizard.runindex) of the tests is a throw-away folder, never the real user's:
# set unconditionally (a user's own FTWIZARD_STATE_DIR must not receive test runs); subprocesses inherit it.
import tempfile as _tempfile  # noqa: E402

os.environ["FTWIZARD_STATE_DIR"] = _tempfile.mkdtemp(prefix="ftwizard-test-state-")
# likewise this machine's measured speed (ftwizard.hardware.walltime): tiny test runs must not replace the user's
os.environ["FTWIZARD_WALLTIME_CACHE"] = os.path.join(os.environ["FTWIZARD_STATE_DIR"], "walltime.json")


@pytest.fixture(autouse=True)
def _own_run_index(tmp_path_factory, monkeypatch):
    """Each test starts with an empty run index: runs registered by earlier tests (their folders still on
    disk) would otherwise show up in pickers and `runs` listings (seen: a picker with 2 runs listing 30)."""
    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The safetensors folder of the embedded model (converted on first use)."""
    from ftwizard.models.embedded import ensure_cached

    return ensure_cached(log=lambda *_: None)


@pytest.fixture(scope="session")
def embedded_tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_model_dir))


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d
