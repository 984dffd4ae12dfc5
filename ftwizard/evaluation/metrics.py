"""Metric functions over (prediction, reference) strings, and the choice of which apply.

Pure Python (plus rouge-score and sacrebleu, imported when used), so the CLI, the
wizard and the tests can score outputs without torch. The kind of task comes from the
config's `data.task_type` when it says so (math), else from the references themselves:

- math: references end in a final number (`#### 42`, `\\boxed{42}`, or a trailing number
  after worked steps): final-answer accuracy is primary, because text overlap rewards
  copying the reference's wording while getting the number wrong;
- json: every reference is a JSON object: one metric per field, chosen from the field's
  values (accuracy for few-valued fields, ROUGE-L for free text, exact match for ids and
  numbers); the headline is their mean;
- label: short answers from a small set: accuracy and macro-F1;
- text: anything else: ROUGE-L (primary) and chrF.

Every metric a table shows as a mean over rows also has its per-row values
(`score(...).rows`), which the comparison resamples for paired bootstrap intervals.
Behaviour (stop rate, looping, length against the reference) applies to every task.

Label metrics (accuracy, macro-F1, confusion) are a few lines by hand rather than
scikit-learn, which is not a dependency and would only be used here. The loop detector
is hand-written too (a duplicate-n-gram share; no library does just that).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

# name -> (one-line description, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "eval_loss": ("mean cross-entropy on the reference answers' tokens (teacher-forced, same mask as training)", False),
    "perplexity": ("exp(eval_loss): how surprised the model is by the reference answers", False),
    "exact_match": ("share of outputs identical to the reference (whitespace-normalised)", True),
    "answer_accuracy": ("share of outputs whose final number equals the reference's (#### N, \\boxed{N}, "
                        "'the answer is N', else the last number)", True),
    "answer_marked": ("share of outputs that state the final answer the way the references do (e.g. '#### N')", True),
    "json_parse_rate": ("share of outputs that parse as JSON", True),
    "schema_match": ("share of outputs that are JSON with exactly the reference's keys and value types", True),
    "field_score": ("headline for JSON: the mean of the per-field scores (each field scored by its kind; "
                    "0 when the output is not JSON or lacks the field)", True),
    "field_precision": ("of the fields the model wrote, the share whose value equals the reference's", True),
    "field_recall": ("of the reference's fields, the share the model got right", True),
    "field_f1": ("harmonic mean of field precision and recall (exact values, micro-averaged over all fields)", True),
    "accuracy": ("share of outputs whose label equals the reference label", True),
    "macro_f1": ("F1 per reference label, averaged with equal weight (rare labels count as much as common ones)", True),
    "rouge_l": ("ROUGE-L F1: longest common word subsequence with the reference, per row, averaged (rouge-score)", True),
    "chrf": ("chrF: character n-gram F-score against the reference, 0-100 (sacrebleu, corpus-level)", True),
    "bleu": ("BLEU: word n-gram precision with a brevity penalty, 0-100 (sacrebleu, corpus-level)", True),
    "probe_score": ("share of the general-knowledge regression probe passed (catches forgetting)", True),
    "stop_rate": ("share of outputs that ended their turn (end-of-turn token) before the token limit", True),
    "loop_rate": ("share of outputs that repeat themselves (half or more of their word 4-grams are repeats)", False),
    "length_ratio": ("median output length / reference length, in words (1.0 = as long as the reference)", False),
    # held-out tool-calling rows (ftwizard.evaluation.toolcalls, h14c)
    "tool_name_accuracy": ("of the rows that should call a tool, the share whose output calls the same tool(s)", True),
    "tool_args_exact": ("of the rows that should call a tool, the share whose calls match name and arguments "
                        "(parsed JSON equal)", True),
    "tool_json_valid": ("of the rows that should call a tool, the share whose output holds a call that parses as JSON", True),
    "tool_no_call_accuracy": ("of the rows that should answer plainly, the share whose output makes no tool call", True),
    # held-out preference pairs (ftwizard.evaluation.preference, h14b)
    "pref_accuracy": ("share of held-out pairs where the model gives the chosen answer a higher log-probability than "
                      "the rejected one", True),
    "pref_accuracy_norm": ("the same per token (length-normalised log-probabilities): not swayed by answer length",
                           True),
    "reward_margin": ("DPO implicit reward margin against the base: beta x [(logp(chosen) - base) - (logp(rejected) - "
                      "base)], mean over pairs; 0 for the base", True),
}

TASKS = ("math", "json", "label", "text")
PRIMARY = {"math": "answer_accuracy", "json": "field_score", "label": "macro_f1", "text": "rouge_l",
           "preference": "pref_accuracy"}
TASK_METRICS = {
    "math": ["answer_accuracy", "answer_marked", "rouge_l"],
    "json": ["field_score", "json_parse_rate", "schema_match", "field_f1"],
    "label": ["accuracy", "macro_f1"],
    "text": ["rouge_l", "chrf"],
    "preference": ["pref_accuracy", "pref_accuracy_norm", "reward_margin", "rouge_l", "chrf"],
}
BEHAVIOUR = ["stop_rate", "loop_rate", "length_ratio"]
# tool-calling rows (ftwizard.evaluation.toolcalls); columns only when the eval file has them
TOOL_METRICS = ["tool_name_accuracy", "tool_args_exact", "tool_json_valid", "tool_no_call_accuracy"]
LABEL_MAX_WORDS = 3
LABEL_MAX_CHARS = 40
LABEL_MAX_CLASSES = 20      # more distinct short answers than this is not "a small set of labels"
FINAL_ANSWER_SHARE = 0.9    # this share of references with a final number makes a math task
LOOP_NGRAM = 4
LOOP_SHARE = 0.5
LOOP_MIN_WORDS = 16


def describe(name: str) -> str:
    if name.startswith("field:"):
        return f"field {name[6:]}"
    if name.startswith("custom:"):
        return f"your scorer {name[7:]} (mean of its per-row scores)"
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


def detect_task(references: Iterable[str], task_type: str | None = None) -> str:
    """math, json, label or text (see the module docstring); `task_type` 'math' forces math."""
    refs = list(references)
    if task_type == "math":
        return "math"
    if not refs:
        return "text"
    if all(parse_json(r)[0] and isinstance(parse_json(r)[1], (dict, list)) for r in refs):
        return "json"
    if _looks_like_math(refs):
        return "math"
    if all(len(r.split()) <= LABEL_MAX_WORDS and len(r.strip()) <= LABEL_MAX_CHARS for r in refs):
        if len({normalise_label(r) for r in refs}) <= max(LABEL_MAX_CLASSES, len(refs) // 5) or \
                task_type == "classification":
            return "label"
    return "text"


def _looks_like_math(refs: list[str]) -> bool:
    marked = sum(bool(_MARKED.search(r) or _boxed(r) is not None) for r in refs)
    if marked >= FINAL_ANSWER_SHARE * len(refs):
        return True
    if all(_NUMBER_ONLY.match(r.strip()) for r in refs):
        return True  # every answer is a bare number
    worked = [r for r in refs if len(r.split()) > LABEL_MAX_WORDS]
    trailing = sum(bool(_TRAILING.search(r)) for r in worked)
    return len(worked) >= FINAL_ANSWER_SHARE * len(refs) and trailing >= FINAL_ANSWER_SHARE * len(refs)


# ---- final answers (math) --------------------------------------------------------
_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_MARKED = re.compile(r"####\s*(" + _NUM + ")")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\**\s*(" + _NUM + ")", re.I)
_ANY_NUM = re.compile(_NUM)
_NUMBER_ONLY = re.compile(r"^" + _NUM + r"%?\.?$")
_TRAILING = re.compile(_NUM + r"\s*[%.]?\s*\W{0,3}$")


def _boxed(text: str) -> str | None:
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    depth, j = 1, i + 7
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    m = _ANY_NUM.search(text[i + 7:j - 1])
    return m.group(0) if m else None


def canonical_number(s: str | None) -> str | None:
    if s is None:
        return None
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        v = float(s)
    except ValueError:
        return None
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(round(v, 6))


def final_answer(text: str) -> str | None:
    """The final number of a worked answer: `#### N`, then `\\boxed{N}`, 'the answer is N', else the last number."""
    m = _MARKED.findall(text)
    if m:
        return canonical_number(m[-1])
    b = _boxed(text)
    if b is not None:
        return canonical_number(b)
    m = _ANSWER_IS.findall(text)
    if m:
        return canonical_number(m[-1])
    m = _ANY_NUM.findall(text)
    return canonical_number(m[-1]) if m else None


def answer_marker(text: str) -> str | None:
    if _MARKED.search(text):
        return "####"
    if _boxed(text) is not None:
        return "boxed"
    return None


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


FIELD_KIND_METRIC = {"label": "accuracy", "text": "rouge_l", "exact": "exact"}


def field_kinds(references: list[str]) -> dict[str, str]:
    """Each reference field's kind: 'label' (few distinct short values: accuracy), 'text' (free text: ROUGE-L),
    or 'exact' (numbers, booleans, ids, lists: exact match)."""
    values: dict[str, list[Any]] = {}
    for ref in references:
        ok, v = parse_json(ref)
        if ok:
            for k, x in flatten(v).items():
                values.setdefault(k, []).append(x)
    kinds = {}
    for k, xs in values.items():
        strs = [x for x in xs if isinstance(x, str)]
        if len(strs) < len(xs) or not strs:
            kinds[k] = "exact"
            continue
        distinct = {_norm_value(x) for x in strs}
        words = statistics.median(len(x.split()) for x in strs)
        if words > LABEL_MAX_WORDS:
            kinds[k] = "text"
        elif len(distinct) <= max(LABEL_MAX_CLASSES // 2, len(strs) // 4) and not any(ch.isdigit() for x in distinct
                                                                                         for ch in str(x)):
            kinds[k] = "label"
        else:
            kinds[k] = "exact"
    return kinds


def field_rows(predictions: list[str], references: list[str], kinds: dict[str, str]) -> dict[str, list[float]]:
    """Per field, per row: 1/0 for label and exact fields, ROUGE-L F1 for text fields (0 when missing)."""
    scorer = _rouge() if "text" in kinds.values() else None
    rows: dict[str, list[float]] = {k: [] for k in kinds}
    for pred, ref in zip(predictions, references):
        _, rv = parse_json(ref)
        ok, pv = parse_json(pred)
        rf = flatten(rv)
        pf = flatten(pv) if ok and isinstance(pv, (dict, list)) else {}
        for k, kind in kinds.items():
            if k not in rf:
                continue
            if k not in pf:
                rows[k].append(0.0)
            elif kind == "text":
                rows[k].append(scorer.score(str(rf[k]), str(pf[k]))["rougeL"].fmeasure)
            else:
                rows[k].append(float(_norm_value(pf[k]) == _norm_value(rf[k])))
    return rows


def headline_rule(kinds: dict[str, str]) -> str:
    parts = [f"{k} {FIELD_KIND_METRIC[kind]}" for k, kind in kinds.items()]
    return "fields = mean of " + ", ".join(parts)


# ---- labels ----------------------------------------------------------------------
def normalise_label(text: str) -> str:
    return re.sub(r"[\s.!,;:]+$", "", " ".join(text.strip().lower().split())).strip("\"'`")


def macro_f1(preds: list[str], refs: list[str]) -> float:
    """Macro-F1 over the reference labels of already-normalised labels."""
    f1s = []
    for lab in set(refs):
        tp = fp = fn = 0
        for p, r in zip(preds, refs):
            tp += p == lab and r == lab
            fp += p == lab and r != lab
            fn += p != lab and r == lab
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


def label_metrics(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the reference labels, and the confusion counts (reference -> predicted)."""
    _same_length(predictions, references)
    preds = [normalise_label(p) for p in predictions]
    refs = [normalise_label(r) for r in references]
    labels = sorted(set(refs))
    confusion: dict[str, Counter] = {lab: Counter() for lab in labels}
    for p, r in zip(preds, refs):
        confusion[r][p if p in confusion else "(other)"] += 1
    return {
        "accuracy": sum(p == r for p, r in zip(preds, refs)) / len(refs) if refs else 0.0,
        "macro_f1": macro_f1(preds, refs),
        "confusion": {lab: dict(confusion[lab]) for lab in labels},
    }


