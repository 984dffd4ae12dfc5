"""A stacked bar of memory parts against a capacity (estimate parts, or live use)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

PART_STYLES = ["cyan", "magenta", "yellow", "green", "blue", "bright_red", "bright_cyan", "bright_magenta"]


def render_bar(parts: list[tuple[str, float]], capacity: float | None, width: int, unit: str = "GB") -> Text:
    """Bar line plus legend line. Parts past the capacity show in red with the overshoot."""
    total = sum(v for _, v in parts)
    scale_to = max(total, capacity or 0.0) or 1.0
    bar = Text(no_wrap=True)
    used = 0
    for i, (_label, value) in enumerate(parts):
        n = round(value / scale_to * width)
        n = min(n, width - used)
        bar.append("█" * n, style=PART_STYLES[i % len(PART_STYLES)])
        used += n
    if capacity and total < capacity:
        bar.append("░" * (width - used), style="dim")
    elif capacity and total > capacity:
        cut = round(capacity / scale_to * width)
        bar.stylize("on red", cut, width)
    legend = Text(no_wrap=False)
    for i, (label, value) in enumerate(parts):
        legend.append("■ ", style=PART_STYLES[i % len(PART_STYLES)])
        legend.append(f"{label} {value:.1f}  ")
    if capacity:
        style = "bold red" if total > capacity else "bold"
        legend.append(f"= {total:.1f} of {capacity:.1f} {unit}", style=style)
    else:
        legend.append(f"= {total:.1f} {unit}", style="bold")
    return Text("\n").join([bar, legend])


class MemoryBar(Widget):
    DEFAULT_CSS = """
    MemoryBar { height: auto; min-height: 2; }
    """

    def __init__(self, *, unit: str = "GB", id: str | None = None):
        super().__init__(id=id)
        self.unit = unit
        self.parts: list[tuple[str, float]] = []
        self.capacity: float | None = None

    def set_parts(self, parts: list[tuple[str, float]], capacity: float | None) -> None:
        self.parts, self.capacity = list(parts), capacity
        self.refresh(layout=True)

    def render(self) -> Text:
        if not self.parts:
            return Text("no reading yet", style="dim")
        return render_bar(self.parts, self.capacity, max(10, self.content_size.width), self.unit)
