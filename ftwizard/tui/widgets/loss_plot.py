"""Loss over steps, drawn by plotext into text inside our own widget.

textual-plotext pins plotext below 6, so the figure is rendered to an ANSI string
and shown as Rich text. The series hold log10(loss) on a linear axis (plotext's log
scale breaks on rebuild) and the ticks are labelled with the loss values themselves,
so the axis reads as a log scale of losses; the caller hands in points already
downsampled to the widget's width,
and the rendered text is cached per (size, data) so repaints cost nothing.
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.widget import Widget

TRAIN_COLOUR = "cyan"
EVAL_COLOUR = "orange"


def render_loss_plot(train: tuple[list, list], evals: tuple[list, list], width: int, height: int) -> Text:
    """Series hold log10(loss); the y axis is labelled in loss values (a log scale read as losses)."""
    import plotext  # ~0.3 s to import: only once there is something to plot, never before first paint

    f = plotext.figure
    f.clear()
    f.theme("colorless")
    f.plot_size(width, height)
    f.legend(active=False)
    # "hd" (quarter blocks) rather than braille: every terminal font and the SVG screenshots have them
    if train[0]:
        f.draw(f.signal(train[0], train[1], marker=plotext.marker("hd", pixel=TRAIN_COLOUR)).lines())
    if evals[0]:
        f.draw(f.signal(evals[0], evals[1], marker=plotext.marker("hd", pixel=EVAL_COLOUR)).lines())
    set_axes(f, train[0] + evals[0], train[1] + evals[1], width, height)
    return Text.from_ansi(f.build().string(), no_wrap=True)


def set_step_axis(f, xs: list, width: int) -> None:
    """Whole-step x ticks; one point (or one step) gets a range around it, not plotext's fractional ticks."""
    lo, hi = min(xs), max(xs)
    if hi - lo < 1:
        lo, hi = max(0, lo - 1), hi + 1
        f.ruler("x").lim(lo, hi)
    ticks = step_ticks(lo, hi, width)
    if ticks:
        f.ruler("x").ticks(ticks, [f"{t:,}" for t in ticks])


def set_axes(f, xs: list, log_ys: list, width: int, height: int) -> None:
    """Whole-step x ticks and y ticks in loss values (the plot holds log10 loss); shared by the compare view."""
    set_step_axis(f, xs, width)
    ylo, yhi = min(log_ys), max(log_ys)
    if yhi - ylo < 1e-6:
        ylo, yhi = ylo - 0.05, yhi + 0.05
        f.ruler("y").lim(ylo, yhi)
    yt = loss_ticks(ylo, yhi, height)
    f.ruler("y").ticks([math.log10(v) for v in yt], [format_loss(v) for v in yt])


def format_loss(v: float) -> str:
    return f"{v:.3g}" if v >= 1e-3 else f"{v:.0e}"


