"""The regression probe: general prompts with checkable answers, to catch forgetting.

A fine-tune teaches one task; it can also quietly break what the base model could do
(guidance: "probe general capabilities for catastrophic forgetting"). `probe.jsonl`
ships with the package: arithmetic, capitals, everyday facts, simple formatting
instructions, and harmless how-to questions that must be answered, not refused. Each
prompt carries checks that all must pass; the probe score is the share passed. The
prompts are sent as plain chat turns (no task system prompt), as a user would.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

DROP_WARNING = 0.10  # a probe score this much below the base's (absolute) is a warning


def load_probe() -> list[dict[str, Any]]:
    text = resources.files("ftwizard.evaluation").joinpath("probe.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def probe_subset(items: list[dict[str, Any]], size: int | None) -> list[dict[str, Any]]:
    """`size` prompts spread evenly over the set (every category kept), for quick checks."""
    if not size or size >= len(items):
        return items
    step = len(items) / size
    return [items[int(i * step)] for i in range(size)]


def _check(check: dict[str, Any], output: str) -> bool:
    text = output.strip()
    low = text.lower()
    if "contains_any" in check:
        if check.get("case_sensitive"):
            return any(s in text for s in check["contains_any"])
        return any(s.lower() in low for s in check["contains_any"])
    if "not_contains" in check:
        return not any(s.lower() in low for s in check["not_contains"])
    if "number" in check:
        return any(n == check["number"] for n in re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))) or \
            any(re.sub(r"\.0+$", "", n) == check["number"] for n in re.findall(r"-?\d+\.\d+", text))
    if "regex" in check:
        return re.search(check["regex"], text) is not None
    if "max_words" in check:
        return 0 < len(text.split()) <= check["max_words"]
    if "min_words" in check:
        return len(text.split()) >= check["min_words"]
    if "min_lines" in check:
        return len([ln for ln in text.splitlines() if ln.strip()]) >= check["min_lines"]
    if "starts_with" in check:
        return low.lstrip("\"'*` ").startswith(check["starts_with"].lower())
    if "json_keys" in check:
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return isinstance(value, dict) and all(k in value for k in check["json_keys"])
    raise ValueError(f"unknown probe check {check}")


def passes(item: dict[str, Any], output: str) -> bool:
    return all(_check(c, output) for c in item["checks"])


def score_probe(items: list[dict[str, Any]], outputs: list[str]) -> dict[str, Any]:
    """Score and per-category shares; `passed` lists the ids that passed."""
    if len(items) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(items)} probe prompts")
    results = [passes(it, out) for it, out in zip(items, outputs)]
    cats: dict[str, list[int]] = {}
    for it, ok in zip(items, results):
        cell = cats.setdefault(it["category"], [0, 0])
        cell[0] += ok
        cell[1] += 1
    return {
        "probe_score": sum(results) / len(results) if results else 0.0,
        "by_category": {c: right / total for c, (right, total) in sorted(cats.items())},
        "passed": [it["id"] for it, ok in zip(items, results) if ok],
        "outputs": {it["id"]: out for it, out in zip(items, outputs)},
    }
