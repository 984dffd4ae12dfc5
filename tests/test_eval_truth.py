"""The verdicts that were wrong in issue 18, each rebuilt from given texts and checked against the truth:
a math set where ROUGE rises while the final answers get worse; an inconclusive margin; a probe gain inside the
noise; looping outputs; a JSON task scored per field; custom scorers and --metric."""

from __future__ import annotations

import json

import pytest

from ftwizard.errors import UserError
from ftwizard.evaluation import metrics as M
from ftwizard.evaluation import stats
from ftwizard.evaluation.compare import build_summary
from ftwizard.evaluation.report import legend, metrics_table, sample_view, verdict_text


def write_result(folder, mid, kind, outputs, refs, *, task=None, step=0, few_shot=0, stopped=None, probe=None,
                 loss_rows=None):
    """A result file as the eval worker writes it, scored by the real metric code."""
    task = task or M.detect_task(refs)
    sc = M.score_rows(task, outputs, refs, stopped=stopped if stopped is not None else [True] * len(outputs))
    metrics = dict(sc.metrics)
    rows = dict(sc.rows)
    loss_rows = loss_rows or [[1.0, 1]] * len(refs)
    metrics["eval_loss"] = sum(x[0] for x in loss_rows) / sum(x[1] for x in loss_rows)
    metrics["perplexity"] = M.perplexity(metrics["eval_loss"])
    rows["loss"] = loss_rows
    if probe is not None:
        metrics["probe_score"] = sum(probe) / len(probe)
        rows["probe"] = [float(x) for x in probe]
    label = f"base {few_shot}-shot" if few_shot else ("base" if kind == "base" else f"step {step}" if mid != "final"
                                                       else "final")
    res = {"id": mid, "label": label, "kind": kind, "step": step, "few_shot": few_shot, "task": task,
           "metrics": metrics, "details": sc.details, "rows": rows,
           "samples": [{"row": i + 1, "input": f"q{i}", "reference": r, "output": o,
                        "correct": M.sample_correct(task, o, r)} for i, (o, r) in enumerate(zip(outputs, refs))]}
    (folder / f"{mid}.json").write_text(json.dumps(res))


def render(renderable, width=80) -> str:
    from rich.console import Console

    c = Console(width=width, record=True, file=open("/dev/null", "w"))
    c.print(renderable)
    return c.export_text()


# ---- math: the verdict follows final-answer accuracy, not ROUGE ---------------------
def _worked(a, b, name="Tom"):
    return f"{name} buys {a} packs of {b} pencils, so {name} has {a} * {b} = {a * b} pencils.\n#### {a * b}"


def test_math_verdict_follows_answers_when_rouge_rises(tmp_path):
    pairs = [(a, b) for a in range(2, 8) for b in range(3, 8)][:30]
    refs = [_worked(a, b) for a, b in pairs]
    # base: short answers, right number in 12 of 30 rows, little word overlap with the worked references
    base = [f"It is {a * b}." if i < 12 else f"It is {a * b + 1}." for i, (a, b) in enumerate(pairs)]
    # tuned: copies the reference wording (ROUGE-L up) but every final number is off by one
    tuned = [_worked(a, b).replace(f"= {a * b}", f"= {a * b + 1}").replace(f"#### {a * b}", f"#### {a * b + 1}")
             for a, b in pairs]
    assert M.detect_task(refs) == "math"
    write_result(tmp_path, "base", "base", base, refs)
    write_result(tmp_path, "final", "adapter", tuned, refs, step=16)
    s = build_summary(tmp_path)
    by = {m["id"]: m["metrics"] for m in s["models"]}
    assert s["primary_metric"] == "answer_accuracy"
    assert by["final"]["rouge_l"] > by["base"]["rouge_l"] + 0.3       # ROUGE rises...
    assert by["final"]["answer_accuracy"] == 0 and by["base"]["answer_accuracy"] == pytest.approx(0.4)
    v = s["verdict"]
    assert v["status"] == "worse" and v["beats_baseline"] is False   # ...and the verdict follows the answers
    assert v["high"] < 0 and v["margin"] == pytest.approx(-0.4)
    assert "answer 0% vs base 40%" in v["text"] and "do not ship" in v["text"]
    assert s["best"]["answer_accuracy"] == "base" and s["best"]["rouge_l"] == "final"
    text = render(verdict_text(s))
    assert "-40 pts (95% CI" in text
    (tmp_path / "judge.json").write_text(json.dumps({"text": "judge (pairwise): final wins 3, base 20, ties 7"}))
    s = build_summary(tmp_path)
    assert [m["id"] for m in s["models"]] == ["base", "final"]  # judge.json is not a model
    assert "judge (pairwise): final wins 3" in render(verdict_text(s), 200)


