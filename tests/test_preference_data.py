"""Preference data: each row shape detected and normalised, bad rows located, and each lint rule with a
trigger and a near miss (ftwizard.data.preference, its wiring in ftwizard.data.lint). Fast: no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftwizard.data.formats import detect_format, implied_objective
from ftwizard.data.lint import LintOptions, lint_file
from ftwizard.data.preference import load_preference_file
from ftwizard.errors import UserError

U = lambda t: {"role": "user", "content": t}  # noqa: E731
A = lambda t: {"role": "assistant", "content": t}  # noqa: E731
NORMAL = {"prompt": [U("Name a fruit.")], "chosen": [A("Apple.")], "rejected": [A("Carrot.")]}


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


SHAPES = [
    ("strings", {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Carrot."}, "preference", NORMAL),
    ("conversational", {"prompt": [U("Name a fruit.")], "chosen": [A("Apple.")], "rejected": [A("Carrot.")]},
     "preference", NORMAL),
    ("whole conversations (HH)", {"chosen": [U("Name a fruit."), A("Apple.")],
                                  "rejected": [U("Name a fruit."), A("Carrot.")]}, "preference", NORMAL),
    ("HH raw text", {"chosen": "\n\nHuman: Name a fruit.\n\nAssistant: Apple.",
                     "rejected": "\n\nHuman: Name a fruit.\n\nAssistant: Carrot."}, "preference", NORMAL),
    ("prompt repeated in the sides", {"prompt": "Name a fruit.", "chosen": [U("Name a fruit."), A("Apple.")],
                                      "rejected": [U("Name a fruit."), A("Carrot.")]}, "preference", NORMAL),
    ("system field", {"system": "Be brief.", "prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Carrot."},
     "preference", {**NORMAL, "prompt": [{"role": "system", "content": "Be brief."}, U("Name a fruit.")]}),
    ("multi-turn HH", {"chosen": [U("Hi"), A("Hello!"), U("Name a fruit."), A("Apple.")],
                       "rejected": [U("Hi"), A("Hello!"), U("Name a fruit."), A("Carrot.")]}, "preference",
     {**NORMAL, "prompt": [U("Hi"), A("Hello!"), U("Name a fruit.")]}),
]


@pytest.mark.parametrize("name,row,fmt,expected", SHAPES, ids=[s[0] for s in SHAPES])
def test_each_pair_shape_is_detected_and_normalised(tmp_path, name, row, fmt, expected):
    assert detect_format(row) == fmt
    assert implied_objective(fmt) == "dpo"
    kind, rows = load_preference_file(write(tmp_path / "p.jsonl", [row, row]))
    assert kind == "pairs"
    assert rows[0] == expected


def test_kto_rows_and_system_prompt(tmp_path):
    rows_in = [{"prompt": "Name a fruit.", "completion": "Apple.", "label": True},
               {"prompt": [U("Name a fruit.")], "completion": [A("Carrot.")], "label": False},
               {"prompt": "Name a fruit.", "completion": "Pear.", "label": "true"}]  # CSV-style text label
    assert [detect_format(r) for r in rows_in] == ["kto"] * 3
    assert implied_objective("kto") == "kto"
    kind, rows = load_preference_file(write(tmp_path / "k.jsonl", rows_in), system_prompt="Be brief.")
    assert kind == "unpaired"
    assert rows[1] == {"prompt": [{"role": "system", "content": "Be brief."}, U("Name a fruit.")],
                       "completion": [A("Carrot.")], "label": False}
    assert [r["label"] for r in rows] == [True, False, True]
    # near miss: a prompt/completion row whose label is a class name stays SFT data
    assert detect_format({"prompt": "x", "completion": "y", "label": "sports"}) == "prompt_completion"


BAD = [
    ({"prompt": "Q", "chosen": 5, "rejected": "b"}, "row 2, field chosen", "must be text"),
    ({"prompt": "Q", "chosen": [{"role": "bot", "content": "a"}], "rejected": "b"}, "row 2, field chosen[0].role",
     "unknown role"),
    ({"prompt": "Q", "chosen": "a", "rejected": "   "}, "row 2, field rejected", "whitespace"),
    ({"prompt": "Q", "chosen": "a"}, "row 2, field rejected", "missing"),
    ({"chosen": [U("Q1"), A("a")], "rejected": [U("Q2"), A("b")]}, "row 2, field rejected[0]", "different prompts"),
    ({"prompt": "Q", "completion": "a", "label": "maybe", "chosen": None}, "row 2", "preference"),
]


@pytest.mark.parametrize("row,where,words", BAD, ids=[b[1] + " " + b[2] for b in BAD])
def test_bad_rows_name_file_row_and_field(tmp_path, row, where, words):
    path = write(tmp_path / "bad.jsonl", [NORMAL, row])
    with pytest.raises(UserError) as e:
        load_preference_file(path)
    assert f"bad.jsonl {where}" in e.value.what and words in e.value.what, e.value.what
    assert e.value.where == f"{path}:2"


def test_file_level_errors(tmp_path):
    with pytest.raises(UserError, match="row 2 is an unpaired KTO row"):
        load_preference_file(write(tmp_path / "mixed.jsonl", [NORMAL, {"prompt": "Q", "completion": "a", "label": True}]))
    with pytest.raises(UserError, match=r"row 2: .*JSON|row 2: "):
        load_preference_file(write(tmp_path / "broken.jsonl", [NORMAL, '{"prompt": "Q", "chosen": ']))
    with pytest.raises(UserError, match="not a preference row"):
        load_preference_file(write(tmp_path / "sft.jsonl", [{"messages": [U("Q"), A("a")]}]))
    with pytest.raises(UserError, match="no rows"):
        load_preference_file(write(tmp_path / "empty.jsonl", []))


# ---------------------------------------------------------------- lint
def pairs(n: int, chosen=lambda i: f"Answer {i} in the house style.", rejected=lambda i: f"Answer {i}: not house style."):
    return [{"prompt": f"Question {i}?", "chosen": chosen(i), "rejected": rejected(i)} for i in range(n)]


def lint_rows(tmp_path, rows, **kw):
    return lint_file(write(tmp_path / "lint.jsonl", rows), LintOptions(**kw))


def hits(report):
    return {(f.rule, f.row) for f in report.findings}


def test_clean_pairs_pass_under_dpo(tmp_path):
    report = lint_rows(tmp_path, pairs(20), objective="dpo")
    assert report.format == "preference" and report.valid_rows == 20
    assert report.exit_code == 0
    assert not [f for f in report.findings if f.rule.startswith(("pref.", "format."))], hits(report)
    assert report.stats["preference"]["pairs"] == 20


def test_objective_decides_the_format_finding(tmp_path):
    rows = pairs(4)
    sft = lint_rows(tmp_path, rows, objective="sft")
    f = next(f for f in sft.findings if f.rule == "format.preference")
    assert f.severity == "error" and "set training.objective: dpo" in f.message and sft.exit_code == 1
    unknown = lint_rows(tmp_path, rows)
    assert [f.severity for f in unknown.findings if f.rule == "format.preference"] == ["info"]
    assert unknown.exit_code == 0
    for obj in ("dpo", "orpo", "kto"):
        assert not [f for f in lint_rows(tmp_path, rows, objective=obj).findings if f.rule == "format.preference"]
    kto_rows = [{"prompt": "Q", "completion": f"a{i}", "label": i % 2 == 0} for i in range(6)]
    assert ("pref.unpaired", 1) in hits(lint_rows(tmp_path, kto_rows, objective="dpo"))
    assert "pref.unpaired" not in {r for r, _ in hits(lint_rows(tmp_path, kto_rows, objective="kto"))}


def test_identical_empty_mismatch_and_duplicate(tmp_path):
    rows = pairs(6)
    rows[1]["rejected"] = rows[1]["chosen"]                       # identical
    rows[2]["rejected"] = rows[2]["chosen"] + "!"                 # near miss: differs
    rows[3]["chosen"] = ""                                        # empty side
    rows[4] = {"chosen": [U("Q4"), A("a")], "rejected": [U("Q4 changed"), A("b")]}  # prompts differ
    rows.append(dict(rows[0]))                                    # duplicate of row 1 -> row 7
    rows.append({**rows[0], "rejected": "another rejected"})      # near miss: same prompt and chosen only
    report = lint_rows(tmp_path, rows, objective="dpo")
    h = hits(report)
    assert {("pref.identical", 2), ("content.empty", 4), ("pref.prompt_mismatch", 5), ("pref.duplicate", 7)} <= h, h
    assert ("pref.identical", 3) not in h and ("pref.duplicate", 8) not in h
    dup = next(f for f in report.findings if f.rule == "pref.duplicate")
    assert dup.related == [1]
    empty = next(f for f in report.findings if f.rule == "content.empty")
    assert empty.field == "chosen"
    assert report.exit_code == 1 and report.valid_rows == 6


def test_length_bias_is_reported_with_numbers(tmp_path):
    long = lambda i: f"Answer {i}: " + "a careful, complete explanation with detail " * 2  # noqa: E731
    short = lambda i: f"Answer {i}."  # noqa: E731
    biased = pairs(20, chosen=long, rejected=short)
    report = lint_rows(tmp_path, biased, objective="dpo")
    f = next(f for f in report.findings if f.rule == "pref.length_bias")
    assert "chosen is longer than rejected in 100% of 20 pairs" in f.message and "longer is better" in f.message
    assert "Park et al. 2024" in f.message
    assert report.stats["preference"]["chosen_longer_share"] == 1.0
    assert report.stats["preference"]["median_length_ratio"] > 3
    # near miss: chosen longer in 60 % of pairs only (below the 70 % threshold)
    mixed = [row if i < 12 else {**row, "chosen": row["rejected"][:-1] + "?", "rejected": row["chosen"]}
             for i, row in enumerate(biased)]
    assert "pref.length_bias" not in {r for r, _ in hits(lint_rows(tmp_path, mixed, objective="dpo"))}
    # near miss: always longer, but only by a little (ratio under 1.25x)
    slight = pairs(20, chosen=lambda i: f"Answer {i} is here, ok.", rejected=lambda i: f"Answer {i} is here.")
    assert "pref.length_bias" not in {r for r, _ in hits(lint_rows(tmp_path, slight, objective="dpo"))}


def test_kto_label_balance(tmp_path):
    def kto(good, bad):
        return ([{"prompt": f"Q{i}", "completion": "good", "label": True} for i in range(good)] +
                [{"prompt": f"R{i}", "completion": "bad", "label": False} for i in range(bad)])

    report = lint_rows(tmp_path, kto(30, 5), objective="kto")
    f = next(f for f in report.findings if f.rule == "pref.kto_balance")
    assert "30 desirable vs 5 undesirable" in f.message and "undesirable_weight about 6.0" in f.message
    assert report.stats["preference"] == {"kind": "unpaired", "rows": 35, "desirable": 30, "undesirable": 5}
    one_sided = lint_rows(tmp_path, kto(8, 0), objective="kto")
    assert any(f.rule == "pref.kto_balance" and "all 8 rows are desirable" in f.message for f in one_sided.findings)
    assert "pref.kto_balance" not in {r for r, _ in hits(lint_rows(tmp_path, kto(12, 10), objective="kto"))}


def test_sample_data_is_clean(tmp_path):
    """The shipped DPO sample set passes lint with no length bias (its property is style, not length)."""
    root = Path(__file__).resolve().parent.parent / "sample_data"
    for name in ("preference_train.jsonl", "preference_eval.jsonl"):
        report = lint_file(root / name, LintOptions(objective="dpo", as_eval=name.endswith("eval.jsonl")))
        assert report.exit_code == 0, [f.to_dict() for f in report.errors]
        assert not [f for f in report.findings if f.rule.startswith("pref.")], hits(report)
    kind, rows = load_preference_file(root / "preference_train.jsonl")
    assert kind == "pairs" and len(rows) >= 40


def test_pairs_are_token_counted_with_a_tokenizer(tmp_path, embedded_tokenizer):
    """With a tokenizer, each pair's longer side (prompt + answer) is counted as the trainer tokenises it."""
    long = "word " * 80
    rows = [{"prompt": "Q?", "chosen": "Short.", "rejected": "Brief."},
            {"prompt": "Q?", "chosen": "Short.", "rejected": long}]  # near miss above; this one's rejected is long
    report = lint_rows(tmp_path, rows, objective="dpo", tokenizer=embedded_tokenizer, max_length=64)
    over = [f for f in report.findings if f.rule == "length.over_max"]
    assert [f.row for f in over] == [2] and "the longer side of the pair" in over[0].message
    expected = len(embedded_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": long}], tokenize=True,
        return_dict=True)["input_ids"])
    assert report.stats["tokens"]["max"] == expected