# ---- free text ---------------------------------------------------------------------
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_rows(predictions: list[str], references: list[str]) -> list[float]:
    scorer = _rouge()
    return [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    _same_length(predictions, references)
    import sacrebleu

    rouge = rouge_rows(predictions, references)
    return {
        "rouge_l": sum(rouge) / len(rouge) if rouge else 0.0,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
    }


# ---- behaviour ---------------------------------------------------------------------
def loops(text: str) -> bool:
    """Whether an output repeats itself: half or more of its word 4-grams occur earlier in it
    (short outputs never count). Outputs without spaces are cut into 4-character 'words'."""
    words = text.split()
    if len(words) < LOOP_MIN_WORDS // 2 and len(text) >= 4 * LOOP_MIN_WORDS:
        words = [text[i:i + 4] for i in range(0, len(text), 4)]
    if len(words) < LOOP_MIN_WORDS:
        return False
    grams = [tuple(words[i:i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1)]
    return 1 - len(set(grams)) / len(grams) >= LOOP_SHARE


def length_ratio(prediction: str, reference: str) -> float:
    return len(prediction.split()) / max(1, len(reference.split()))


def behaviour(predictions: list[str], references: list[str], stopped: list[bool] | None) -> dict[str, Any]:
    loop_rows = [float(loops(p)) for p in predictions]
    len_rows = [length_ratio(p, r) for p, r in zip(predictions, references)]
    out: dict[str, Any] = {
        "loop_rate": sum(loop_rows) / len(loop_rows) if loop_rows else None,
        "length_ratio": statistics.median(len_rows) if len_rows else None,
        "stop_rate": None,
    }
    rows = {"loop_rate": loop_rows}
    if stopped is not None and len(stopped) == len(predictions):
        rows["stop_rate"] = [float(s) for s in stopped]
        out["stop_rate"] = sum(rows["stop_rate"]) / len(stopped) if stopped else None
    return {"metrics": out, "rows": rows, "length_rows": len_rows}


# ---- loss ------------------------------------------------------------------------
def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 50.0))


