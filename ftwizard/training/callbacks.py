"""The trainer's voice: a TrainerCallback that writes events and status, and obeys stop.

Metrics leave through `on_log` (TRL's pattern), so reading them costs no extra device
sync. Under torchrun every rank runs this callback (the Trainer calls it everywhere);
ranks other than 0 get a folder view that writes nothing, and the two cross-rank
agreements (stop, memory) are collectives that every rank reaches at the same point.
Tokens per second come from TRL's `num_tokens`, already summed over ranks. Stop requests (SIGTERM/SIGINT or a STOP file, which also works across machines
on a shared disk) are checked at each step end; the Trainer then saves a checkpoint
at that exact step and returns, so resume continues from where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from transformers import TrainerCallback

from ftwizard.rundir import EventWriter, RunDir

STATUS_EVERY_S = 2.0

# The preference objectives' own curves: TRL's log key -> the event key (eval events add the eval_ prefix).
# Part of the events.jsonl contract (the monitor and the evaluation read these names).
PREFERENCE_METRICS = {
    "rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins", "rewards/accuracies": "rewards_accuracies",
    "kl": "kl", "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected",
    "nll_loss": "nll_loss", "log_odds_ratio": "log_odds_ratio",
}


def preference_metrics(logs: dict, prefix: str = "") -> dict[str, float]:
    """The objective's curves found in one Trainer log, under their event names (absent ones left out)."""
    out = {}
    for trl_key, key in PREFERENCE_METRICS.items():
        value = logs.get(prefix + trl_key)
        if isinstance(value, (int, float)):
            out[prefix + key] = float(value)
    return out


