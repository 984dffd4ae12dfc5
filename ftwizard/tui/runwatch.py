"""What a viewer knows about a run, built from its folder alone, in bounded memory.

`RunWatch` tails `events.jsonl` in chunks, keeps the loss curves in decimating
buffers (a 200,000-step run costs the same memory as a 2,000-step one), tracks the
latest metrics, and derives the warnings the guidance asks for: eval loss rising while
train loss falls (overfitting), NaN, and a throughput collapse. Plain Python: no
Textual, no torch, so it can be tested and benchmarked alone and used by any viewer.
"""

from __future__ import annotations

import math
import os
import statistics
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ftwizard.rundir import ACTIVE_STATES, EventReader, RunDir

READ_CHUNK = 1 << 20  # bytes of events.jsonl parsed per read; bounds memory on huge files
LOG_TAIL_BYTES = 16_384
# A preference run's own metrics (DPO, ORPO, KTO through TRL): train events carry these, eval events the same
# with an eval_ prefix. TRL names them "rewards/chosen"; the run folder writes "rewards_chosen" (either is read).
REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies", "kl")
REWARD_CAPACITY = 512  # points kept per reward series (they are drawn small: a sparkline or a second plot)


def reward_key(key: str) -> str:
    """"rewards/chosen" or "eval_rewards/margins" as the run folder spells it: "rewards_chosen"."""
    return key.replace("/", "_")


class ChunkedEventReader(EventReader):
    """`EventReader` that parses at most `max_bytes` per call (never the whole file at once)."""

    def read_new(self, max_bytes: int = READ_CHUNK) -> list[dict[str, Any]]:  # type: ignore[override]
        return super().read_new(max_bytes)

    def at_end(self) -> bool:
        try:
            return os.path.getsize(self.path) - self.offset < 2
        except OSError:
            return True


class DecimatingSeries:
    """An (x, y) series that keeps at most `capacity` points spread over its whole range.

    When full, every other point is dropped and only every 2^k-th new point is kept,
    so memory stays fixed and the curve keeps its shape from the first step to the
    latest; the latest point is always kept exactly. A point whose x is not after the
    last one (a resumed run re-logging steps) truncates the series there first.
    """

    def __init__(self, capacity: int = 2048):
        self.capacity = capacity
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.stride = 1
        self._count = 0
        self.last: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.xs)

    def append(self, x: float, y: float) -> None:
        if self.last is not None and x <= self.last[0]:
            cut = bisect_left(self.xs, x)
            del self.xs[cut:], self.ys[cut:]
            self.last = None
        self.last = (x, y)
        self._count += 1
        if (self._count - 1) % self.stride:
            return
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) > self.capacity:
            self.xs = self.xs[::2]
            self.ys = self.ys[::2]
            self.stride *= 2

    def points(self, max_points: int | None = None) -> tuple[list[float], list[float]]:
        """The series (with the exact latest point), downsampled to at most `max_points`."""
        xs, ys = self.xs, self.ys
        if self.last is not None and (not xs or xs[-1] != self.last[0]):
            xs, ys = xs + [self.last[0]], ys + [self.last[1]]
        if max_points and len(xs) > max_points:
            step = math.ceil(len(xs) / max_points)
            keep_x, keep_y = xs[::step], ys[::step]
            if keep_x[-1] != xs[-1]:
                keep_x.append(xs[-1])
                keep_y.append(ys[-1])
            xs, ys = keep_x, keep_y
        return xs, ys


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


@dataclass
class Warning_:
    key: str  # overfitting, nan, throughput, died, failed
    message: str


