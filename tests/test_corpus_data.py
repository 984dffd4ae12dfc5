"""Corpus, data files: files that are not data, rows that are hostile, fixes that must not corrupt.

File faults x every data command; row faults through lint, stats, fix and split; a 50 MB
base64 row with bounded time and memory; arithmetic that is not a phone number; a dry
run that writes nothing; Alpaca findings named by Alpaca keys. Real CLI in subprocesses
(tests/corpus.py checks the contract for each case).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from corpus import ROWS, Case, check, fifo, write_rows

# ---------------------------------------------------------------------------- files that are not data
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS)


def _file(name: str, data: bytes):
    def setup(d: Path):
        (d / name).write_bytes(data)
    return setup


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.jsonl", TEXT)
    return buf.getvalue()


FILE_FAULTS = {
    # name: (file name, setup, what the message must name)
    "fifo": ("d.jsonl", lambda d: fifo(d / "d.jsonl"), "d.jsonl"),
    "folder": ("d.jsonl", lambda d: (d / "d.jsonl").mkdir(), "d.jsonl"),
    "missing": ("d.jsonl", lambda d: None, "d.jsonl"),
    "gzip-named-jsonl": ("d.jsonl", _file("d.jsonl", gzip.compress(TEXT.encode())), "gzip"),
    "gzip-named-json": ("d.json", _file("d.json", gzip.compress(TEXT.encode())), "gzip"),
    "utf16-bom": ("d.jsonl", _file("d.jsonl", TEXT.encode("utf-16")), "UTF-16"),
    "utf16le-no-bom": ("d.jsonl", _file("d.jsonl", TEXT.encode("utf-16-le")), "UTF-16"),
    "zip-named-csv": ("d.csv", _file("d.csv", _zip()), "zip"),
    "text-named-parquet": ("d.parquet", _file("d.parquet", TEXT.encode()), "Parquet"),
    "unknown-extension": ("d.txt", _file("d.txt", TEXT.encode()), "d.txt"),
    "json-scalar": ("d.json", _file("d.json", b"42"), "d.json"),
    "json-string": ("d.json", _file("d.json", b'"just a string"'), "d.json"),
    "json-object-no-rows": ("d.json", _file("d.json", b'{"a": 1, "b": [1, 2]}'), "d.json"),
    "dev-null-link": ("d.jsonl", lambda d: os.symlink("/dev/zero", d / "d.jsonl"), "d.jsonl"),
}


def _data_commands(name: str) -> dict[str, list[str]]:
    return {
        "lint": ["lint", name, "--no-tokens", "--json"],
        "stats": ["data", "stats", name, "--no-tokens", "--json"],
        "fix": ["data", "fix", name, "-o", "out.jsonl", "--drop-invalid", "--json"],
        "split": ["data", "split", name, "-o", "split", "--json"],
        "fix-dry": ["data", "fix", name, "-o", "out.jsonl", "--redact-pii", "--dry-run", "--json"],
    }


def file_cases() -> list[Case]:
    cases = []
    for fault, (name, setup, place) in FILE_FAULTS.items():
        cls = 2 if fault in ("fifo", "dev-null-link") else 11
        for cmd, argv in _data_commands(name).items():
            cases.append(Case(f"file-{fault}-{cmd}", cls, argv, 1, place, setup=setup, timeout=30))
    # the same faults reached through a config's data.train
    for fault in ("fifo", "gzip-named-jsonl", "utf16-bom", "folder"):
        name, setup, place = FILE_FAULTS[fault]

        def cfg_setup(d: Path, setup=setup, name=name):
            setup(d)
            (d / "config.yaml").write_text(f"data:\n  train: {name}\n  max_length: 64\nruns_dir: runs\n")

        for cmd in (["check", "config.yaml", "--json"], ["train", "config.yaml", "--json"]):
            cases.append(Case(f"config-data-{fault}-{cmd[0]}", 2 if fault == "fifo" else 11, cmd, 1, name,
                              setup=cfg_setup, timeout=90, json="ok" if cmd[0] == "check" else "error"))
    return cases


# ---------------------------------------------------------------------------- hostile rows
def _deep_line(n: int) -> bytes:
    return b'{"messages": ' + b"[" * n + b"]" * n + b"}"


def _rows_with(bad: bytes, at: int = 3) -> bytes:
    lines = TEXT.encode().splitlines()
    lines.insert(at, bad)
    return b"\n".join(lines) + b"\n"


ROW_FAULTS = {
    # name: (bytes of a .jsonl file, the lint rule the report must name)
    "deep-150": (_rows_with(_deep_line(150)), "json.too_deep"),
    "deep-1000": (_rows_with(_deep_line(1000)), "json.too_deep"),
    "deep-100000": (_rows_with(_deep_line(100_000)), "json.too_deep"),
    "deep-objects-2000": (_rows_with(b'{"messages": [' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"]}"), "json.too_deep"),
    "deep-unclosed": (_rows_with(b"[" * 50_000), "json"),
    "binary-line": (_rows_with(os.urandom(3000).replace(b"\n", b" ")), "json.invalid"),
    "nul-bytes": (_rows_with(b'{"messages": [{"role": "user", "content": "a\x00b"}]}\x00'), "json.invalid"),
    "lone-surrogate": (_rows_with(b'{"messages": [{"role": "user", "content": "\\ud800"}, '
                                  b'{"role": "assistant", "content": "x"}]}'), "row"),
    "row-is-list": (_rows_with(b"[1, 2, 3]"), "row.not_object"),
    "row-is-string": (_rows_with(b'"hello"'), "row.not_object"),
    "row-is-null": (_rows_with(b"null"), "row.not_object"),
    "messages-not-list": (_rows_with(b'{"messages": "hi"}'), "messages"),
    "content-number": (_rows_with(b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": 6}]}'),
                       "content.not_string"),
    "role-missing": (_rows_with(b'{"messages": [{"content": "a"}, {"role": "assistant", "content": "b"}]}'), "role"),
    "huge-key": (_rows_with(b'{"' + b"k" * 300_000 + b'": 1}'), "row.too_large"),
    "truncated-last-line": (TEXT.encode() + b'{"messages": [{"role": "us', "json.invalid"),
    "crlf-and-bom": (b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode(), "encoding.bom"),
    "invalid-utf8": (_rows_with(b'{"messages": [{"role": "user", "content": "caf\xe9"}, '
                                b'{"role": "assistant", "content": "ok"}]}'), "encoding.invalid_utf8"),
}


def row_cases() -> list[Case]:
    cases = []
    for fault, (data, rule) in ROW_FAULTS.items():
        setup = _file("d.jsonl", data)
        cases.append(Case(f"row-{fault}-lint", 5 if "deep" in fault else 11, ["lint", "d.jsonl", "--no-tokens", "--json"],
                          0 if fault == "crlf-and-bom" else 1, rule, setup=setup, timeout=30, json="ok"))  # a BOM: warning
        cases.append(Case(f"row-{fault}-stats", 5 if "deep" in fault else 11,
                          ["data", "stats", "d.jsonl", "--no-tokens", "--json"], 0, None, setup=setup, timeout=30))
        cases.append(Case(f"row-{fault}-fix", 5 if "deep" in fault else 11,
                          ["data", "fix", "d.jsonl", "-o", "out.jsonl", "--drop-invalid", "--json"], 0, None,
                          setup=setup, timeout=30))
        cases.append(Case(f"row-{fault}-fix-refuses", 5 if "deep" in fault else 11,
                          ["data", "fix", "d.jsonl", "-o", "out.jsonl", "--json"], (0, 1), None, setup=setup, timeout=30))
    # JSON (not JSONL) and CSV shapes of the same faults
    n = 5000
    cases += [
        Case("json-array-deep", 5, ["lint", "d.json", "--no-tokens", "--json"], 1, "json.too_deep",
             json="ok", setup=_file("d.json", b"[" + b"[" * n + b"]" * n + b"]")),
        Case("json-object-deep", 5, ["lint", "d.json", "--no-tokens", "--json"], 1, "json.too_deep",
             json="ok", setup=_file("d.json", b'{"data": [' + b'{"a":' * 900 + b"1" + b"}" * 900 + b"]}")),
        Case("json-element-deep", 5, ["data", "stats", "d.json", "--no-tokens", "--json"], 0, None,
             setup=_file("d.json", ("[" + json.dumps(ROWS[0]) + ", " + "[" * 300 + "]" * 300 + "]").encode())),
        Case("csv-deep-messages-cell", 5, ["lint", "d.csv", "--no-tokens", "--json"], 1, "messages",
             json="ok", setup=_file("d.csv", b'messages\n"' + b"[" * 3000 + b"]" * 3000 + b'"\n')),
        Case("csv-huge-cell", 3, ["lint", "d.csv", "--no-tokens", "--json"], 1, "row.too_large",
             json="ok", setup=_file("d.csv", b"text\n" + b"A" * 400_000 + b"\n")),
        Case("csv-nul", 11, ["lint", "d.csv", "--no-tokens", "--json"], (0, 1), None,
             setup=_file("d.csv", b"text\nhello\x00world\n")),
    ]
    return cases


# ---------------------------------------------------------------------------- class 3: huge rows
def _huge(d: Path, mb: int = 50) -> None:
    blob = base64.b64encode(os.urandom(mb * 3 * 1024 * 1024 // 4)).decode()
    rows = ROWS[:3] + [{"messages": [{"role": "user", "content": "describe this image " + blob},
                                     {"role": "assistant", "content": "a cat"}]}] + ROWS[3:6]
    write_rows(d / "big.jsonl", rows)


def huge_cases() -> list[Case]:
    base64_said = lambda d, r: _assert_in(r, "base64")  # noqa: E731
    return [
        Case("huge-50mb-lint", 3, ["lint", "big.jsonl", "--no-tokens", "--json"], 1, "row.too_large", json="ok", setup=_huge,
             timeout=60, max_rss_mb=400, extra=base64_said),
        Case("huge-50mb-lint-text", 3, ["lint", "big.jsonl", "--no-tokens"], 1, "52,428,", setup=_huge,
             timeout=60, max_rss_mb=400, extra=base64_said),
        Case("huge-50mb-fix-drop", 3, ["data", "fix", "big.jsonl", "-o", "out.jsonl", "--drop-invalid", "--json"], 0,
             None, setup=_huge, timeout=60, max_rss_mb=400,
             extra=lambda d, r: _assert_lines(d / "out.jsonl", 6)),
        Case("huge-50mb-stats", 3, ["data", "stats", "big.jsonl", "--no-tokens", "--json"], 0, None, setup=_huge,
             timeout=60, max_rss_mb=400),
        Case("huge-5mb-lint-with-tokenizer", 3, ["lint", "big.jsonl", "--json"], 1, "row.too_large",
             json="ok", setup=lambda d: _huge(d, 5), timeout=120, max_rss_mb=1200, extra=base64_said),
    ]


def _assert_in(r, text: str) -> None:
    assert text in r.out + r.err, (text, r.out[-2000:], r.err[-2000:])


def _assert_lines(p: Path, n: int) -> None:
    got = len(p.read_text().splitlines())
    assert got == n, f"{p}: {got} lines, expected {n}"


# ---------------------------------------------------------------------------- class 12: fixes that must not corrupt
GSM = [
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many?",
     "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72"),
    ("A house costs 28980 dollars after a 18480 discount was taken off. What was saved?",
     "The difference is 28980 - 18480 = 10500.\n#### 10500"),
    ("He ran 1200 - 350 metres, then 3 * 415 more. Total?", "1200 - 350 = 850 and 3 * 415 = 1245, so 850 + 1245 = 2095.\n#### 2095"),
    ("Compute 5551234 - 1000000.", "5551234 - 1000000 = 4551234\n#### 4551234"),
    ("Tom had 3 boxes of 12 eggs and broke 5. How many are whole?", "3 * 12 = 36\n36 - 5 = 31\n#### 31"),
]


def _gsm(d: Path) -> None:
    write_rows(d / "gsm.jsonl", [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                                 for q, a in GSM])


def _with_pii(d: Path) -> None:
    write_rows(d / "pii.jsonl", [{"instruction": "How do I reach support?",
                                  "output": "Call (212) 555-0198 or mail help@example.com; 28980 - 18480 = 10500."},
                                 {"instruction": "Sum?", "output": "3 + 4 = 7"}])


def _no_pii_finding(d: Path, r) -> None:
    rules = [f["rule"] for f in json.loads(r.out)["errors"] + json.loads(r.out)["warnings"]]
    assert not [x for x in rules if x.startswith("pii.")], rules


def _dry_run_ok(d: Path, r) -> None:
    assert not (d / "out.jsonl").exists() and not (d / "out.jsonl.report.json").exists(), "a dry run wrote files"
    o = json.loads(r.out)
    assert o["dry_run"] is True and o["counts"] == {"redact.email": 1, "redact.phone": 1}, o
    diff = o["diffs"][0]
    assert diff["field"] == "output" and "10500" in diff["after"] and "[PHONE]" in diff["after"], diff


def _fix_counts(d: Path, r) -> None:
    o = json.loads(r.out)
    assert o["counts"] == {"redact.email": 1, "redact.phone": 1}, o
    out = (d / "out.jsonl").read_text()
    assert "28980 - 18480 = 10500" in out and "3 + 4 = 7" in out and "[PHONE]" in out, out


def _gsm_unchanged(d: Path, r) -> None:
    o = json.loads(r.out)
    assert o["changed"] == 0 and o["counts"] == {}, o


def _alpaca_fields(d: Path, r) -> None:
    findings = json.loads(r.out)["errors"] + json.loads(r.out)["warnings"]
    fields = {f["field"] for f in findings if f["field"]}
    assert fields and not any(f.startswith("messages[") for f in fields), fields
    assert "output" in fields, fields


def fix_cases() -> list[Case]:
    return [
        Case("pii-gsm8k-lint", 12, ["lint", "gsm.jsonl", "--no-tokens", "--json"], (0, 1), None, setup=_gsm,
             extra=_no_pii_finding),
        Case("pii-gsm8k-fix", 12, ["data", "fix", "gsm.jsonl", "-o", "out.jsonl", "--redact-pii", "--json"], 0, None,
             setup=_gsm, extra=_gsm_unchanged),
        Case("pii-dry-run", 12, ["data", "fix", "pii.jsonl", "-o", "out.jsonl", "--redact-pii", "--dry-run", "--json"], 0,
             None, setup=_with_pii, extra=_dry_run_ok),
        Case("pii-dry-run-text", 12, ["data", "fix", "pii.jsonl", "-o", "out.jsonl", "--redact-pii", "--dry-run"], 0,
             "redact.phone 1", setup=_with_pii, extra=lambda d, r: _assert_in(r, "[PHONE]")),
        Case("pii-fix-counts-per-rule", 12, ["data", "fix", "pii.jsonl", "-o", "out.jsonl", "--redact-pii", "--json"], 0,
             None, setup=_with_pii, extra=_fix_counts),
        Case("pii-fix-text-per-rule", 12, ["data", "fix", "pii.jsonl", "-o", "out.jsonl", "--redact-pii"], 0,
             "redact.email 1", setup=_with_pii),
        Case("lint-alpaca-field-names", 13, ["lint", "pii.jsonl", "--no-tokens", "--json"], (0, 1), None,
             setup=_with_pii, extra=_alpaca_fields),
    ]


# ---------------------------------------------------------------------------- class 13: the planner's answers
def _sample_config(d: Path) -> None:
    write_rows(d / "train.jsonl", ROWS * 10)
    (d / "config.yaml").write_text("data:\n  train: train.jsonl\n  max_length: 128\nruns_dir: runs\n"
                                   "training:\n  batch_size: 2\n")


def _cpu_plan(d: Path, r) -> None:
    """No GPU here: estimate plans the CPU run (fp32, no CUDA context) and agrees with check."""
    import subprocess
    import sys

    from corpus import env

    e = json.loads(r.out)
    if e.get("gpu"):
        pytest.skip("this machine has a GPU: the CPU plan is not what estimate shows here")
    assert e["settings"]["precision"] == "fp32" and not e["parts"].get("cuda_context"), e["settings"]
    c = subprocess.run([sys.executable, "-m", "ftwizard", "check", "config.yaml", "--json"], cwd=d, env=env(),
                       capture_output=True, text=True, timeout=120)
    est = json.loads(c.stdout)["estimate"]
    assert abs(est["total_bytes"] - e["total_bytes"]) <= 0.02 * e["total_bytes"], (est["total_bytes"], e["total_bytes"])
    cheap = e["cheapest_gpu"]
    from ftwizard.hardware.catalog import catalog

    prices = sorted(s.price_per_hour for s in catalog() if s.price_per_hour and s.vendor == "nvidia"
                    and s.memory_gib * 1024**3 > 4 * e["total_bytes"])
    assert cheap and cheap["price_per_hour"] <= prices[0] + 1e-9, (cheap, prices[:3])


def planner_cases() -> list[Case]:
    return [Case("estimate-cpu-agrees-with-check", 13, ["estimate", "config.yaml", "--json"], 0, None,
                 setup=_sample_config, timeout=180, extra=_cpu_plan)]


ALL = file_cases() + row_cases() + huge_cases() + fix_cases() + planner_cases()


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_corpus_data(case: Case, tmp_path: Path):
    check(case, tmp_path / "case")
