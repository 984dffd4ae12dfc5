"""fix and split: new files only, atomic, refusing to overwrite, every output row traced to its input row."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ftwizard.data.fix import fix_file, label_of, split_file
from ftwizard.data.lint import lint_file
from ftwizard.errors import UserError

FIX = Path(__file__).parent / "fixtures" / "data"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def copy(tmp_path):
    """A fixture file copied into tmp_path, so outputs written beside it stay in tmp_path."""

    def _copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copy(FIX / name, dst)
        return dst

    return _copy


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_dedup_drops_exact_and_near_and_keeps_the_first(copy, tmp_path):
    src = copy("duplicates.jsonl")
    before = sha(src)
    out = tmp_path / "clean.jsonl"
    rep = fix_file(src, out, dedup="near")
    assert sha(src) == before
    assert rep.map["output"] == [1, 2, 3, 6]
    assert {d["row"]: d["duplicate_of"] for d in rep.dropped} == {4: 1, 5: 1}
    report = json.loads((tmp_path / "clean.jsonl.report.json").read_text())
    assert report["source_sha256"] == before and report["rows_out"] == {"output": 4}
    # untouched rows are byte-for-byte copies of the input lines
    lines = src.read_bytes().splitlines()
    assert out.read_bytes().splitlines() == [lines[i - 1] for i in rep.map["output"]]
    assert not any(f.rule.startswith("dup.") for f in lint_file(out).findings)


def test_dedup_exact_only_keeps_near_duplicates(copy, tmp_path):
    rep = fix_file(copy("duplicates.jsonl"), tmp_path / "o.jsonl", dedup="exact")
    assert [d["row"] for d in rep.dropped] == [4]


def test_invalid_rows_need_drop_invalid(copy, tmp_path):
    src = copy("mixture.jsonl")
    before = sha(src)
    out = tmp_path / "o.jsonl"
    with pytest.raises(UserError) as e:
        fix_file(src, out)
    assert "row 2" in e.value.what and "row 3" in e.value.what and "--drop-invalid" in e.value.fix
    assert not out.exists() and sha(src) == before
    rep = fix_file(src, out, drop_invalid=True, dedup="exact", redact_pii=True, to_messages=True)
    assert sha(src) == before
    dropped = {d["row"]: d["reason"] for d in rep.dropped}
    assert set(dropped) == {2, 3, 5, 7}
    assert dropped[2].startswith("roles.unknown") and dropped[3].startswith("json.invalid")
    assert dropped[5] == "exact duplicate of row 1"
    assert rep.map["output"] == [1, 4, 6]
    out_rows = rows(out)
    assert all(set(r) == {"messages"} for r in out_rows)
    assert "[EMAIL]" in out_rows[1]["messages"][1]["content"]
    changed = {c["row"]: c for c in rep.changed}
    assert changed[4]["out_row"] == 2 and "redacted 1 email" in changed[4]["changes"]
    assert any("converted from alpaca" in c for c in changed[6]["changes"])
    after = lint_file(out)
    assert after.exit_code == 0 and not any(f.rule.startswith("pii.") for f in after.findings)


def test_encoding_problems_are_repaired_not_dropped(copy, tmp_path):
    rep = fix_file(copy("bom.jsonl"), tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").read_bytes().startswith(b"\xef\xbb\xbf")
    assert rep.changed[0]["row"] == 1 and "byte order mark removed" in rep.changed[0]["changes"]
    rep = fix_file(copy("bad_utf8.jsonl"), tmp_path / "u.jsonl")
    assert "\ufffd" in (tmp_path / "u.jsonl").read_text(encoding="utf-8")
    assert rep.changed[0]["row"] == 2
    assert lint_file(tmp_path / "u.jsonl").counts.get("encoding.invalid_utf8") is None


@pytest.mark.parametrize("name", ["valid_sharegpt.jsonl", "valid_alpaca.jsonl", "valid_prompt_completion.jsonl",
                                  "valid_alpaca.csv", "valid_messages.parquet", "valid_wrapped.json"])
def test_to_messages_converts_every_format(copy, tmp_path, name):
    src = copy(name)
    before = sha(src)
    out = tmp_path / "m.jsonl"
    rep = fix_file(src, out, to_messages=True)
    assert sha(src) == before and rep.rows_out["output"] == 6
    converted = rows(out)
    assert all(r["messages"][-1]["role"] == "assistant" for r in converted)
    assert lint_file(out).format == "messages"


def test_refuses_to_overwrite(copy, tmp_path):
    src = copy("valid_messages.jsonl")
    before = sha(src)
    with pytest.raises(UserError, match="overwrite the input"):
        fix_file(src, src, force=True)
    out = tmp_path / "o.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(UserError, match="already exists"):
        fix_file(src, out)
    assert out.read_text() == "keep me\n"
    fix_file(src, out, force=True)
    assert len(rows(out)) == 6 and sha(src) == before
    with pytest.raises(UserError, match=".jsonl"):
        fix_file(src, tmp_path / "o.csv")
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_split_is_deterministic_and_complete(copy, tmp_path):
    src = copy("labels_imbalanced.jsonl")
    before = sha(src)
    a = split_file(src, tmp_path / "a", eval_fraction=0.25, seed=7)
    b = split_file(src, tmp_path / "b", eval_fraction=0.25, seed=7)
    assert sha(src) == before
    assert a.map == b.map
    assert sorted(a.map["train"] + a.map["eval"]) == list(range(1, 41))
    assert len(a.map["eval"]) == 10
    assert (tmp_path / "a" / "labels_imbalanced.eval.jsonl").read_bytes() == (tmp_path / "b" / "labels_imbalanced.eval.jsonl").read_bytes()
    c = split_file(src, tmp_path / "c", eval_fraction=0.25, seed=8)
    assert c.map != a.map
    with pytest.raises(UserError, match="already exists"):
        split_file(src, tmp_path / "a", eval_fraction=0.25, seed=7)


def test_split_stratified_keeps_label_shares(copy, tmp_path):
    src = copy("labels_imbalanced.jsonl")
    rep = split_file(src, tmp_path, eval_fraction=0.5, seed=1, stratify=True)
    labels = {side: Counter(label_of(r["messages"]) for r in rows(Path(rep.outputs[side]))) for side in ("train", "eval")}
    assert labels["eval"]["negative"] == 1 and labels["train"]["negative"] == 1
    assert labels["eval"]["positive"] == 19 and labels["train"]["positive"] == 19


def test_split_keeps_duplicates_on_one_side(copy, tmp_path):
    src = copy("duplicates.jsonl")
    for seed in range(6):
        rep = split_file(src, tmp_path / str(seed), eval_fraction=0.3, seed=seed)
        side_of = {r: s for s in ("train", "eval") for r in rep.map[s]}
        assert side_of[1] == side_of[4]  # row 4 repeats row 1


def test_split_usage_errors(copy, tmp_path):
    src = copy("valid_messages.jsonl")
    with pytest.raises(UserError) as e:
        split_file(src, tmp_path, eval_fraction=1.5)
    assert e.value.code == 2
    with pytest.raises(UserError, match="class labels"):
        split_file(src, tmp_path, eval_fraction=0.2, stratify=True)
    with pytest.raises(UserError, match="cannot be trained on"):
        split_file(copy("mixture.jsonl"), tmp_path, eval_fraction=0.2)
    rep = split_file(copy("mixture.jsonl"), tmp_path, eval_fraction=0.2, drop_invalid=True)
    assert {d["row"] for d in rep.dropped} == {2, 3, 7}


def test_label_of():
    def conv(answer):
        return [{"role": "user", "content": "x"}, {"role": "assistant", "content": answer}]

    assert label_of(conv("positive")) == "positive"
    assert label_of(conv('{"summary": "long text here", "category": "billing"}')) == "category=billing"
    assert label_of(conv("A long answer " * 10)) is None
