"""Duplicates and label imbalance: info when mild, a warning above the literature's thresholds,
an error when the run is doomed (docs/preflight-rules.md cites each). Trigger and near miss for each."""

from __future__ import annotations

import random

from ftwizard.preflight import ERROR, INFO, WARNING
from ftwizard.preflight.guardrails import DUP_ERROR, DUP_WARN, IMBALANCE_ERROR, IMBALANCE_WARN
from test_preflight_rules import check, rows_file, severity, sound_rows

WORDS = ("parcel late refund screen login billing cracked fast slow helpful rude kind broken missing charged twice "
         "battery cable driver courier invoice password account upgrade warranty colour size fabric shoe laptop "
         "printer router signal delivery box label receipt support agent chat hours weekend morning evening city "
         "train coffee music garden window kitchen door paint lamp chair table pillow blanket bottle").split()


def classifier_rows(counts: dict[str, int]) -> list[dict]:
    """Distinct, unrelated review texts (no near-duplicates) with the given label counts, interleaved."""
    rnd = random.Random(5)
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    rnd.shuffle(labels)
    rows = []
    for i, lab in enumerate(labels):
        text = " ".join(rnd.sample(WORDS, 9))
        rows.append({"messages": [{"role": "system", "content": "Label the review."},
                                  {"role": "user", "content": f"Review {i}: {text}."},
                                  {"role": "assistant", "content": lab}]})
    return rows


def dup_report(tmp_path, distinct: int, copies: int):
    base = sound_rows()[:distinct]
    rows = base + [base[i % distinct] for i in range(copies)]
    return check({"data": {"train": rows_file(tmp_path, "dups.jsonl", rows)}})


def test_duplicates_thresholds(tmp_path):
    assert DUP_WARN == 0.10 and abs(DUP_ERROR - 2 / 3) < 1e-9
    # 30 of 300 rows are copies: 10 % -> warning; 29 of 300 (9.7 %) -> info
    rep = dup_report(tmp_path, 270, 30)
    f = rep.by_rule("data.duplicates")[0]
    assert f.severity == WARNING and f.count == 30 and "10 %" in f.message and f.rows and "--dedup" in f.fix
    assert severity(dup_report(tmp_path, 271, 29), "data.duplicates") == INFO
    # 201 of 300 are copies (67 % > 2/3): doomed -> error, and the gate refuses; exactly 2/3 -> warning
    rep = dup_report(tmp_path, 99, 201)
    assert severity(rep, "data.duplicates") == ERROR and not rep.ok
    assert severity(dup_report(tmp_path, 100, 200), "data.duplicates") == WARNING
    # the lint's own duplicate lines are not repeated as info beside it
    assert not rep.by_rule("lint.dup.exact") and not rep.by_rule("lint.dup.near")
    # no copies, no finding
    assert severity(check(), "data.duplicates") is None


def imb(tmp_path, counts: dict[str, int]):
    path = rows_file(tmp_path, "labels.jsonl", classifier_rows(counts))
    return check({"data": {"train": path, "task_type": "classification"}})


def test_label_imbalance_thresholds(tmp_path):
    assert IMBALANCE_WARN == 0.80 and IMBALANCE_ERROR == 0.99
    # top class 80.5 % -> warning; exactly 80 % -> nothing (ratio 4 < 10)
    rep = imb(tmp_path, {"positive": 161, "negative": 39})
    f = rep.by_rule("data.imbalance")[0]
    assert f.severity == WARNING and "'positive' is 80 %" in f.message and f.count == 161
    assert severity(imb(tmp_path, {"positive": 160, "negative": 40}), "data.imbalance") is None
    # 99 % of 200 rows -> error (a classifier that is almost all one class); 98.5 % -> warning
    rep = imb(tmp_path, {"positive": 198, "negative": 2})
    assert severity(rep, "data.imbalance") == ERROR and not rep.ok
    assert severity(imb(tmp_path, {"positive": 197, "negative": 3}), "data.imbalance") == WARNING
    # 99 % of only 99 rows: too few rows to call it extreme -> warning
    assert severity(imb(tmp_path, {"positive": 98, "negative": 1}), "data.imbalance") == WARNING
    # mild: top 75 %, rarest 30x rarer -> info; balanced -> nothing
    assert severity(imb(tmp_path, {"a": 150, "b": 45, "c": 5}), "data.imbalance") == INFO
    assert severity(imb(tmp_path, {"a": 70, "b": 70, "c": 60}), "data.imbalance") is None
    assert not rep.by_rule("lint.labels.imbalance")


def test_json_field_labels_are_judged_too(tmp_path):
    import json

    rows = classifier_rows({"x": 200})
    for i, r in enumerate(rows):
        r["messages"][-1]["content"] = json.dumps({"urgency": "low" if i < 199 else "high", "id": i})
    rep = check({"data": {"train": rows_file(tmp_path, "j.jsonl", rows)}})
    f = rep.by_rule("data.imbalance")[0]
    assert f.severity == ERROR and "urgency" in f.message