@dataclass
class RunWatch:
    """A viewer's model of one run. Call `poll()` repeatedly; read the fields."""

    run: RunDir
    capacity: int = 2048
    reader: ChunkedEventReader = field(init=False)
    train: DecimatingSeries = field(init=False)  # step -> loss
    evals: DecimatingSeries = field(init=False)  # step -> eval_loss
    latest: dict[str, Any] = field(default_factory=dict)  # last train event
    latest_eval: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    system: deque = field(default_factory=lambda: deque(maxlen=50))  # recent system events
    log_tail: list[str] = field(default_factory=list)
    events_read: int = 0
    nan_step: int | None = None
    divergence: dict | None = None  # the trainer's "divergence" system event (ftwizard.monitoring)
    rewards: dict = field(default_factory=dict)  # REWARD_KEYS name -> DecimatingSeries (train events)
    eval_rewards: dict = field(default_factory=dict)  # the same names, from eval events (eval_ prefix dropped)
    _tps: deque = field(default_factory=lambda: deque(maxlen=200))
    _train_at_eval: list[tuple[float, float]] = field(default_factory=list)  # (eval_loss, train loss then)
    _log_size: int = -1

    def __post_init__(self) -> None:
        self.reader = ChunkedEventReader(self.run.events)
        self.train = DecimatingSeries(self.capacity)
        self.evals = DecimatingSeries(self.capacity)

    # ---- reading -------------------------------------------------------------
    def poll(self, max_chunks: int = 8) -> bool:
        """Read what is new (events, status, log); True when anything changed."""
        changed = False
        for _ in range(max_chunks):
            events = self.reader.read_new()
            if not events:
                break
            for e in events:
                self.apply(e)
            changed = True
        status = self.run.status()
        if status != self.status:
            self.status = status
            changed = True
        changed |= self._read_log()
        return changed

    def caught_up(self) -> bool:
        return self.reader.at_end()

    def apply(self, e: dict[str, Any]) -> None:
        self.events_read += 1
        kind = e.get("kind")
        step = _num(e.get("step"))
        if kind == "train":
            self.latest = e
            loss = _num(e.get("loss"))
            if loss is not None and step is not None:
                if math.isfinite(loss) and loss > 0:
                    self.train.append(step, math.log10(loss))
                elif not math.isfinite(loss) and self.nan_step is None:
                    self.nan_step = int(step)
            elif "loss" in e and e["loss"] is None and step is not None and self.nan_step is None:
                self.nan_step = int(step)  # JSON has no NaN: orjson writes a NaN loss as null
            grad = _num(e.get("grad_norm"))
            if grad is not None and not math.isfinite(grad) and self.nan_step is None and step is not None:
                self.nan_step = int(step)
            tps = _num(e.get("tokens_per_second"))
            if tps is not None and tps > 0:
                self._tps.append(tps)
            if step is not None:
                self._rewards(self.rewards, e, step, "")
        elif kind == "eval":
            self.latest_eval = e
            if step is not None:
                self._rewards(self.eval_rewards, e, step, "eval_")
            ev = _num(e.get("eval_loss"))
            if ev is not None and step is not None and math.isfinite(ev) and ev > 0:
                self.evals.append(step, math.log10(ev))
                train_now = _num(self.latest.get("loss"))
                self._train_at_eval.append((ev, train_now if train_now is not None else math.nan))
                del self._train_at_eval[:-8]
        elif kind == "system":
            self.system.append(e)
            if e.get("event") == "nan" and self.nan_step is None and step is not None:
                self.nan_step = int(step)
            if e.get("event") == "divergence":
                self.divergence = e

    @staticmethod
    def _rewards(into: dict, e: dict[str, Any], step: float, prefix: str) -> None:
        for key, value in e.items():
            name = reward_key(key)
            if not name.startswith(prefix) or name[len(prefix):] not in REWARD_KEYS:
                continue
            v = _num(value)
            if v is None or not math.isfinite(v):
                continue
            name = name[len(prefix):]
            if name not in into:
                into[name] = DecimatingSeries(REWARD_CAPACITY)
            into[name].append(step, v)

    @property
    def preference(self) -> bool:
        """A preference run (DPO, ORPO, KTO): its events carry reward metrics."""
        return bool(self.rewards or self.eval_rewards)

    def latest_reward(self, name: str, evals: bool = False) -> float | None:
        series = (self.eval_rewards if evals else self.rewards).get(name)
        return series.last[1] if series is not None and series.last is not None else None

    def _read_log(self) -> bool:
        try:
            size = os.path.getsize(self.run.log)
        except OSError:
            return False
        if size == self._log_size:
            return False
        self._log_size = size
        with open(self.run.log, "rb") as f:
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
        lines = data.decode("utf-8", "replace").replace("\r", "\n").splitlines()
        if size > LOG_TAIL_BYTES and lines:
            lines = lines[1:]  # the first line is probably cut
        self.log_tail = [ln for ln in lines if ln.strip() and not _library_noise(ln)][-50:]
        return True

    # ---- derived ---------------------------------------------------------------
    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def step(self) -> int | None:
        s = self.latest.get("step", self.status.get("step"))
        st = self.status.get("step")
        if isinstance(st, int) and (not isinstance(s, int) or st > s):
            s = st
        return s if isinstance(s, int) else None

    @property
    def max_steps(self) -> int | None:
        m = self.status.get("max_steps")
        if not isinstance(m, int):
            for e in reversed(self.system):
                if isinstance(e.get("max_steps"), int):
                    return e["max_steps"]
        return m if isinstance(m, int) else None

    @property
    def progress(self) -> float | None:
        if self.step is None or not self.max_steps:
            return None
        return min(1.0, self.step / self.max_steps)

    @property
    def eta_s(self) -> float | None:
        if not self.active:
            return None
        return _num(self.latest.get("eta_s")) or _num(self.status.get("eta_s"))

    @property
    def tokens_per_second(self) -> float | None:
        return self._tps[-1] if self._tps else None

    def warnings(self) -> list[Warning_]:
        out: list[Warning_] = []
        if self.state == "died":
            out.append(Warning_("died", str(self.status.get("message") or "the trainer process is gone")))
        elif self.state == "failed":
            out.append(Warning_("failed", str(self.status.get("message") or "training failed; see the log")))
        if self.nan_step is not None:
            out.append(Warning_("nan", f"loss or gradient became NaN/inf at step {self.nan_step}: lower the "
                                       "learning rate, check the data, or use fp32/bf16 instead of fp16"))
        div = self.divergence or (self.status.get("divergence") if isinstance(self.status.get("divergence"), dict)
                                  else None)
        if div:
            out.append(Warning_("divergence", divergence_message(div)))
        w = self._overfitting()
        if w:
            out.append(w)
        w = self._throughput()
        if w:
            out.append(w)
        return out

    def _overfitting(self) -> Warning_ | None:
        """Eval loss up on each of the last two evaluations while train loss went down (guidance)."""
        pts = self._train_at_eval
        if len(pts) < 3:
            return None
        (e1, t1), (e2, _t2), (e3, t3) = pts[-3:]
        if e3 > e2 > e1 and math.isfinite(t1) and math.isfinite(t3) and t3 < t1:
            best_step = None
            if len(self.evals):
                xs, ys = self.evals.points()
                best_step = int(xs[ys.index(min(ys))])
            where = f"; the best eval so far was at step {best_step}" if best_step is not None else ""
            return Warning_("overfitting", f"eval loss rising ({e1:.3f} -> {e3:.3f}) while train loss falls: "
                                           f"overfitting{where}. Fewer epochs or more data (guidance).")
        return None

    def _throughput(self) -> Warning_ | None:
        """Recent tokens/s under half of the run's typical rate (swapping, throttling, a neighbour)."""
        if len(self._tps) < 12 or not self.active:
            return None
        tps = list(self._tps)
        typical = statistics.median(tps[:-4])
        recent = statistics.median(tps[-4:])
        if typical > 0 and recent < 0.5 * typical:
            return Warning_("throughput", f"throughput fell to {recent:,.0f} tokens/s from {typical:,.0f}: "
                                          "the machine may be swapping, throttling or shared")
        return None