# ---- custom scorers ----------------------------------------------------------------
SCORER_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def load_scorer(spec: str, search_dir: str | None = None) -> Callable[[str, str], float]:
    """Import `module:function` (with `search_dir`, the config's folder, on the path) and check it scores
    a row: function(prediction, reference) -> a number in [0, 1] (True/False count as 1/0)."""
    import importlib
    import sys

    from ftwizard.errors import UserError

    if not re.match(SCORER_PATTERN, spec or ""):
        raise UserError(f"evaluation.scorer {spec!r} is not 'module:function'", where="evaluation.scorer",
                        fix="e.g. scorer: my_scores:score, with my_scores.py beside the config")
    mod_name, fn_name = spec.split(":")
    if search_dir and search_dir not in sys.path:
        sys.path.insert(0, search_dir)
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - the user's module: any failure is theirs to fix
        raise UserError(f"cannot import the scorer module {mod_name!r}: {type(e).__name__}: {e}",
                        where="evaluation.scorer", fix=f"put {mod_name}.py beside the config, or install it") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise UserError(f"{mod_name} has no function {fn_name!r}", where="evaluation.scorer",
                        fix=f"define def {fn_name}(prediction: str, reference: str) -> float in {mod_name}")
    try:
        probe = float(fn("a", "a"))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"the scorer {spec} failed on a test row: {type(e).__name__}: {e}", where="evaluation.scorer",
                        fix="it must take (prediction, reference) strings and return a number from 0 to 1") from None
    if not 0.0 <= probe <= 1.0:
        raise UserError(f"the scorer {spec} returned {probe} for a test row", where="evaluation.scorer",
                        fix="return a number from 0 (wrong) to 1 (right)")
    return fn


