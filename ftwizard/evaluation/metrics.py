"""Metric functions over (prediction, reference) strings, and the choice of which apply.

Pure Python (plus rouge-score and sacrebleu, imported when used), so the CLI, the
wizard and the tests can score outputs without torch. The kind of task is read from
the references themselves: JSON objects get JSON metrics, short answers get label
metrics, anything else text-overlap metrics (guidance, "Evaluation"). Exact match and
the teacher-forced eval loss / perplexity apply to every task.

Label metrics (accuracy, macro-F1, confusion) are a few lines by hand rather than
scikit-learn, which is not a dependency and would only be used here.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Iterable

# name -> (one-line description, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "eval_loss": ("mean cross-entropy on the reference answers' tokens (teacher-forced, same mask as training)", False),
    "perplexity": ("exp(eval_loss): how surprised the model is by the reference answers", False),
    "exact_match": ("share of outputs identical to the reference (whitespace-normalised)", True),
    "json_parse_rate": ("share of outputs that parse as JSON", True),
    "schema_match": ("share of outputs that are JSON with exactly the reference's keys and value types", True),
    "field_precision": ("of the fields the model wrote, the share whose value equals the reference's", True),
    "field_recall": ("of the reference's fields, the share the model got right", True),
    "field_f1": ("harmonic mean of field precision and recall (micro-averaged over all fields)", True),
    "accuracy": ("share of outputs whose label equals the reference label", True),
    "macro_f1": ("F1 per reference label, averaged with equal weight (rare labels count as much as common ones)", True),
    "rouge_l": ("ROUGE-L F1: longest common word subsequence with the reference (rouge-score)", True),
    "chrf": ("chrF: character n-gram F-score against the reference, 0-100 (sacrebleu)", True),
    "bleu": ("BLEU: word n-gram precision with a brevity penalty, 0-100 (sacrebleu)", True),
    "probe_score": ("share of the general-knowledge regression probe passed (catches forgetting)", True),
}

PRIMARY = {"json": "field_f1", "label": "macro_f1", "text": "rouge_l"}
TASK_METRICS = {
    "json": ["json_parse_rate", "schema_match", "field_precision", "field_recall", "field_f1"],
    "label": ["accuracy", "macro_f1"],
    "text": ["rouge_l", "chrf", "bleu"],
}
LABEL_MAX_WORDS = 3
LABEL_MAX_CHARS = 40


def describe(name: str) -> str:
    return METRICS.get(name, ("", True))[0]


def higher_is_better(name: str) -> bool:
    return METRICS.get(name, ("", True))[1]


# ---- choosing the task --------------------------------------------------------
def parse_json(text: str) -> tuple[bool, Any]:
    """(parsed?, value). Strict: the whole output, stripped, must be JSON."""
    try:
        return True, json.loads(text.strip())
    except (ValueError, TypeError):
        return False, None


def detect_task(references: Iterable[str]) -> str:
    """'json' if every reference is a JSON object or array, 'label' if all are short answers, else 'text'."""
    refs = list(references)
    if not refs:
        return "text"
    if all(parse_json(r)[0] and isinstance(parse_json(r)[1], (dict, list)) for r in refs):
        return "json"
    if all(len(r.split()) <= LABEL_MAX_WORDS and len(r.strip()) <= LABEL_MAX_CHARS for r in refs):
        return "label"
    return "text"


# ---- exact match -----------------------------------------------------------------
def normalise(text: str) -> str:
    return " ".join(text.split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    _same_length(predictions, references)
    if not references:
        return 0.0
    return sum(normalise(p) == normalise(r) for p, r in zip(predictions, references)) / len(references)


# ---- JSON ------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf fields as dotted paths: {"a": {"b": 1}, "c": [2]} -> {"a.b": 1, "c.0": 2}."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out if out or not prefix else {prefix[:-1]: []}
    return {prefix[:-1] if prefix else "": value}


def _norm_value(v: Any) -> Any:
    if isinstance(v, str):
        return " ".join(v.lower().split())
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _shape(value: Any) -> Any:
    """Keys and value types, recursively: what 'same schema' compares."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def json_metrics(predictions: list[str], references: list[str]) -> dict[str, Any]:
    _same_length(predictions, references)
    n = len(references)
    parsed = tp = n_pred = n_ref = schema = 0
    per_field: dict[str, list[int]] = {}  # field -> [right, total in reference]
    for pred, ref in zip(predictions, references):
        ok_r, ref_v = parse_json(ref)
        if not ok_r:
            raise ValueError(f"reference is not JSON: {ref[:80]!r}")
        ok_p, pred_v = parse_json(pred)
        parsed += ok_p
        ref_f = {k: _norm_value(v) for k, v in flatten(ref_v).items()}
        pred_f = {k: _norm_value(v) for k, v in flatten(pred_v).items()} if ok_p else {}
        if ok_p and _shape(pred_v) == _shape(ref_v):
            schema += 1
        hits = {k for k, v in ref_f.items() if k in pred_f and pred_f[k] == v}
        tp += len(hits)
        n_pred += len(pred_f)
        n_ref += len(ref_f)
        for k in ref_f:
            cell = per_field.setdefault(k, [0, 0])
            cell[0] += k in hits
            cell[1] += 1
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_ref if n_ref else 0.0
    return {
        "json_parse_rate": parsed / n if n else 0.0,
        "schema_match": schema / n if n else 0.0,
        "field_precision": p,
        "field_recall": r,
        "field_f1": 2 * p * r / (p + r) if p + r else 0.0,
        "field_accuracy": {k: right / total for k, (right, total) in sorted(per_field.items())},
    }


