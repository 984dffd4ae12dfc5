"""The step indicator: where you are in the flow, where you have been, what comes next.

Designed for 80 columns: each step has a full title and a short name chosen on purpose
(`SHORT_NAMES`, or a step class's own `SHORT_TITLE`), and the bar picks the first layout
that fits whole, so a name is never cut mid-word (no "4 Hype").
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# Short names for 80 columns; the others are short already ("Decide", "Model", "Try", ...).
SHORT_NAMES = {"Hyperparameters": "Tune", "Evaluate": "Eval"}


def short_name(step_class: type) -> str:
    return getattr(step_class, "SHORT_TITLE", None) or SHORT_NAMES.get(step_class.TITLE, step_class.TITLE)


class StepIndicator(Widget):
    DEFAULT_CSS = """
    StepIndicator { height: 1; width: 1fr; padding: 0 1; background: $panel; }
    """

    current: reactive[int] = reactive(0)

    def __init__(self, labels: list[str], *, short: list[str] | None = None, id: str | None = None):
        super().__init__(id=id)
        self.labels = list(labels)
        self.short = list(short) if short is not None else list(labels)
        self.visited: set[int] = {0}

    def watch_current(self, value: int) -> None:
        self.visited.add(value)

    def layouts(self) -> list[tuple[list[str], str]]:
        """Candidate (names, separator) pairs, widest first."""
        return [(self.labels, " > "), (self.short, " > "), (self.short, "›"),
                ([s if i == self.current else "" for i, s in enumerate(self.short)], "›")]

    def render(self) -> Text:
        width = self.content_size.width or 10_000
        for names, sep in self.layouts():
            cells = [f" {i + 1} {n} " if n else f" {i + 1} " for i, n in enumerate(names)]
            if sum(map(len, cells)) + len(sep) * (len(cells) - 1) <= width:
                break
        out = Text(no_wrap=True, overflow="crop")
        for i, cell in enumerate(cells):
            if i:
                out.append(sep, style="dim")
            if i == self.current:
                out.append(cell, style="bold reverse")
            elif i in self.visited:
                out.append(cell, style="bold")
            else:
                out.append(cell, style="dim")
        return out
