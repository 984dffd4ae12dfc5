"""Lint on the bad-file corpus: each defect gives its rule id at its row, and no file is modified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ftwizard.data.lint import LintOptions, lint_file
from ftwizard.data.rules import RULES
from ftwizard.errors import UserError

FIX = Path(__file__).parent / "fixtures" / "data"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lint(name: str, **kw):
    path = FIX / name
    before = sha(path)
    report = lint_file(path, LintOptions(**kw))
    assert sha(path) == before, f"lint modified {name}"
    return report


def hits(report) -> set[tuple[str, int | None]]:
    return {(f.rule, f.row) for f in report.findings}


# (fixture, expected (rule, row) pairs, the file's format)
CASES = [
    ("invalid_json.jsonl", {("json.invalid", 3)}, "messages"),
    ("not_object.jsonl", {("row.not_object", 2), ("row.not_object", 4)}, "messages"),
    ("bad_utf8.jsonl", {("encoding.invalid_utf8", 2)}, "messages"),
    ("bom.jsonl", {("encoding.bom", 1)}, "messages"),
    ("empty.jsonl", {("file.empty", None)}, None),
    ("invalid_array.json", {("json.invalid", 1)}, None),
    ("bad_columns.csv", {("csv.columns", 2)}, "alpaca"),
    ("bad_utf8.csv", {("encoding.invalid_utf8", 2)}, "alpaca"),
    ("missing_keys.jsonl", {("keys.missing", 2), ("keys.missing", 3), ("keys.missing", 4)}, "messages"),
    # row 3's tool turn is a tool result with no call before it (tool rows train since issue 14: ftwizard.data.tools)
    ("unknown_role.jsonl", {("roles.unknown", 2), ("tools.result_orphan", 3)}, "messages"),
    ("role_order.jsonl", {("roles.order", 1), ("roles.order", 2), ("roles.order", 3), ("roles.order", 4)}, "messages"),
    ("empty_content.jsonl", {("content.empty", 1), ("content.empty", 2), ("content.empty", 4)}, "messages"),
    ("non_string_content.jsonl", {("content.not_string", 1), ("content.not_string", 2)}, "messages"),
    ("mixed_formats.jsonl", {("format.mixed", 5), ("format.mixed", 6)}, "messages"),
    # preference.jsonl: its severity follows training.objective (tests/test_preference_data.py)
    ("valid_text.jsonl", {("format.text", 1)}, "text"),
    ("extra_keys.jsonl", {("keys.unknown", 1)}, "messages"),
    ("duplicates.jsonl", {("dup.exact", 4), ("dup.near", 5)}, "messages"),
    ("pii.jsonl", {("pii.email", 1), ("pii.phone", 2), ("pii.credit_card", 3), ("pii.iban", 4), ("pii.ssn", 5),
                   ("pii.ip", 6), ("pii.secret", 7)}, "messages"),
    ("labels_imbalanced.jsonl", {("labels.imbalance", 20)}, "messages"),
    ("json_outputs.jsonl", {("output.json_invalid", 7)}, "messages"),
    ("system_inconsistent.jsonl", {("system.inconsistent", 4), ("system.inconsistent", 6)}, "messages"),
]


@pytest.mark.parametrize("name,expected,fmt", CASES, ids=[c[0] for c in CASES])
def test_each_defect_is_found_at_its_row(name, expected, fmt):
    report = lint(name)
    assert expected <= hits(report), hits(report)
    assert report.format == fmt
    for rule_id, row in expected:
        f = next(f for f in report.findings if f.rule == rule_id and f.row == row)
        assert f.severity == RULES[rule_id].severity
        assert f.message and f.hint
    has_error = any(RULES[r].severity == "error" for r, _ in expected)
    assert report.exit_code == (1 if has_error else 0)


def test_no_false_alarms_elsewhere():
    """Rows next to the planted defects are not flagged; the PII negatives (order number, time, date) stay quiet."""
    pii = lint("pii.jsonl")
    assert not any(f.row in (8, 9) for f in pii.findings if f.rule.startswith("pii."))
    dups = lint("duplicates.jsonl")
    assert {f.row for f in dups.findings if f.rule.startswith("dup.")} == {4, 5}
    near = next(f for f in dups.findings if f.rule == "dup.near")
    assert near.related == [1] and "row 1" in near.message


VALID = ["valid_messages.jsonl", "valid_sharegpt.jsonl", "valid_alpaca.jsonl", "valid_prompt_completion.jsonl",
         "valid_array.json", "valid_wrapped.json", "jsonl_named.json", "valid_alpaca.csv", "valid_messages.csv",
         "valid_messages.parquet"]


@pytest.mark.parametrize("name", VALID)
def test_valid_files_in_every_format_and_kind_are_clean(name):
    report = lint(name)
    assert report.rows == report.valid_rows == 6
    assert report.format in ("messages", "sharegpt", "alpaca", "prompt_completion")
    assert report.exit_code == 0
    noisy = {f.rule for f in report.findings if f.severity != "info" and f.rule != "data.too_few"}
    assert not noisy, noisy


def test_positions_are_exact():
    inv = lint("invalid_json.jsonl")
    f = next(f for f in inv.findings if f.rule == "json.invalid")
    assert "line 3, column 49" in f.message and f.snippet  # the "]" after the trailing comma
    enc = lint("bad_utf8.jsonl")
    f = next(f for f in enc.findings if f.rule == "encoding.invalid_utf8")
    bad = b"\xe9"
    offset = (FIX / "bad_utf8.jsonl").read_bytes().index(bad)
    assert f"byte offset {offset}" in f.message and "e9" in f.message
    csvf = next(f for f in lint("bad_utf8.csv").findings if f.rule == "encoding.invalid_utf8")
    offset = (FIX / "bad_utf8.csv").read_bytes().index(bad)
    assert f"byte offset {offset}" in csvf.message
    arr = next(f for f in lint("invalid_array.json").findings if f.rule == "json.invalid")
    assert "line 4" in arr.message


def test_field_paths_point_into_the_row():
    r = lint("missing_keys.jsonl")
    assert next(f for f in r.findings if f.row == 2).field == "messages[1].content"
    three = next(f for f in r.findings if f.row == 3)
    assert "output" in three.message and "response" in three.message  # "looks like alpaca, rename response?"
    r = lint("role_order.jsonl")
    assert next(f for f in r.findings if f.row == 1).field == "messages[1].role"


def test_mixture_of_defects():
    r = lint("mixture.jsonl")
    assert {("roles.unknown", 2), ("json.invalid", 3), ("pii.email", 4), ("dup.exact", 5), ("format.mixed", 6),
            ("content.empty", 7)} <= hits(r)
    assert r.rows == 7 and r.exit_code == 1


def test_task_type_sets_the_example_count_rule():
    r = lint("labels_imbalanced.jsonl", task_type="classification")
    f = next(f for f in r.findings if f.rule == "data.too_few")
    assert f.severity == "warning" and "minimum 50" in f.message
    r = lint("labels_imbalanced.jsonl", task_type="classification", max_per_rule=1)
    assert r.counts["labels.imbalance"] == 1


def test_eval_overlap():
    r = lint("eval_overlap_train.jsonl", eval_path=FIX / "eval_overlap_eval.jsonl")
    found = {f.row: f for f in r.findings if f.rule == "eval.overlap"}
    assert set(found) == {2, 3}
    assert found[2].related == [4] and "exact copy" in found[2].message
    assert found[3].related == [1] and found[3].file.endswith("eval_overlap_eval.jsonl")


def test_counts_stay_exact_when_findings_are_capped(tmp_path):
    rows = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "bot", "content": "a"}]}) for i in range(50)]
    p = tmp_path / "many.jsonl"
    p.write_text("\n".join(rows) + "\n")
    r = lint_file(p, LintOptions(max_per_rule=10))
    assert r.counts["roles.unknown"] == 50
    d = r.to_dict()
    assert len(d["errors"]) == 10 and d["not_listed"]["roles.unknown"] == 40


def test_json_report_schema_is_stable():
    d = lint("mixture.jsonl").to_dict()
    assert set(d) == {"version", "file", "kind", "format", "formats", "rows", "valid_rows", "model", "max_length", "ok",
                      "errors", "warnings", "infos", "counts", "not_listed", "stats", "elapsed_s"}
    assert d["version"] == 1 and d["ok"] is False
    for f in d["errors"] + d["warnings"] + d["infos"]:
        assert {"rule", "severity", "row", "field", "message", "hint", "snippet"} <= set(f)
        assert f["rule"] in RULES
    assert [f["severity"] for f in d["errors"]] == ["error"] * len(d["errors"])
    json.dumps(d)


def test_unreadable_inputs_are_clear_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        lint_file(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="unsupported file type"):
        (tmp_path / "data.xlsx").write_bytes(b"PK")
        lint_file(tmp_path / "data.xlsx")
    with pytest.raises(UserError, match="folder"):
        lint_file(tmp_path)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="Parquet"):
        lint_file(tmp_path / "broken.parquet")
    (tmp_path / "obj.json").write_text('{"a": 1, "b": 2}')
    with pytest.raises(UserError, match="no list of rows"):
        lint_file(tmp_path / "obj.json")


def test_stats_without_tokenizer():
    s = lint("valid_messages.jsonl").stats
    assert s["rows"] == 6 and s["formats"] == {"messages": 6}
    assert s["turns"] == {"min": 3, "max": 3, "mean": 3.0, "histogram": {"3": 6}}
    assert s["roles"] == {"system": 6, "user": 6, "assistant": 6} and s["tokens"] is None


def test_csv_cell_with_broken_json_is_named(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text('messages\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]"\n"[{broken"\n')
    r = lint_file(p)
    f = next(f for f in r.findings if f.severity == "error")
    assert (f.rule, f.row, f.field) == ("content.not_string", 2, "messages") and "JSON" in f.message


def test_label_balance_inside_json_outputs(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"ticket {i}"}, {"role": "assistant", "content": json.dumps(
        {"category": "billing" if i % 15 else "fraud", "note": f"free text {i}"})}]} for i in range(40)]
    p = tmp_path / "j.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    f = next(f for f in lint_file(p).findings if f.rule == "labels.imbalance")
    assert f.row == 1 and "'category'" in f.message and "'fraud' 3" in f.message


def _random_value(r, depth=0):
    c = r.random()
    if depth > 3 or c < 0.3:
        return r.choice([None, True, 0, 1.5, "", " ", "hi", "<|im_end|>", "a@b.co", [], {}])
    if c < 0.5:
        return [_random_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    keys = ["messages", "conversations", "role", "content", "from", "value", "instruction", "input", "output",
            "prompt", "completion", "text", "chosen", "rejected", "system", "type"]
    d = {r.choice(keys): _random_value(r, depth + 1) for _ in range(r.randint(0, 3))}
    if r.random() < 0.5:
        d["messages"] = [{"role": r.choice(["user", "assistant", "system", "bot", None, 3]),
                          "content": _random_value(r, 3) if r.random() < 0.3 else "txt"} for _ in range(r.randint(0, 4))]
    return d


@pytest.mark.parametrize("seed", range(8))
def test_random_rows_never_crash(tmp_path, seed):
    """Whatever the rows hold, lint, fix and split answer with findings or a UserError, never a traceback."""
    import random

    from ftwizard.data.fix import fix_file, split_file

    r = random.Random(seed)
    lines = [json.dumps(_random_value(r)) for _ in range(30)] + ["{bad"]
    p = tmp_path / "fuzz.jsonl"
    p.write_text("\n".join(lines))
    before = sha(p)
    rep = lint_file(p, LintOptions(eval_path=p))
    assert rep.rows == 31 and ("json.invalid", 31) in hits(rep)
    json.dumps(rep.to_dict())
    for run in (lambda: fix_file(p, tmp_path / "o.jsonl", dedup="near", drop_invalid=True, redact_pii=True, to_messages=True),
                lambda: split_file(p, tmp_path / "s", eval_fraction=0.3, drop_invalid=True, stratify=seed % 2 == 0)):
        try:
            run()
        except UserError:
            pass
    assert sha(p) == before