def _library_noise(line: str) -> bool:
    """Library chatter that would mislead on the screen (bitsandbytes asking for `pip install kernels` on a
    CPU, where it falls back to its own code)."""
    return "kernels-community" in line or "pip install kernels" in line


def divergence_message(d: dict) -> str:
    """The trainer's divergence finding in words: where, how far, what to change."""
    step, loss, start = d.get("step"), _num(d.get("loss")), _num(d.get("start_loss"))
    where = f" at step {step}" if step is not None else ""
    rise = f" (loss {start:.3g} -> {loss:.3g})" if loss is not None and start is not None else ""
    reason = str(d.get("reason") or "the loss keeps rising")
    fix = str(d.get("fix") or "lower the learning rate (e.g. halve it) and start again")
    return f"diverging{where}{rise}: {reason}. {fix}"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_number(v: Any, style: str = "g") -> str:
    n = _num(v)
    if n is None:
        return "-"
    if not math.isfinite(n):
        return str(n)
    if style == "lr":
        return f"{n:.2e}"
    if style == "int":
        return f"{n:,.0f}"
    return f"{n:.4g}"


def last_losses(run: RunDir, tail_bytes: int = 65_536) -> tuple[float | None, float | None]:
    """Latest train and eval loss from the end of events.jsonl only (a picker row must not
    parse a 200,000-event file every refresh)."""
    import orjson

    try:
        size = os.path.getsize(run.events)
        with open(run.events, "rb") as f:
            f.seek(max(0, size - tail_bytes))
            lines = f.read().splitlines()
    except OSError:
        return None, None
    loss = eval_loss = None
    for line in reversed(lines[1:] if size > tail_bytes else lines):
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(e, dict):
            continue
        if loss is None and e.get("kind") == "train":
            loss = _num(e.get("loss"))
        if eval_loss is None and e.get("kind") == "eval":
            eval_loss = _num(e.get("eval_loss"))
        if loss is not None and eval_loss is not None:
            break
    return loss, eval_loss
