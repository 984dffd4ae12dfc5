"""Metric functions against hand-computed cases; probe checks; the comparison summary."""

from __future__ import annotations

import json
import math

import pytest

from ftwizard.evaluation import metrics as M
from ftwizard.evaluation.compare import build_summary, identical_share
from ftwizard.evaluation.probe import load_probe, passes, score_probe
from ftwizard.evaluation.report import diff_text, metrics_table, sample_view


def test_every_metric_has_a_one_line_description():
    for name, (desc, _) in M.METRICS.items():
        assert desc and "\n" not in desc, name
    for names in M.TASK_METRICS.values():
        assert all(n in M.METRICS for n in names)


def test_detect_task():
    assert M.detect_task(['{"a": 1}', '[1, 2]']) == "json"
    assert M.detect_task(["blue", "dark green", "Red."]) == "label"
    assert M.detect_task(["blue", "a much longer answer that is clearly a sentence"]) == "text"
    assert M.detect_task(['{"a": 1}', "blue"]) == "label"  # mixed: not all JSON, all short
    assert M.detect_task([]) == "text"


def test_exact_match_normalises_whitespace():
    assert M.exact_match(["a  b", "c", "d"], ["a b", "c ", "e"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.exact_match(["a"], ["a", "b"])


def test_json_metrics_hand_computed():
    refs = ['{"u": "high", "c": "billing", "s": "x"}'] * 3
    preds = [
        '{"u": "High", "c": "billing", "s": "y"}',  # 2 of 3 fields right (case-insensitive), same schema
        '{"u": "low", "c": "billing"}',            # 1 right, 2 written, schema differs (missing key)
        "not json at all",                         # nothing parsed
    ]
    m = M.json_metrics(preds, refs)
    assert m["json_parse_rate"] == pytest.approx(2 / 3)
    assert m["schema_match"] == pytest.approx(1 / 3)
    # TP = 2 + 1 = 3; predicted fields = 3 + 2 = 5; reference fields = 9
    assert m["field_precision"] == pytest.approx(3 / 5)
    assert m["field_recall"] == pytest.approx(3 / 9)
    p, r = 3 / 5, 3 / 9
    assert m["field_f1"] == pytest.approx(2 * p * r / (p + r))
    assert m["field_accuracy"] == {"c": pytest.approx(2 / 3), "s": 0.0, "u": pytest.approx(1 / 3)}


def test_json_nested_and_types():
    ref = '{"a": {"b": 1, "c": [1, 2]}, "d": true}'
    assert M.flatten(json.loads(ref)) == {"a.b": 1, "a.c.0": 1, "a.c.1": 2, "d": True}
    m = M.json_metrics(['{"a": {"b": 1.0, "c": [1, 3]}, "d": true}'], [ref])
    assert m["field_precision"] == pytest.approx(3 / 4) and m["schema_match"] == 1.0
    m = M.json_metrics(['{"a": {"b": "1", "c": [1, 2]}, "d": true}'], [ref])  # a string where a number goes
    assert m["schema_match"] == 0.0 and m["field_recall"] == pytest.approx(3 / 4)


def test_label_metrics_hand_computed():
    refs = ["cat", "cat", "dog", "bird"]
    preds = ["Cat.", "dog", "dog", "fish"]
    m = M.label_metrics(preds, refs)
    assert m["accuracy"] == pytest.approx(0.5)
    # cat: tp1 fp0 fn1 -> P1 R.5 F 2/3; dog: tp1 fp1 fn0 -> P.5 R1 F 2/3; bird: 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["confusion"] == {"bird": {"(other)": 1}, "cat": {"cat": 1, "dog": 1}, "dog": {"dog": 1}}


def test_text_metrics_against_libraries_and_bounds():
    refs = ["the cat sat on the mat", "hello world"]
    m = M.text_metrics(refs, refs)
    assert m["rouge_l"] == pytest.approx(1.0) and m["chrf"] == pytest.approx(100.0) and m["bleu"] == pytest.approx(100.0)
    m = M.text_metrics(["the cat sat", "goodbye"], refs)
    # LCS("the cat sat", "the cat sat on the mat") = 3: P 1, R 3/6 -> F 2/3; second pair 0
    assert m["rouge_l"] == pytest.approx((2 / 3 + 0) / 2)
    assert 0 < m["chrf"] < 100 and 0 <= m["bleu"] < 100


def test_perplexity_and_score_dispatch():
    assert M.perplexity(math.log(4)) == pytest.approx(4.0)
    assert M.perplexity(None) is None and M.perplexity(float("nan")) is None
    s = M.score("label", ["a"], ["a"])
    assert s["exact_match"] == 1.0 and s["accuracy"] == 1.0
    assert M.sample_correct("json", '{"a": "X"}', '{"a": "x"}') and not M.sample_correct("json", "{", '{"a": 1}')


def test_probe_ships_and_checks_work():
    items = load_probe()
    assert 30 <= len(items) <= 60
    assert {"arithmetic", "capitals", "facts", "format", "helpful"} <= {it["category"] for it in items}
    by_id = {it["id"]: it for it in items}
    assert passes(by_id["arithmetic-2"], "7 times 8 is 56.") and not passes(by_id["arithmetic-2"], "It is 54")
    assert passes(by_id["capitals-1"], "The capital of France is Paris.")
    json_item = next(it for it in items if any("json_keys" in c for c in it["checks"]))
    assert passes(json_item, '{"name": "Ada"}') and not passes(json_item, "name: Ada")
    helpful = next(it for it in items if it["category"] == "helpful")
    assert not passes(helpful, "I'm sorry, I can't help with boiling water.")
    res = score_probe(items[:2], ["5", "no idea"])
    assert res["probe_score"] == 0.5 and res["passed"] == [items[0]["id"]]


def _result(tmp_path, mid, kind, step, outputs, refs, task="label", probe=0.5, loss=1.0):
    scores = M.score(task, outputs, refs)
    metrics = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    metrics.update(eval_loss=loss, perplexity=M.perplexity(loss), probe_score=probe)
    res = {"id": mid, "label": mid, "kind": kind, "step": step, "task": task, "metrics": metrics, "details": {},
           "samples": [{"row": i + 1, "input": f"q{i}", "reference": r, "output": o,
                        "correct": M.sample_correct(task, o, r)} for i, (o, r) in enumerate(zip(outputs, refs))]}
    (tmp_path / f"{mid}.json").write_text(json.dumps(res))


def test_summary_marks_best_checkpoint_and_warns(tmp_path):
    refs = ["red", "blue", "green", "white"]
    _result(tmp_path, "base", "base", 0, ["x", "y", "z", "w"], refs, probe=0.8, loss=3.0)
    _result(tmp_path, "checkpoint-2", "adapter", 2, ["red", "blue", "green", "w"], refs, probe=0.75, loss=0.5)
    _result(tmp_path, "final", "adapter", 4, ["red", "blue", "z", "w"], refs, probe=0.5, loss=0.4)
    s = build_summary(tmp_path, ["base", "checkpoint-2", "final", "checkpoint-6"])
    assert [m["id"] for m in s["models"]] == ["base", "checkpoint-2", "final"]
    assert s["task"] == "label" and s["primary_metric"] == "macro_f1"
    assert s["best_checkpoint"] == "checkpoint-2"  # the best is not the last
    assert s["leader"]["eval_loss"] == "final" and s["leader"]["probe_score"] == "base"
    # results written before per-row values existed: no interval, so no star and no claim either way
    assert s["best"]["eval_loss"] is None and s["verdict"]["status"] == "inconclusive"
    assert s["verdict"]["beats_baseline"] is False and "no per-row values" in s["verdict"]["text"]
    assert any("final forgot general skills" in w for w in s["warnings"])
    assert not any("checkpoint-2 forgot" in w for w in s["warnings"])  # a 5-point drop is under the threshold
    assert s["missing"] == ["checkpoint-6"]
    assert s["samples"][3] == {"row": 4, "input": "q3", "reference": "white", "base": "w", "base_correct": False,
                               "tuned": "w", "tuned_correct": False}
    assert "checkpoint-2" in _render(metrics_table(s)) and "best" in _render(metrics_table(s))
    assert "reference" in _render(sample_view(s, 0))


def test_summary_calls_out_unchanged_training(tmp_path):
    refs = ["red", "blue"]
    _result(tmp_path, "base", "base", 0, ["red", "x"], refs)
    _result(tmp_path, "final", "adapter", 4, ["red", "x"], refs)
    s = build_summary(tmp_path)
    assert s["verdict"]["identical_outputs"] == 1.0
    assert any("training changed almost nothing" in w for w in s["warnings"])
    assert identical_share(None, None) is None


def test_diff_highlights_only_changed_words():
    t = diff_text("the cat sat", "the dog sat")
    assert t.plain == "the dog sat"
    styled = [t.plain[s.start:s.end] for s in t.spans if "red" in str(s.style)]
    assert styled == ["dog"]


def _render(renderable) -> str:
    from rich.console import Console

    c = Console(width=160, record=True, file=open("/dev/null", "w"))
    c.print(renderable)
    return c.export_text()