def loss_ticks(log_lo: float, log_hi: float, height: int) -> list[float]:
    """Loss values for the y ticks: 1/2/5 x 10^k inside the range, thinned to fit; else evenly spaced."""
    most = max(2, height // 3)
    decades = range(math.floor(log_lo) - 1, math.ceil(log_hi) + 2)
    for mantissas, every in (((1, 2, 5), 1), ((1, 3), 1), ((1,), 1), ((1,), 2), ((1,), 3)):
        inside = [m * 10.0**k for k in decades if k % every == 0 for m in mantissas
                  if log_lo <= math.log10(m * 10.0**k) <= log_hi]
        if 2 <= len(inside) <= most:
            return inside
    n = min(most, 3)
    return [10 ** (log_lo + (log_hi - log_lo) * i / (n - 1)) for i in range(n)]


def step_ticks(lo: float, hi: float, width: int) -> list[int]:
    """Whole-step ticks at 1/2/5 x 10^k spacing, about one per 12 columns."""
    if hi - lo < 1:
        return []
    raw = (hi - lo) / max(2, width // 12)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(1, int(step))
    first = int(math.ceil(lo / step) * step)
    return list(range(first, int(hi) + 1, step))


class LossPlot(Widget):
    DEFAULT_CSS = """
    LossPlot { width: 1fr; height: 1fr; min-height: 6; border: round $primary 50%; border-title-color: $text; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = f"loss, log scale: [{TRAIN_COLOUR}]train[/] [{EVAL_COLOUR}]eval[/]"
        self._train: tuple[list, list] = ([], [])
        self._eval: tuple[list, list] = ([], [])
        self._cache: tuple[tuple[int, int], Text] | None = None
        self.last_build_ms = 0.0

    @property
    def max_points(self) -> int:
        """Points worth drawing: two braille dots per cell across the plot area."""
        return max(16, 2 * self.content_size.width)

    def set_series(self, train: tuple[list, list], evals: tuple[list, list]) -> None:
        self._train, self._eval = train, evals
        self._cache = None
        self.refresh()

    def render(self) -> Text:
        w, h = self.content_size.width, self.content_size.height
        if not self._train[0] and not self._eval[0]:
            return Text("waiting for the first logged step...", style="dim")
        if w < 20 or h < 5:
            return Text("(too small to plot)", style="dim")
        if self._cache is None or self._cache[0] != (w, h):
            t = time.perf_counter()
            self._cache = ((w, h), render_loss_plot(self._train, self._eval, w, h))
            self.last_build_ms = (time.perf_counter() - t) * 1000
        return self._cache[1]


# ---- a preference run's rewards (DPO, ORPO, KTO): the second plot of the monitor ------------------------------
# (event name, label, plotext colour, Rich colour). Rewards are log-ratios against the reference model, so they
# sit around 0 and go negative: a linear axis, not the loss plot's log one.
REWARD_SERIES = [("rewards_chosen", "chosen", "green", "green"), ("rewards_rejected", "rejected", "red", "red"),
                 ("rewards_margins", "margin", "cyan", "cyan")]


def render_reward_plot(series: list[tuple[str, list, list]], width: int, height: int) -> Text:
    """Lines of (plotext colour, steps, values) on a linear y axis, whole-step x ticks."""
    import plotext

    f = plotext.figure
    f.clear()
    f.theme("colorless")
    f.plot_size(width, height)
    f.legend(active=False)
    xs_all: list = []
    ys_all: list = []
    for colour, xs, ys in series:
        if xs:
            f.draw(f.signal(xs, ys, marker=plotext.marker("hd", pixel=colour)).lines())
            xs_all += xs
            ys_all += ys
    set_step_axis(f, xs_all, width)
    ylo, yhi = min(ys_all), max(ys_all)
    if yhi - ylo < 1e-6:
        f.ruler("y").lim(ylo - 0.05, yhi + 0.05)
    return Text.from_ansi(f.build().string(), no_wrap=True)


class RewardPlot(Widget):
    """Rewards of the chosen and rejected answers and their margin over steps (the monitor's `p` key)."""

    DEFAULT_CSS = """
    RewardPlot { width: 1fr; height: 1fr; min-height: 6; border: round $primary 50%; border-title-color: $text; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "rewards: " + " ".join(f"[{rich}]{label}[/]" for _k, label, _c, rich in REWARD_SERIES)
        self._series: list[tuple[str, list, list]] = []
        self._cache: tuple[tuple[int, int], Text] | None = None

    @property
    def max_points(self) -> int:
        return max(16, 2 * self.content_size.width)

    def set_series(self, series: dict[str, tuple[list, list]]) -> None:
        """`series`: event name (REWARD_SERIES) -> (steps, values)."""
        self._series = [(colour, *series[key]) for key, _l, colour, _r in REWARD_SERIES if key in series]
        self._cache = None
        self.refresh()

    def render(self) -> Text:
        w, h = self.content_size.width, self.content_size.height
        if not any(xs for _c, xs, _y in self._series):
            return Text("no rewards logged yet (a preference run logs them each step)", style="dim")
        if w < 20 or h < 5:
            return Text("(too small to plot)", style="dim")
        if self._cache is None or self._cache[0] != (w, h):
            self._cache = ((w, h), render_reward_plot(self._series, w, h))
        return self._cache[1]