# ---- scoring one model ---------------------------------------------------------------
@dataclass
class Scores:
    metrics: dict[str, float | None]                    # the table's numbers
    rows: dict[str, list[float]] = field(default_factory=dict)  # per-row values of the mean-type metrics
    details: dict[str, Any] = field(default_factory=dict)      # field accuracy, confusion, field kinds...


def score_rows(task: str, predictions: list[str], references: list[str], *, stopped: list[bool] | None = None,
               kinds: dict[str, str] | None = None, scorer: Callable[[str, str], float] | None = None,
               scorer_name: str | None = None) -> Scores:
    """Every metric that applies to `task`, exact match and behaviour, with per-row values for intervals."""
    _same_length(predictions, references)
    n = len(references)
    mean = (lambda xs: sum(xs) / len(xs) if xs else 0.0)
    em = [float(normalise(p) == normalise(r)) for p, r in zip(predictions, references)]
    s = Scores(metrics={"exact_match": mean(em)}, rows={"exact_match": em})
    if task == "math":
        acc = [float(final_answer(p) is not None and final_answer(p) == final_answer(r))
               for p, r in zip(predictions, references)]
        marked = [float(answer_marker(p) is not None and answer_marker(p) == answer_marker(r))
                  for p, r in zip(predictions, references)]
        rl = rouge_rows(predictions, references)
        s.metrics.update(answer_accuracy=mean(acc), answer_marked=mean(marked), rouge_l=mean(rl))
        s.rows.update(answer_accuracy=acc, answer_marked=marked, rouge_l=rl)
        s.details["answers"] = [final_answer(p) for p in predictions]
    elif task == "json":
        jm = json_metrics(predictions, references)
        kinds = kinds or field_kinds(references)
        frows = field_rows(predictions, references, kinds)
        per_row = []
        for i, (p, r) in enumerate(zip(predictions, references)):
            vals = [frows[k][i] for k in kinds if len(frows[k]) == n]
            per_row.append(mean(vals))
        parse = [float(parse_json(p)[0]) for p in predictions]
        s.metrics.update({k: jm[k] for k in ("json_parse_rate", "schema_match", "field_precision", "field_recall",
                                             "field_f1")}, field_score=mean(per_row))
        s.rows.update(field_score=per_row, json_parse_rate=parse)
        for k, vals in frows.items():
            s.metrics[f"field:{k}"] = mean(vals)
            if len(vals) == n:
                s.rows[f"field:{k}"] = vals
        s.details.update(field_accuracy=jm["field_accuracy"], field_kinds=kinds, headline_rule=headline_rule(kinds))
    elif task == "label":
        lm = label_metrics(predictions, references)
        preds = [normalise_label(p) for p in predictions]
        refs = [normalise_label(r) for r in references]
        s.metrics.update(accuracy=lm["accuracy"], macro_f1=lm["macro_f1"])
        s.rows.update(accuracy=[float(p == r) for p, r in zip(preds, refs)])
        s.details.update(confusion=lm["confusion"], labels=preds, reference_labels=refs)
    else:
        tm = text_metrics(predictions, references)
        s.metrics.update(tm)
        s.rows["rouge_l"] = rouge_rows(predictions, references)
    if scorer is not None:
        vals = [float(scorer(p, r)) for p, r in zip(predictions, references)]
        name = f"custom:{scorer_name or 'scorer'}"
        s.metrics[name] = mean(vals)
        s.rows[name] = vals
    b = behaviour(predictions, references, stopped)
    s.metrics.update(b["metrics"])
    s.rows.update(b["rows"])
    return s