def test_split_and_fix_keep_preference_rows(tmp_path):
    """`data split` and `data fix` treat valid pairs as valid (they used to call every pair invalid)."""
    from ftwizard.data.fix import fix_file, split_file

    rows = pairs(20)
    rows.append(dict(rows[0]))                                   # an exact duplicate pair
    rows.append({"prompt": "Q", "chosen": "a", "rejected": ""})  # a bad pair: empty side
    src = write(tmp_path / "prefs.jsonl", rows)
    rep = split_file(src, tmp_path / "out", eval_fraction=0.2, drop_invalid=True)
    assert rep.rows_out["train"] + rep.rows_out["eval"] == 21 and rep.rows_out["eval"] >= 3
    assert [d["row"] for d in rep.dropped] == [22] and "content.empty" in rep.dropped[0]["reason"]
    kind, train = load_preference_file(tmp_path / "out" / "prefs.train.jsonl")
    assert kind == "pairs"
    fixed = fix_file(src, tmp_path / "fixed.jsonl", dedup="exact", drop_invalid=True)
    assert fixed.rows_out["output"] == 20
    assert {d["row"] for d in fixed.dropped} == {21, 22}
    with pytest.raises(UserError):
        fix_file(src, tmp_path / "msgs.jsonl", to_messages=True)  # pairs cannot become SFT messages


def test_show_renders_both_sides_of_a_pair(tmp_path, embedded_tokenizer):
    from ftwizard.data.preview import preview_row

    src = write(tmp_path / "p.jsonl", [NORMAL, {"prompt": "Q", "completion": "a", "label": False},
                                       {"prompt": "Q", "chosen": "a", "rejected": ""}])
    pv = preview_row(src, 1, embedded_tokenizer)
    assert pv.fmt == "preference" and not pv.problems
    trained = lambda r: "".join(s.text for s in r.segments if s.trained)  # noqa: E731
    assert "Apple." in trained(pv.rendered) and "Carrot." in trained(pv.rejected)
    assert "Name a fruit." not in trained(pv.rendered)
    kto = preview_row(src, 2, embedded_tokenizer)
    assert kto.rejected is None and "undesirable" in kto.problems[0]
    bad = preview_row(src, 3, embedded_tokenizer)
    assert bad.rendered is None and bad.problems[0].startswith("content.empty")
