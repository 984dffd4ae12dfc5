"""Corpus, command line and config: usage errors, overrides, bad configs, nonsense values.

Cases are generated: usage errors from the real parser (every option with a type or
choices, every command), config faults from the RunConfig fields (a wrong type and an
out-of-range value for each), structural config faults across every command that reads a
config. Each runs the real CLI in a subprocess (tests/corpus.py checks the contract).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest
import yaml

from corpus import Case, check, fifo, good_config, write_rows

# ---------------------------------------------------------------------------- class 10: usage
RANGED = {"positive_int": ("0", "-3"), "nonneg_int": ("-1",), "positive_float": ("0", "-2.5"),
          "nonneg_float": ("-1",), "unit_fraction": ("0", "1.5"), "port": ("0", "70000")}


def _subcommands():
    """(command words, subparser) for every command the CLI registers, data subcommands included."""
    from ftwizard.cli import build_parser

    def walk(parser, words):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    yield from walk(sp, words + [name])
                return
        yield words, parser

    yield from (w for w in walk(build_parser(), []) if w[0])


def _needs(sp) -> list[str]:
    """Placeholder values for the required arguments, so that the error is about the option tested."""
    out = []
    for a in sp._actions:
        if a.required and a.nargs not in ("?", "*") and not isinstance(a, argparse._SubParsersAction):
            value = "1" if a.type is not None else "x.jsonl"
            out += [a.option_strings[-1], value] if a.option_strings else [value]
    return out


def usage_cases() -> list[Case]:
    cases = []
    for words, sp in _subcommands():
        name = "-".join(words)
        js = ["--json"] if any("--json" in a.option_strings for a in sp._actions) else []
        cases.append(Case(f"usage-{name}-unknown-option", 10, [*words, *_needs(sp), "--no-such-option", *js], 2,
                          "--no-such-option"))
        if any(not a.option_strings and a.required and a.nargs not in ("?", "*") for a in sp._actions):
            cases.append(Case(f"usage-{name}-missing-argument", 10, [*words, *js], 2, "required"))
        for a in sp._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS and a.type is None:
                continue
            opt = a.option_strings[-1]
            tname = getattr(a.type, "__name__", "")
            if a.type in (int, float) or tname in RANGED:
                cases.append(Case(f"usage-{name}{opt}-not-a-number", 10, [*words, opt, "abc", *js], 2, opt))
            for bad in RANGED.get(tname, ()):
                cases.append(Case(f"usage-{name}{opt}={bad}", 10, [*words, opt, bad, *js], 2, opt))
            if a.choices and not isinstance(a, argparse._SubParsersAction):
                cases.append(Case(f"usage-{name}{opt}-bad-choice", 10, [*words, opt, "zz-none", *js], 2, opt))
    cases.append(Case("usage-no-such-command", 10, ["frobnicate", "--json"], 2, "frobnicate"))
    return cases


# ---------------------------------------------------------------------------- class 6: overrides
def override_cases() -> list[Case]:
    cases = []
    bad = {"--max-steps": ["-1", "0"], "--name": ["a/b", "..", ".hidden", "", " padded", "x" * 300, "a\\b"]}
    for opt, values in bad.items():
        for i, v in enumerate(values):
            for cmd in (["train", "config.yaml", "--print-launch"], ["train", "config.yaml"]):
                tag = "print" if "--print-launch" in cmd else "run"
                cases.append(Case(f"override-{tag}{opt}-{i}", 6, [*cmd, opt, v, "--json"], 2, opt,
                                  setup=lambda d: good_config(d)))
    cases.append(Case("override-runs-dir-is-a-file", 4, ["train", "config.yaml", "--runs-dir", "afile", "--json"], 1,
                      "afile", setup=lambda d: (good_config(d), (d / "afile").write_text("x"))))
    return cases


# ---------------------------------------------------------------------------- config faults
def _deep_yaml(n: int) -> str:
    return "data:\n  train: train.jsonl\nx: " + "[" * n + "]" * n + "\n"


def _structural() -> dict[str, tuple]:
    """name -> (setup(d) writing config.yaml, the place the message must name)."""
    def w(text: str | bytes):
        def setup(d: Path):
            write_rows(d / "train.jsonl")
            (d / "config.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        return setup

    def folder(d: Path):
        (d / "config.yaml").mkdir()

    def pipe(d: Path):
        fifo(d / "config.yaml")

    good = "runs_dir: runs\ndata:\n  train: train.jsonl\n"
    return {
        "not-yaml": (w("data:\n  train: [unclosed\n"), "config.yaml:"),
        "tab-indent": (w("data:\n\ttrain: x\n"), "config.yaml:"),
        "top-level-list": (w("- a\n- b\n"), "config.yaml"),
        "top-level-scalar": (w("42\n"), "config.yaml"),
        "empty": (w(""), "config.yaml"),
        "deep-5000": (w(_deep_yaml(5000)), "config.yaml"),
        "deep-mapping-3000": (w("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 3000))), "config.yaml"),
        "not-utf8": (w(b"data:\n  train: \xff\xfe\xfa.jsonl\n"), "config.yaml"),
        "gzip": (w(gzip.compress(good.encode())), "config.yaml"),
        "utf16": (w(good.encode("utf-16")), "config.yaml"),
        "duplicate-key": (w("data:\n  train: train.jsonl\n  max_length: 64\n  max_length: 128\n"), "max_length"),
        "duplicate-section": (w("data:\n  train: train.jsonl\ndata:\n  train: other.jsonl\n"), "data"),
        "typo-key": (w("data:\n  train: train.jsonl\ntraining:\n  learnig_rate: 0.1\n"), "learning_rate"),
        "missing-train": (w("model:\n  method: lora\n"), "data"),
        "section-null": (w("data: null\n"), "data"),
        "section-scalar": (w("data: 5\n"), "data"),
        "huge": (w("# " + "x" * (2 << 20) + "\n" + good), "config.yaml"),
        "folder": (folder, "config.yaml"),
        "fifo": (pipe, "config.yaml"),
        "missing": (lambda d: None, "config.yaml"),
    }


CONFIG_COMMANDS = {
    "check": ["check", "config.yaml", "--json"],
    "train": ["train", "config.yaml", "--json"],
    "estimate": ["estimate", "config.yaml", "--json"],
    "eval": ["eval", "config.yaml", "--json"],
}


# Faults every config reader meets first (the file itself): all four commands; the rest: check and train.
EVERY_COMMAND = {"fifo", "folder", "deep-5000", "duplicate-key", "not-yaml", "missing", "gzip"}


def config_structure_cases() -> list[Case]:
    cases = []
    for name, (setup, place) in _structural().items():
        for cmd, argv in CONFIG_COMMANDS.items():
            if name not in EVERY_COMMAND and cmd in ("estimate", "eval"):
                continue
            cases.append(Case(f"config-{name}-{cmd}", 5 if "deep" in name else 9 if "duplicate" in name else 11,
                              argv, 1, place, setup=setup, timeout=60))
    return cases


def _bad_values(field) -> list[tuple[str, object]]:
    """(label, value) pairs a field must refuse: a wrong type, and each side of its range."""
    import annotated_types as at

    ann = str(field.annotation)
    out = []
    if "bool" in ann:
        out.append(("list", [1, 2]))
    elif "int" in ann or "float" in ann:
        out.append(("text", "lots"))
    elif "Literal" in ann:
        out.append(("unknown-choice", "zz-none"))
    elif "Path" in ann or "str" in ann:
        out.append(("mapping", {"a": 1}))
    for m in field.metadata:
        if isinstance(m, (at.Ge, at.Gt)):
            lo = getattr(m, "ge", getattr(m, "gt", None))
            out.append(("below", lo - 1 if isinstance(lo, int) else lo - 1.0))
        if isinstance(m, (at.Le, at.Lt)):
            hi = getattr(m, "le", getattr(m, "lt", None))
            out.append(("above", hi * 10 + 1))
    return out


def config_field_cases() -> list[Case]:
    from ftwizard.config import RunConfig

    cases = []
    for section, sfield in RunConfig.model_fields.items():
        sub = getattr(sfield.annotation, "model_fields", None)
        items = sub.items() if sub else [(None, sfield)]
        for key, f in items:
            path = f"{section}.{key}" if key else section
            for label, value in _bad_values(f):
                def setup(d: Path, section=section, key=key, value=value):
                    p = good_config(d)
                    cfg = yaml.safe_load(p.read_text())
                    if key is None:
                        cfg[section] = value
                    else:
                        cfg.setdefault(section, {})[key] = value
                    p.write_text(yaml.safe_dump(cfg, sort_keys=False))

                cases.append(Case(f"config-field-{path}-{label}", 11, ["check", "config.yaml", "--json"], 1, path,
                                  setup=setup))
    return cases


# ---------------------------------------------------------------------------- class 9 and 11: nonsense, messages
def nonsense_cases() -> list[Case]:
    def empty(d):
        (d / "empty.jsonl").write_bytes(b"")

    def blank(d):
        (d / "blank.jsonl").write_bytes(b"\n\n  \n")

    return [
        Case("init-train-missing", 9, ["init", "-o", "c.yaml", "--train", "missing.jsonl", "--json"], 1, "missing.jsonl"),
        Case("init-eval-missing", 9, ["init", "-o", "c.yaml", "--eval", "nope.jsonl", "--json"], 1, "nope.jsonl"),
        Case("init-train-folder", 9, ["init", "-o", "c.yaml", "--train", "sub", "--json"], 1, "sub",
             setup=lambda d: (d / "sub").mkdir()),
        Case("init-output-exists", 9, ["init", "-o", "c.yaml", "--json"], 1, "c.yaml",
             setup=lambda d: (d / "c.yaml").write_text("keep: me\n")),
        Case("stats-empty-file", 9, ["data", "stats", "empty.jsonl", "--no-tokens", "--json"], 1, "empty.jsonl", setup=empty),
        Case("stats-blank-lines", 9, ["data", "stats", "blank.jsonl", "--no-tokens", "--json"], 1, "blank.jsonl", setup=blank),
        Case("show-row-past-end", 10, ["data", "show", "d.jsonl", "--row", "999999", "--json"], 1, "d.jsonl",
             setup=lambda d: write_rows(d / "d.jsonl")),
        Case("fix-output-is-input", 10, ["data", "fix", "d.jsonl", "-o", "d.jsonl", "--json"], 1, "d.jsonl",
             setup=lambda d: write_rows(d / "d.jsonl")),
        Case("fix-output-is-input-via-path", 10, ["data", "fix", "d.jsonl", "-o", "./sub/../d.jsonl", "--json"], 1,
             "d.jsonl", setup=lambda d: (write_rows(d / "d.jsonl"), (d / "sub").mkdir())),
        Case("check-no-config", 10, ["check", "--json"], 2, "config"),
        Case("check-fix-without-o", 10, ["check", "config.yaml", "--fix", "--json"], 2, "-o",
             setup=lambda d: good_config(d)),
        Case("estimate-gpu-unknown", 11, ["estimate", "--gpu", "NoSuchGPU-9000", "--json"], (1, 2), "NoSuchGPU-9000"),
        Case("estimate-data-missing", 11, ["estimate", "--data", "nope.jsonl", "--json"], 1, "nope.jsonl"),
        Case("lint-model-missing-folder", 11, ["lint", "d.jsonl", "--model", "{d}/no/such/model", "--json"], 1,
             "no/such/model", setup=lambda d: write_rows(d / "d.jsonl"),
             extra=lambda d, r: _no_hub_hint(r)),
        Case("lint-model-relative-missing-folder", 11, ["lint", "d.jsonl", "--model", "./models/mine", "--json"], 1,
             "models/mine", setup=lambda d: write_rows(d / "d.jsonl"), extra=lambda d, r: _no_hub_hint(r)),
        Case("lint-model-folder-without-weights", 11, ["lint", "d.jsonl", "--model", "mymodel", "--json"], 1,
             "mymodel", setup=lambda d: (write_rows(d / "d.jsonl"), (d / "mymodel").mkdir()),
             extra=lambda d, r: _no_hub_hint(r)),
        Case("check-hub-model-not-cached", 11, ["check", "config.yaml", "--json"], 1, "model.unavailable", json="ok",
             setup=lambda d: good_config(d, model={"base": "someorg/not-cached-model-xyz"}), timeout=90),
        Case("train-hub-model-not-cached", 11, ["train", "config.yaml", "--json"], 1, "someorg/not-cached-model-xyz",
             setup=lambda d: good_config(d, model={"base": "someorg/not-cached-model-xyz"}), timeout=90),
        Case("stop-unknown-run", 11, ["stop", "nope", "--runs-dir", "runs", "--json"], 1, "nope"),
        Case("monitor-unknown-run", 11, ["monitor", "nope", "--runs-dir", "runs", "--plain", "--json"], 1, "nope"),
        Case("resume-unknown-run", 11, ["resume", "nope", "--runs-dir", "runs", "--json"], 1, "nope"),
        Case("export-unknown-run", 11, ["export", "nope", "--runs-dir", "runs", "--json"], 1, "nope"),
        Case("eval-unknown-run", 11, ["eval", "nope", "--runs-dir", "runs", "--json"], 1, "nope"),
        Case("runs-dir-is-a-file", 4, ["runs", "--runs-dir", "afile", "--json"], (0, 1), None,
             setup=lambda d: (d / "afile").write_text("x")),
    ]


def _no_hub_hint(r) -> None:
    """A local path that does not exist is not a hub id: no download advice."""
    assert "hf download" not in r.out + r.err and "huggingface-cli" not in r.out + r.err, r.out + r.err


ALL = usage_cases() + override_cases() + config_structure_cases() + config_field_cases() + nonsense_cases()


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_corpus_cli(case: Case, tmp_path: Path):
    check(case, tmp_path / "case")


def test_corpus_cli_is_big_enough():
    assert len(ALL) >= 120, len(ALL)
    assert {c.cls for c in ALL} >= {5, 6, 9, 10, 11}
