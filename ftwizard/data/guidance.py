"""Example counts per task type, from the guidance (../shared/GUIDANCE.md, "Data").

One table for the lint rule `data.too_few` and for the wizard's Decide screen, so the
two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExampleCounts:
    task_type: str
    label: str
    minimum: int
    good: int
    excellent: int


EXAMPLE_COUNTS: dict[str, ExampleCounts] = {
    c.task_type: c
    for c in (
        ExampleCounts("classification", "Classification", 50, 500, 5_000),
        ExampleCounts("extraction", "Structured extraction", 100, 1_000, 10_000),
        ExampleCounts("style", "Style or tone", 200, 1_000, 5_000),
        ExampleCounts("domain", "Domain expertise", 500, 5_000, 50_000),
        ExampleCounts("code", "Code generation", 1_000, 10_000, 100_000),
    )
}

# Guidance: "200 clean, diverse examples beat 2,000 noisy ones" and "fewer than a few
# hundred good examples" is a poor reason to fine-tune: used when the task type is unknown.
GENERIC_MINIMUM = 200

# Guidance: hold out 10-20 % of the data.
EVAL_FRACTION_RANGE = (0.10, 0.20)


def rate_count(task_type: str | None, rows: int) -> tuple[str, ExampleCounts | None]:
    """Where `rows` examples stand for a task type: below_minimum, minimum, good or excellent."""
    counts = EXAMPLE_COUNTS.get(task_type or "")
    if counts is None:
        return ("below_minimum" if rows < GENERIC_MINIMUM else "unknown_task"), None
    if rows < counts.minimum:
        return "below_minimum", counts
    if rows < counts.good:
        return "minimum", counts
    if rows < counts.excellent:
        return "good", counts
    return "excellent", counts
