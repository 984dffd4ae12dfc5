"""`ftwizard lint` and `ftwizard data ...` through the real CLI entry point: exit codes, JSON, messages."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path


from ftwizard.cli import main

FIX = Path(__file__).parent / "fixtures" / "data"


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_lint_exit_codes_and_report(capsys):
    code, out, _ = run(capsys, "lint", str(FIX / "valid_messages.jsonl"), "--no-tokens")
    assert code == 0 and "0 error(s)" in out
    before = sha(FIX / "mixture.jsonl")
    code, out, _ = run(capsys, "lint", str(FIX / "mixture.jsonl"), "--no-tokens")
    assert code == 1 and sha(FIX / "mixture.jsonl") == before
    assert out.index("errors") < out.index("warnings")  # errors first
    for text in ("json.invalid", "roles.unknown", "pii.email", "dup.exact", "fix:"):
        assert text in out
    code, _, err = run(capsys, "lint", str(FIX / "valid_messages.jsonl"), "--task-type", "nonsense")
    assert code == 2 and "invalid choice" in err


def test_lint_json(capsys):
    code, out, _ = run(capsys, "lint", str(FIX / "pii.jsonl"), "--no-tokens", "--json")
    d = json.loads(out)
    assert code == 1 and d["ok"] is False and d["format"] == "messages" and d["rows"] == 9
    assert {(f["rule"], f["row"]) for f in d["errors"]} == {("pii.secret", 7)}
    assert ("pii.email", 1) in {(f["rule"], f["row"]) for f in d["warnings"]}


def test_missing_file_is_one_clear_message(capsys, tmp_path):
    code, out, err = run(capsys, "lint", str(tmp_path / "nope.jsonl"), "--no-tokens", "--json")
    assert code == 1 and "Traceback" not in err
    assert json.loads(out)["error"] == "file not found" and "where:" in err


def test_fix_split_stats_rules(capsys, tmp_path):
    src = tmp_path / "d.jsonl"
    shutil.copy(FIX / "duplicates.jsonl", src)
    before = sha(src)
    code, out, _ = run(capsys, "data", "fix", str(src), "-o", str(tmp_path / "o.jsonl"), "--dedup")
    assert code == 0 and "dropped 2" in out and sha(src) == before
    code, _, err = run(capsys, "data", "fix", str(src), "-o", str(tmp_path / "o.jsonl"), "--dedup")
    assert code == 1 and "already exists" in err and "--force" in err
    code, out, _ = run(capsys, "data", "fix", str(src), "-o", str(tmp_path / "o.jsonl"), "--dedup", "exact", "--force", "--json")
    assert code == 0 and json.loads(out)["dropped"] == 1
    code, out, _ = run(capsys, "data", "split", str(src), "--eval-fraction", "0.34", "--seed", "3", "-o", str(tmp_path / "s"), "--json")
    d = json.loads(out)
    assert code == 0 and d["rows_out"]["train"] + d["rows_out"]["eval"] == 6 and sha(src) == before
    code, _, err = run(capsys, "data", "split", str(src), "--eval-fraction", "2")
    assert code == 2 and "between 0 and 1" in err
    code, out, _ = run(capsys, "data", "stats", str(src), "--no-tokens", "--json")
    assert code == 0 and json.loads(out)["rows"] == 6
    code, out, _ = run(capsys, "data", "rules", "--json")
    assert code == 0 and "template.no_eos" in {r["id"] for r in json.loads(out)}
    code, _, err = run(capsys, "data")
    assert code == 2


def test_show_renders_the_row(capsys, embedded_model_dir):  # the fixture converts the embedded model once
    code, out, _ = run(capsys, "data", "show", str(FIX / "valid_sharegpt.jsonl"), "--row", "1",
                       "--model", "embedded", "--json")
    d = json.loads(out)
    assert code == 0 and d["format"] == "sharegpt" and d["trained_tokens"] < d["tokens"]
    assert [s["text"] for s in d["segments"] if s["trained"]][0].endswith("<|im_end|>")
    code, out, _ = run(capsys, "data", "show", str(FIX / "valid_sharegpt.jsonl"), "--row", "1")
    assert code == 0 and "trained" in out and "<|im_start|>user" in out


def test_help_stays_light():
    """The data commands must not pull heavy libraries into `ftwizard --help`."""
    code = ("import sys, argparse; from ftwizard.commands import data_cmds; "
            "data_cmds.register(argparse.ArgumentParser().add_subparsers()); "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pyarrow', 'rich', 'numpy', 'orjson') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_data_layer_imports_no_ui_and_no_ml_stack():
    """Domain code never imports Textual; the data layer loads transformers only when a tokenizer is asked for."""
    code = ("import sys; import ftwizard.data.lint, ftwizard.data.fix, ftwizard.data.preview, ftwizard.data.render, "
            "ftwizard.data.stats, ftwizard.data.guidance; "
            "print(','.join(m for m in ('textual', 'torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