def _world(args) -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_ranks_max(args, value: float) -> float:
    """The maximum of `value` over all ranks (a no-op in a single process).

    Used to agree on a stop (any rank saw the STOP file or a signal, so all stop at the
    same step; otherwise the others would wait in a collective for ever) and to report
    memory per GPU as the worst rank's. Every rank calls it at the same points."""
    if _world(args) <= 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64 if args.device.type == "cpu" else torch.float32,
                     device=args.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def process_memory_gb() -> float:
    """CUDA peak allocated on GPU (what OOMs), else the process RSS."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.max_memory_allocated() / 2**30
    except Exception:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _run_config(run: RunDir, cfg):
    """The run's config (given, or the run folder's copy); None when there is none (a rank's view)."""
    if cfg is not None:
        return cfg
    try:
        from ftwizard.config import load_config

        return load_config(run.config)
    except Exception:  # a view without a config only watches
        return None


class RunEvents(TrainerCallback):
    def __init__(self, run: RunDir, writer: EventWriter, stop_flag: dict[str, Any], cfg=None):
        self.run = run
        self.writer = writer
        self.stop_flag = stop_flag  # {"requested": bool, "reason": str, "message": str}; signal handlers set it
        self.nan_step: int | None = None
        self.losses: list[tuple[int, float]] = []  # (step, loss) since this process started, for the divergence guard
        self.divergence = None  # the first ftwizard.monitoring.Divergence seen
        self.cfg = _run_config(run, cfg)
        self.stop_on_divergence = bool(self.cfg is not None and self.cfg.training.stop_on_divergence)
        self._t0 = time.time()
        self._first_step = 0
        self._last_tokens: float | None = None
        self._last_time = time.time()
        self._last_status = 0.0

    # ---- lifecycle ---------------------------------------------------------
    def on_train_begin(self, args, state, control, **kw):
        self._t0 = time.time()
        self._last_time = self._t0
        self._first_step = state.global_step
        self.run.write_status(state="running", step=state.global_step, max_steps=state.max_steps)
        self.writer.write("system", event="train_begin", step=state.global_step, max_steps=state.max_steps,
                          epochs=args.num_train_epochs)

    def on_step_end(self, args, state, control, **kw):
        if not self.stop_flag.get("requested") and self.run.stop_file.exists():
            self.stop_flag.update(requested=True, reason="STOP file")
        anyone = all_ranks_max(args, 1.0 if self.stop_flag.get("requested") else 0.0)  # every rank, every step
        if anyone > 0 and not self.stop_flag.get("requested"):
            self.stop_flag.update(requested=True, reason="STOP file")  # seen by another rank
        if self.stop_flag.get("requested") and not control.should_training_stop:
            control.should_training_stop = True
            control.should_save = True  # checkpoint at this very step, so resume is exact
            self.run.write_status(state="stopping", step=state.global_step)
            self.writer.write("system", event="stopping", step=state.global_step, reason=self.stop_flag.get("reason"))
        return control

    # ---- metrics -----------------------------------------------------------
    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        now = time.time()
        step = state.global_step
        elapsed = now - self._t0
        done = step - self._first_step
        eta = (state.max_steps - step) * elapsed / done if done > 0 and state.max_steps else None
        common = {"step": step, "epoch": round(state.epoch or 0.0, 4), "elapsed_s": round(elapsed, 3),
                  "memory_gb": round(all_ranks_max(args, process_memory_gb()), 3)}  # per GPU: the fullest one
        if "eval_loss" in logs:
            self.writer.write("eval", eval_loss=logs["eval_loss"],
                              eval_tokens_per_second=logs.get("eval_samples_per_second"),
                              **preference_metrics(logs, "eval_"), **common)
        elif "loss" in logs:
            tokens = logs.get("num_tokens")
            tps = None
            if isinstance(tokens, (int, float)):
                if self._last_tokens is not None and tokens >= self._last_tokens and now > self._last_time:
                    tps = (tokens - self._last_tokens) / (now - self._last_time)
                self._last_tokens = tokens
            self._last_time = now
            loss = logs["loss"]
            grad = logs.get("grad_norm")
            self.writer.write("train", loss=loss, learning_rate=logs.get("learning_rate"), grad_norm=grad,
                              tokens_per_second=round(tps, 2) if tps else None, tokens=tokens,
                              eta_s=round(eta, 1) if eta is not None else None, **preference_metrics(logs),
                              **common)
            if not _finite(loss) or (grad is not None and not _finite(grad)):
                self.nan_step = step
                control.should_training_stop = True
                self.writer.write("system", event="nan", step=step, loss=loss, grad_norm=grad)
            else:
                self._watch_divergence(args, state, control, step, loss)
        elif "train_runtime" in logs:
            summary = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k not in common}
            self.writer.write("system", event="train_end", **summary, **common)
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.run.write_status(step=step, max_steps=state.max_steps, eta_s=eta)
        return control

    def _watch_divergence(self, args, state, control, step: int, loss: float) -> None:
        """The divergence guard (ftwizard.monitoring.detect_divergence): the first verdict becomes a
        `divergence` event and a status field; with training.stop_on_divergence the run stops here,
        saving a checkpoint at this step, and its final message says what to change."""
        from ftwizard.monitoring import detect_divergence, divergence_fix

        self.losses.append((step, float(loss)))
        if self.divergence is not None:
            return
        t = self.cfg.training if self.cfg is not None else None
        fix = divergence_fix(t.learning_rate if t else args.learning_rate, t.warmup_ratio if t else None,
                             t.max_grad_norm if t else args.max_grad_norm,
                             self.cfg.model.method if self.cfg is not None else None)
        d = detect_divergence(self.losses, fix=fix)
        if d is None:
            return
        self.divergence = d
        stopping = self.stop_on_divergence and not self.stop_flag.get("requested")
        event = d.to_event()
        self.writer.write("system", **event, stopping=stopping or None)
        self.run.write_status(divergence=event)
        if stopping:
            self.stop_flag.update(requested=True, reason="divergence",
                                  message=f"stopped at step {step} because the loss diverged ({d.reason}); to fix: "
                                          f"{d.fix}")
            control.should_training_stop = True
            control.should_save = True  # saved in this very step (the Trainer saves after logging)
            self.run.write_status(state="stopping", step=step)
            self.writer.write("system", event="stopping", step=step, reason="divergence")

    def on_save(self, args, state, control, **kw):
        self.writer.write("system", event="checkpoint", step=state.global_step,
                          path=os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return True