# ---- labels ----------------------------------------------------------------------
def normalise_label(text: str) -> str:
    return re.sub(r"[\s.!,;:]+$", "", " ".join(text.strip().lower().split())).strip("\"'`")


def label_metrics(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the reference labels, and the confusion counts (reference -> predicted)."""
    _same_length(predictions, references)
    preds = [normalise_label(p) for p in predictions]
    refs = [normalise_label(r) for r in references]
    labels = sorted(set(refs))
    confusion: dict[str, Counter] = {lab: Counter() for lab in labels}
    for p, r in zip(preds, refs):
        confusion[r][p if p in confusion else "(other)"] += 1
    f1s = []
    for lab in labels:
        tp = sum(1 for p, r in zip(preds, refs) if p == lab and r == lab)
        fp = sum(1 for p, r in zip(preds, refs) if p == lab and r != lab)
        fn = sum(1 for p, r in zip(preds, refs) if p != lab and r == lab)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {
        "accuracy": sum(p == r for p, r in zip(preds, refs)) / len(refs) if refs else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "confusion": {lab: dict(confusion[lab]) for lab in labels},
    }


# ---- free text ---------------------------------------------------------------------
def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    _same_length(predictions, references)
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {
        "rouge_l": sum(rouge) / len(rouge) if rouge else 0.0,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
    }


# ---- loss ------------------------------------------------------------------------
def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 50.0))


def score(task: str, predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Every metric that applies to `task`, plus exact match."""
    out: dict[str, Any] = {"exact_match": exact_match(predictions, references)}
    if task == "json":
        out.update(json_metrics(predictions, references))
    elif task == "label":
        out.update(label_metrics(predictions, references))
    else:
        out.update(text_metrics(predictions, references))
    return out


def sample_correct(task: str, prediction: str, reference: str) -> bool:
    """Whether one output counts as right, for marking samples."""
    if task == "label":
        return normalise_label(prediction) == normalise_label(reference)
    if task == "json":
        ok, pv = parse_json(prediction)
        _, rv = parse_json(reference)
        return ok and {k: _norm_value(v) for k, v in flatten(pv).items()} == \
            {k: _norm_value(v) for k, v in flatten(rv).items()}
    return normalise(prediction) == normalise(reference)


def _same_length(predictions: list, references: list) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
