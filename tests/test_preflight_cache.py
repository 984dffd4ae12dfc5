"""The fast paths: a hyperparameter change re-uses the data lint, a changed file does not,
the disk cache serves a new process, and the torch-free tokenizer equals AutoTokenizer's."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ftwizard.config import config_from_dict
from ftwizard.preflight import inputs, run_check

DATA = Path(__file__).resolve().parent / "fixtures" / "preflight" / "data"


@pytest.fixture
def data_copy(tmp_path):
    """Fresh copies (new paths: nothing cached for them yet)."""
    train, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    shutil.copy(DATA / "sound_train.jsonl", train)
    shutil.copy(DATA / "sound_eval.jsonl", held)
    return train, held


def cfg_for(train: Path, held: Path, **training):
    return config_from_dict({"data": {"train": str(train), "eval": str(held), "max_length": 128, "task_type": "extraction"},
                             "training": {"epochs": 2, **training}})


def test_hyperparameter_changes_reuse_the_lint(data_copy):
    train, held = data_copy
    first = run_check(cfg_for(train, held))
    assert first.facts["train"]["cached"] is None  # linted now
    t0 = time.perf_counter()
    second = run_check(cfg_for(train, held, learning_rate=1e-3))
    assert time.perf_counter() - t0 < 0.5
    assert second.facts["train"]["cached"] == "memory" and second.facts["eval"]["cached"] == "memory"
    assert second.by_rule("lr.range") and not first.by_rule("lr.range")
    # max_length is not part of the lint: truncation is recounted from the cached lengths
    cut = run_check(config_from_dict({"data": {"train": str(train), "eval": str(held), "max_length": 32},
                                      "training": {"epochs": 2}}))
    assert cut.facts["train"]["cached"] == "memory" and cut.by_rule("data.truncation")


def test_a_changed_file_is_linted_again(data_copy):
    train, held = data_copy
    run_check(cfg_for(train, held))
    rows = train.read_text().splitlines()
    rows[5] = rows[5].replace('"user"', '"bot"')
    train.write_text("\n".join(rows) + "\n")
    os.utime(train, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    rep = run_check(cfg_for(train, held))
    assert rep.facts["train"]["cached"] is None and rep.by_rule("lint.roles.unknown")


def test_disk_cache_serves_a_new_process(data_copy):
    train, held = data_copy
    run_check(cfg_for(train, held))
    with inputs._LOCK:  # as if a new process: memory caches empty, the disk cache stays
        inputs._FACTS.clear()
    rep = run_check(cfg_for(train, held))
    assert rep.facts["train"]["cached"] == "disk" and rep.ok


def test_cached_mode_never_lints(data_copy):
    train, held = data_copy
    rep = run_check(cfg_for(train, held), data="cached")
    assert rep.facts["train"] is None and any("no cached lint" in s for s in rep.skipped)
    assert rep.facts["rows"] == 300  # rows still counted (cheaply) for the step and pass rules
    run_check(cfg_for(train, held))
    assert run_check(cfg_for(train, held), data="cached").facts["train"]["cached"] == "memory"


def test_fast_tokenizer_matches_autotokenizer(embedded_tokenizer):
    fast = inputs.load_tokenizer("embedded")
    assert type(fast) is type(embedded_tokenizer)
    assert fast.chat_template == embedded_tokenizer.chat_template and fast.eos_token == embedded_tokenizer.eos_token
    for line in (DATA / "sound_train.jsonl").read_text().splitlines()[:20]:
        msgs = json.loads(line)["messages"]
        a = fast.apply_chat_template(msgs, tokenize=False)
        assert a == embedded_tokenizer.apply_chat_template(msgs, tokenize=False)
        assert fast(a, add_special_tokens=False)["input_ids"] == embedded_tokenizer(a, add_special_tokens=False)["input_ids"]


def test_loading_the_tokenizer_leaves_the_environment_alone(data_copy, monkeypatch):
    """`train` spawns the trainer with this environment: the check must not switch it offline."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    inputs.clear_caches()
    train, held = data_copy
    run_check(cfg_for(train, held))
    assert "HF_HUB_OFFLINE" not in os.environ