def test_final_answer_extraction():
    assert M.final_answer("3 * 4 = 12 pencils.\n#### 12") == "12"
    assert M.final_answer("so the total is $1,250.00") == "1250"
    assert M.final_answer("We get \\boxed{42} at the end, not 7") == "42"
    assert M.final_answer("The answer is 9. Check: 4 + 5 = 9, then 10") == "9"
    assert M.final_answer("no number here") is None
    assert M.detect_task(["12", "7", "-3.5"]) == "math"                  # bare numbers
    assert M.detect_task(["First 3 + 4 = 7, so she has 7", "Then 2 * 5 = 10 apples, 10"]) == "math"  # trailing
    assert M.detect_task(["blue", "green"], task_type="math") == "math"   # config says so
    assert M.detect_task(["blue", "green", "red"]) == "label"
    assert M.sample_correct("math", "it is 12", "4 * 3 = 12\n#### 12")


# ---- uncertainty ---------------------------------------------------------------------
def test_inconclusive_margin_is_reported_as_inconclusive(tmp_path):
    refs = [f"label{i % 3}" for i in range(20)]
    base = [r if i % 2 == 0 else "other" for i, r in enumerate(refs)]          # 10/20 right
    tuned = [r if (i % 2 == 0 and i) or i in (1, 3, 5) else "wrong" for i, r in enumerate(refs)]  # 12/20 right
    write_result(tmp_path, "base", "base", base, refs)
    write_result(tmp_path, "final", "adapter", tuned, refs, step=4)
    s = build_summary(tmp_path, primary="accuracy")
    v = s["verdict"]
    assert v["status"] == "inconclusive" and v["beats_baseline"] is False
    assert v["low"] < 0 < v["high"] and v["margin"] == pytest.approx(0.1)
    assert "inconclusive: evaluate more rows (about" in v["text"]
    assert "ship" not in v["text"]
    assert v["rows_to_settle"] > 20
    assert s["best"]["accuracy"] is None and s["leader"]["accuracy"] == "final"  # no star inside the noise
    rows = [ln for ln in render(metrics_table(s)).splitlines() if ln.strip().startswith(("base", "final"))]
    assert rows and not any("*" in ln for ln in rows)


