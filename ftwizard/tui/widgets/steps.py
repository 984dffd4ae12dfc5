"""The step indicator: where you are in the flow, where you have been, what comes next."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class StepIndicator(Widget):
    DEFAULT_CSS = """
    StepIndicator { height: 1; width: 1fr; padding: 0 1; background: $panel; }
    """

    current: reactive[int] = reactive(0)

    def __init__(self, labels: list[str], *, id: str | None = None):
        super().__init__(id=id)
        self.labels = list(labels)
        self.visited: set[int] = {0}

    def watch_current(self, value: int) -> None:
        self.visited.add(value)

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        full = sum(len(s) + 4 for s in self.labels) + 3 * (len(self.labels) - 1)
        narrow = full > self.content_size.width > 0
        for i, label in enumerate(self.labels):
            if i:
                out.append(" > " if not narrow else ">", style="dim")
            shown = label if not narrow or i == self.current else label[:4]
            text = f" {i + 1} {shown} "
            if i == self.current:
                out.append(text, style="bold reverse")
            elif i in self.visited:
                out.append(text, style="bold")
            else:
                out.append(text, style="dim")
        return out
