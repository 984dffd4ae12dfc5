"""What to serve: a run's final model, one of its checkpoints, its merged export, or the
base model alone. Light (no torch): the CLI and the wizard resolve a target, with a clear
error when it does not exist, before any process starts.

The target carries the system prompt the run trained with (the config's, else the one
every training row shares), so chat and the server talk to the model the way it learned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ftwizard.errors import UserError

BASE_ID = "base"


@dataclass
class ServeTarget:
    name: str                 # the model id clients use for the tuned model
    base: str                 # config's model.base ('embedded', folder or hub id)
    method: str               # lora, qlora or full
    kind: str                 # 'adapter' (PEFT folder on the base), 'full' (a model folder) or 'base'
    path: str | None          # the adapter or model folder; None for the base
    label: str                # final, checkpoint-N, merged, base
    system_prompt: str | None
    trust_remote_code: bool = False
    device: str = "auto"
    run: str | None = None

    @property
    def model_ids(self) -> list[str]:
        """Ids /v1/models lists: the tuned model, then the base (adapter disabled, or a second load for full)."""
        return [self.name] if self.kind == "base" else [self.name, BASE_ID]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeTarget":
        return cls(**json.loads(text))


def _kind_of(folder: Path) -> str | None:
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "full"
    return None


def _checkpoint_folder(run, ref: str) -> tuple[Path, str]:
    from ftwizard.evaluation.launch import best_checkpoint_by_loss, checkpoint_steps

    steps = checkpoint_steps(run)
    have = ", ".join(f"{s}" for s, _ in steps) or "none"
    if ref == "best":
        if not steps:
            raise UserError(f"run {run.name} has no checkpoints", where=str(run.checkpoints),
                            fix="serve the final model (leave out --checkpoint)")
        best = best_checkpoint_by_loss(run, [s for s, _ in steps])
        step, path = next(((s, p) for s, p in steps if s == best), steps[-1])
        return path, f"checkpoint-{step}"
    tail = ref.removeprefix("checkpoint-")
    if not tail.isdigit():
        raise UserError(f"--checkpoint {ref!r} is not a checkpoint", where="--checkpoint",
                        fix="use final, best, merged, a step number (saved steps: " + have + ") or a folder")
    for s, p in steps:
        if s == int(tail):
            return p, f"checkpoint-{s}"
    raise UserError(f"run {run.name} has no checkpoint at step {tail}", where=str(run.checkpoints),
                    fix=f"saved steps: {have}")


def resolve_target(ref: str, runs_dir: Path, checkpoint: str | None = None, base_only: bool = False) -> ServeTarget:
    """The model behind `ftwizard serve/chat REF [--checkpoint C] [--base]`; REF is a run or a config YAML."""
    from ftwizard.evaluation.launch import resolve_target as resolve_run_or_config
    from ftwizard.export.source import RunSource

    cfg, run = resolve_run_or_config(ref, runs_dir)
    system_prompt = RunSource(run, cfg).training_system_prompt()  # type: ignore[arg-type]
    common = dict(base=cfg.model.base, method=cfg.model.method, system_prompt=system_prompt,
                  trust_remote_code=cfg.model.trust_remote_code, device=cfg.training.device,
                  run=str(run.path) if run else None)
    if base_only or run is None:
        if checkpoint:
            raise UserError("--checkpoint needs a run (a config YAML or --base serves the base model)",
                            where="--checkpoint", fix="pass a run name, or drop --checkpoint")
        return ServeTarget(name=BASE_ID, kind="base", path=None, label="base", **common)
    ck = (checkpoint or "final").strip()
    if ck == "final":
        folder = run.model if cfg.model.method == "full" else run.adapter
        label = "final"
        if _kind_of(folder) is None:
            from ftwizard.evaluation.launch import checkpoint_steps

            steps = [s for s, _ in checkpoint_steps(run)]
            raise UserError(f"run {run.name} has no final model yet", where=str(folder),
                            fix=(f"serve a checkpoint with --checkpoint {steps[-1]} (saved: {', '.join(map(str, steps))})"
                                 if steps else "let the training finish (`ftwizard monitor " + run.name + "`)"))
    elif ck == "merged":
        folder, label = run.export_dir / "merged", "merged"
        if _kind_of(folder) != "full":
            raise UserError(f"run {run.name} has no merged export", where=str(folder),
                            fix=f"make it with `ftwizard export {run.name} --format merged`")
    elif Path(ck).expanduser().is_dir():
        folder, label = Path(ck).expanduser().resolve(), Path(ck).name
    else:
        folder, label = _checkpoint_folder(run, ck)
    kind = _kind_of(folder)
    if kind is None:
        raise UserError(f"no model in {folder}", where="--checkpoint",
                        fix="a folder with adapter_config.json (LoRA/QLoRA) or config.json (a whole model)")
    return ServeTarget(name=run.name, kind=kind, path=str(folder), label=label, **common)


def servable_runs(runs_dir: Path) -> list[Path]:
    """Run folders with a final model (adapter/ or model/), newest first: what the Try step offers."""
    from ftwizard.rundir import list_runs

    out = []
    for s in list_runs(Path(runs_dir)):
        p = Path(runs_dir) / s.name
        if _kind_of(p / "adapter") == "adapter" or _kind_of(p / "model") == "full":
            out.append(p)
    return out


def base_target(cfg) -> ServeTarget:
    """The base model of a config alone (the Try step before any run has finished)."""
    from ftwizard.export.source import RunSource

    return ServeTarget(name=BASE_ID, base=cfg.model.base, method=cfg.model.method, kind="base", path=None,
                       label="base", system_prompt=RunSource(None, cfg).training_system_prompt(),  # type: ignore[arg-type]
                       trust_remote_code=cfg.model.trust_remote_code, device=cfg.training.device)