def score(task: str, predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Every metric that applies to `task`, plus exact match (numbers and details in one dict)."""
    out: dict[str, Any] = {"exact_match": exact_match(predictions, references)}
    if task == "json":
        out.update(json_metrics(predictions, references))
    elif task == "label":
        out.update(label_metrics(predictions, references))
    elif task == "math":
        sc = score_rows("math", predictions, references)
        out.update({k: sc.metrics[k] for k in TASK_METRICS["math"]})
    else:
        out.update(text_metrics(predictions, references))
    return out


def sample_correct(task: str, prediction: str, reference: str) -> bool:
    """Whether one output counts as right, for marking samples."""
    if task == "label":
        return normalise_label(prediction) == normalise_label(reference)
    if task == "math":
        return final_answer(prediction) is not None and final_answer(prediction) == final_answer(reference)
    if task == "json":
        ok, pv = parse_json(prediction)
        _, rv = parse_json(reference)
        return ok and {k: _norm_value(v) for k, v in flatten(pv).items()} == \
            {k: _norm_value(v) for k, v in flatten(rv).items()}
    return normalise(prediction) == normalise(reference)


def metric_choices(task: str, references: list[str], scorer_name: str | None = None) -> list[str]:
    """Names `--metric` / evaluation.metric may pick: those with per-row values (so verdicts get intervals)."""
    per_task = {"math": ["answer_accuracy", "answer_marked", "rouge_l"],
                "json": ["field_score", "json_parse_rate"] + [f"field:{k}" for k in field_kinds(references)],
                "label": ["accuracy", "macro_f1"], "text": ["rouge_l"]}[task]
    return per_task + ["exact_match", "eval_loss"] + ([f"custom:{scorer_name}"] if scorer_name else [])


def _same_length(predictions: list, references: list) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