def test_rows_to_settle_follows_the_interval():
    a = [1.0] * 12 + [0.0] * 8
    b = [1.0] * 10 + [0.0] * 10
    iv = stats.paired_mean(a, b)
    assert iv.includes_zero
    need = iv.rows_to_settle()
    # with ~need rows the same per-row differences give an interval that excludes zero
    k = -(-need // len(a))
    assert not stats.paired_mean(a * k, b * k).includes_zero
    assert stats.paired_mean([1.0, 0.0], [1.0, 0.0]).rows_to_settle() is None  # no difference to find


def test_probe_gain_inside_the_noise_gets_no_star(tmp_path):
    refs = ["red", "blue"] * 10
    base_probe = [1] * 21 + [0] * 17   # 55 % of 38
    tuned_probe = [0] * 6 + [1] * 25 + [0] * 7  # 66 %: 10 prompts gained, 6 lost
    write_result(tmp_path, "base", "base", ["x"] * 20, refs, probe=base_probe)
    write_result(tmp_path, "final", "adapter", refs, refs, step=8, probe=tuned_probe)
    s = build_summary(tmp_path)
    assert s["leader"]["probe_score"] == "final" and s["best"]["probe_score"] is None
    assert s["probe"]["status"] == "inconclusive" and s["probe"]["low"] < 0 < s["probe"]["high"]
    assert "inside the noise" in render(verdict_text(s), 200)
    assert s["best"]["accuracy"] == "final" and s["verdict"]["status"] == "better"  # 100 % vs 0 % is real


def test_verdict_never_contradicts_the_table(tmp_path):
    """Issue 18's role-play case: 0.171 vs 0.151 ROUGE-L was called 'does not beat base'."""
    refs = [f"I lean on the bar and say the {w} is lovely tonight, friend" for w in
            ["moon", "sea", "wind", "rain", "fire", "road", "song", "bread", "wine", "star"] * 2]
    base = [f"The {w} is nice." for w in ["moon", "sea", "wind", "rain", "fire", "road", "song", "bread", "wine",
                                          "star"] * 2]
    tuned = [b if i % 4 else f"I say the {b.split()[1]} is nice." for i, b in enumerate(base)]
    write_result(tmp_path, "base", "base", base, refs)
    write_result(tmp_path, "final", "adapter", tuned, refs, step=8)
    s = build_summary(tmp_path)
    v = s["verdict"]
    by = {m["id"]: m["metrics"]["rouge_l"] for m in s["models"]}
    assert by["final"] > by["base"]
    assert v["margin"] > 0 and "does not beat" not in v["text"]
    if v["status"] == "inconclusive":
        assert "inconclusive" in v["text"] and "ship" not in v["text"]
    else:
        assert v["status"] == "better"


# ---- behaviour -------------------------------------------------------------------------
def test_looping_outputs_show_in_the_behaviour_columns(tmp_path):
    refs = [_worked(a, 3) for a in range(2, 12)]
    loop = "So she has 12 pencils and then she has 12 pencils and then she has 12 pencils and then she has 12"
    tuned = [loop] * 6 + refs[6:]
    write_result(tmp_path, "base", "base", refs, refs, stopped=[True] * 10)
    write_result(tmp_path, "final", "adapter", tuned, refs, step=4, stopped=[False] * 6 + [True] * 4)
    s = build_summary(tmp_path)
    by = {m["id"]: m["metrics"] for m in s["models"]}
    assert by["final"]["loop_rate"] == pytest.approx(0.6) and by["base"]["loop_rate"] == 0
    assert by["final"]["stop_rate"] == pytest.approx(0.4) and by["base"]["stop_rate"] == 1.0
    assert by["base"]["length_ratio"] == pytest.approx(1.0)
    assert any("repeats itself in 6 of 10" in w for w in s["warnings"])
    assert any("ran to the token limit in 6 of 10" in w for w in s["warnings"])
    table = render(metrics_table(s))
    assert "loops" in table and "stops" in table and "len/ref" in table and "60%" in table
    assert not M.loops(refs[0]) and M.loops("na " * 40) and M.loops("!" * 200)


# ---- JSON per field, k-shot row, widths -------------------------------------------------
def _ticket(summary, urgency, category):
    return json.dumps({"summary": summary, "urgency": urgency, "category": category})


def test_json_scored_per_field_with_kshot_row_at_80_columns(tmp_path):
    words = ["printer", "invoice", "login", "parcel", "refund", "password", "screen", "order"]
    refs = [_ticket(f"Customer reports a broken {w} since Monday", ["low", "high"][i % 2],
                    ["billing", "technical"][i % 2]) for i, w in enumerate(words * 2)]
    base = ["Sure! Here is the JSON you asked for."] * 16
    kshot = [_ticket(f"broken {w}", "low", "billing") for w in words * 2]
    tuned = [_ticket(f"Customer reports a broken {w}", ["low", "high"][i % 2], ["billing", "technical"][i % 2])
             for i, w in enumerate(words * 2)]
    write_result(tmp_path, "base", "base", base, refs, probe=[1, 0, 1, 1])
    write_result(tmp_path, "base-3shot", "base", kshot, refs, few_shot=3)
    write_result(tmp_path, "final", "adapter", tuned, refs, step=50, probe=[1, 0, 1, 0])
    s = build_summary(tmp_path)
    assert s["task"] == "json" and s["primary_metric"] == "field_score"
    assert s["headline_rule"] == "fields = mean of summary rouge_l, urgency accuracy, category accuracy"
    assert [m["name"] for m in s["field_metrics"]] == ["field:category", "field:summary", "field:urgency"]
    by = {m["id"]: m["metrics"] for m in s["models"]}
    assert by["final"]["field:urgency"] == 1.0 and 0.5 < by["final"]["field:summary"] < 1.0
    assert by["base-3shot"]["field:urgency"] == 0.5 and by["base"]["field_score"] == 0
    assert by["base-3shot"]["probe_score"] == 0.75  # the base's probe: same weights, not re-run
    assert s["verdict"]["baseline"] == "base-3shot" and s["verdict"]["status"] == "better"
    assert s["samples"][0]["kshot_label"] == "base 3-shot" and s["samples"][0]["kshot"] == kshot[0]
    out = render(metrics_table(s))
    for head in ("fields", "JSON", "schema", "summary RL", "urgency acc", "category acc", "stops", "probe"):
        assert head in out, head
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "headline: fields = mean of" in out
    assert "base 3-shot" in render(sample_view(s, 0))
    assert "never starred" in render(legend(s), 200)


def test_metric_option_changes_the_primary(tmp_path):
    refs = ["red", "blue", "green", "white"] * 5
    write_result(tmp_path, "base", "base", ["x"] * 20, refs)
    write_result(tmp_path, "final", "adapter", refs, refs, step=2)
    s = build_summary(tmp_path, primary="exact_match")
    assert s["primary_metric"] == "exact_match" and s["metrics"][0]["name"] == "exact_match"
    assert s["verdict"]["metric"] == "exact_match"
    assert build_summary(tmp_path, primary="no_such_metric")["primary_metric"] == "macro_f1"


# ---- custom scorer -------------------------------------------------------------------------
def test_custom_scorer_is_validated_and_used(tmp_path):
    (tmp_path / "my_scores.py").write_text(
        "def starts(prediction, reference):\n    return prediction[:1] == reference[:1]\n"
        "def broken(prediction, reference):\n    return 5\n")
    fn = M.load_scorer("my_scores:starts", str(tmp_path))
    sc = M.score_rows("text", ["apple pie", "zebra"], ["a long answer", "another"], scorer=fn, scorer_name="starts")
    assert sc.metrics["custom:starts"] == 0.5 and sc.rows["custom:starts"] == [1.0, 0.0]
    for bad, msg in (("my_scores", "not 'module:function'"), ("nope_mod:fn", "cannot import"),
                     ("my_scores:missing", "no function"), ("my_scores:broken", "returned 5")):
        with pytest.raises(UserError, match=msg):
            M.load_scorer(bad, str(tmp_path))


# ---- model card -------------------------------------------------------------------------
def test_card_reports_verdict_fields_and_epochs_covered(tmp_path):
    from ftwizard.export.card import epochs_covered, eval_table
    from ftwizard.rundir import EventWriter, RunDir

    test_json_scored_per_field_with_kshot_row_at_80_columns(tmp_path)  # writes the results
    from ftwizard.evaluation.compare import write_summary

    write_summary(tmp_path, build_summary(tmp_path))
    t = eval_table(tmp_path)
    assert "| base 3-shot |" in t and "field:summary" in t and "stop_rate" in t
    assert "Headline: fields = mean of summary rouge_l" in t
    assert "Verdict: final fields" in t and "95% CI" in t and "fine-tuning beats base 3-shot" in t
    run_dir = tmp_path / "run"
    w = EventWriter(run_dir / "events.jsonl")
    for step in range(1, 17):  # a 16-step pilot over 320 rows at 8 rows a step
        w.write("train", step=step, epoch=step * 8 / 320, loss=1.0)
    w.close()
    assert epochs_covered(RunDir(run_dir), None) == 0.4


def test_lint_as_eval_has_no_too_few_warning(tmp_path, capsys):
    import sys
    from pathlib import Path

    from ftwizard.cli import main

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from math_data import write

    _, held = write(tmp_path, n_train=10, n_eval=60)
    capsys.readouterr()
    assert main(["lint", str(held), "--no-tokens", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert "data.too_few" in rep["counts"]  # as training data, 60 rows is too few...
    assert main(["lint", str(held), "--as-eval", "--no-tokens", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert "data.too_few" not in rep["counts"] and not rep["warnings"]  # ...as a held-out set it is not
    size = next(f for f in rep["infos"] if f["rule"] == "eval.size")
    assert "60 held-out rows" in size["message"] and "about 14 points" in size["message"]
