"""The one typed run configuration, shared by the CLI, the wizard and the trainer.

A YAML file round-trips through `RunConfig`. Unknown keys are errors (a typo such as
`learnig_rate` would otherwise silently train with the default), and every error names
the file, the field path, what was found and what is allowed. Relative paths in a file
are taken relative to that file's folder, so a config can be moved with its data.
Defaults follow ../shared/GUIDANCE.md ("guidance"): LoRA r=16, alpha=2r, dropout 0.05,
all linear projections, LR 2e-4, cosine, warmup ~5 %, 1-3 epochs, grad norm 1.0.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftwizard.errors import UserError

EMBEDDED = "embedded"
Method = Literal["full", "lora", "qlora"]
DataFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"]
TaskType = Literal["classification", "extraction", "style", "domain", "code", "other"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    base: str = Field(
        EMBEDDED,
        description="Base model: 'embedded' (SmolLM2-135M-Instruct, works offline), a local folder, or a hub id.",
    )
    method: Method = Field("lora", description="full (all weights), lora (adapters), qlora (adapters over a 4-bit NF4 base).")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (only for models you trust).")


class DataSection(_Section):
    train: Path = Field(..., description="Training file: JSONL, JSON, CSV or Parquet.")
    eval: Path | None = Field(None, description="Held-out file, never trained on (10-20 % of the data; guidance).")
    format: DataFormat = Field("auto", description="Row format: auto, messages, sharegpt, alpaca, prompt_completion, text.")
    max_length: int = Field(512, ge=16, le=131072, description="Tokens per example after the chat template; longer rows are truncated.")
    packing: bool = Field(False, description="Pack short examples into full-length sequences (faster on short data).")
    assistant_only_loss: bool = Field(True, description="Count the loss on assistant tokens only (the usual choice for chat data).")
    system_prompt: str | None = Field(None, description="System prompt added to rows without one; use what you will send when serving.")
    task_type: TaskType = Field("other", description="What the data teaches; sets the example-count guidance.")


class LoraSection(_Section):
    r: int = Field(16, ge=1, le=1024, description="Adapter rank: 8-16 to start, 32-128 for rich instruction tasks (guidance).")
    alpha: int = Field(32, ge=1, le=4096, description="Scaling; usually 2 x r (guidance).")
    dropout: float = Field(0.05, ge=0.0, le=0.5, description="Adapter dropout, 0-0.05 (guidance).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules to adapt: all-linear (q, k, v, o, gate, up, down) or a list of names."
    )


class TrainingSection(_Section):
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="LoRA 1e-4 to 2e-4; full fine-tuning ~1e-5 to 2e-5 (guidance).")
    epochs: float = Field(3.0, gt=0, le=100, description="Passes over the data; 1-3, more usually memorises (guidance).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(2, ge=1, le=4096, description="Micro-batch per device.")
    gradient_accumulation: int = Field(8, ge=1, le=1024, description="Micro-batches per optimizer step; effective batch 16-64 (guidance).")
    warmup_ratio: float = Field(0.05, ge=0, le=0.5, description="Share of steps spent warming up the LR, 3-10 % (guidance).")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field("cosine", description="LR decay; cosine is usually best (guidance).")
    weight_decay: float = Field(0.01, ge=0, le=1, description="0.01-0.1 (guidance).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping, ~0.3-1.0 (guidance).")
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"] = Field(
        "adamw_torch", description="Optimizer; the 8-bit ones (GPU only) save memory."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (~30 % slower).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="auto: bf16 where the GPU supports it, else fp16; fp32 on CPU.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when there is one.")
    seed: int = Field(42, description="Seed for weights, dropout and data order; the same seed gives the same run.")
    log_every: int = Field(1, ge=1, description="Log metrics every N optimizer steps.")
    eval_every: int = Field(50, ge=0, description="Evaluate on the eval file every N steps (0: only at the end).")
    save_every: int = Field(50, ge=0, description="Save a checkpoint every N steps (0: only at the end); stop and resume use them.")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints (None keeps all).")


class RunConfig(_Section):
    """Everything needed to start (or reproduce) one training run."""

    name: str | None = Field(None, description="Run name; the run folder is <runs_dir>/<name>. Empty: method and time.")
    runs_dir: Path = Field(Path("runs"), description="Folder holding run folders.")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    lora: LoraSection = Field(default_factory=LoraSection)
    training: TrainingSection = Field(default_factory=TrainingSection)

    @model_validator(mode="after")
    def _check_name(self) -> "RunConfig":
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ValueError(f"run name {self.name!r} must be a plain folder name (no '/', not starting with '.')")
        return self

    # ---- YAML round trip -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: Path) -> None:
        from ftwizard.fileio import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())

    def resolved(self, base_dir: Path) -> "RunConfig":
        """A copy whose relative paths are made absolute against `base_dir`."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = Path(p).expanduser()
            return p if p.is_absolute() else (base_dir / p).resolve()

        data = self.data.model_copy(update={"train": fix(self.data.train), "eval": fix(self.data.eval)})
        model = self.model
        base = Path(self.model.base).expanduser()
        if self.model.base != EMBEDDED and not base.is_absolute() and (base_dir / base).is_dir():
            model = self.model.model_copy(update={"base": str((base_dir / base).resolve())})
        return self.model_copy(update={"data": data, "model": model, "runs_dir": fix(self.runs_dir)})


def _describe_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    cur: Any = model
    for part in loc[:-1]:
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            return []
        cur = field.annotation
    return list(getattr(cur, "model_fields", {}).keys())


def validation_message(err: ValidationError, source: str) -> UserError:
    """Turn pydantic's errors into one readable message: field path, found, allowed."""
    lines = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        path = _describe_loc(loc)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(RunConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"{path}: unknown key{hint}; allowed here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"{path}: required but missing")
        else:
            found = e.get("input")
            found_s = repr(found) if not isinstance(found, dict) else "a mapping"
            lines.append(f"{path}: found {found_s}; {e['msg'][0].lower()}{e['msg'][1:]}")
    return UserError(
        "invalid config:\n    " + "\n    ".join(lines),
        where=source,
        fix="edit the field(s) above; `ftwizard init -o example.yaml` writes a commented example",
    )


def config_from_dict(data: Any, source: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    if not isinstance(data, dict):
        raise UserError(
            f"config must be a YAML mapping (key: value lines), found {type(data).__name__}",
            where=source,
            fix="`ftwizard init -o example.yaml` writes a commented example",
        )
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise validation_message(e, source) from None
    return cfg.resolved(base_dir) if base_dir is not None else cfg


def load_config(path: Path | str) -> RunConfig:
    """Read and validate a YAML config; relative paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}", fix="check the path, or run `ftwizard init -o config.yaml`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"config is not UTF-8 text (byte {e.start})", where=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"config is not valid YAML: {problem}", where=where, fix="fix the YAML syntax at that line") from None
    return config_from_dict(data, source=str(path), base_dir=path.resolve().parent)


def commented_yaml(cfg: RunConfig) -> str:
    """The config as YAML with each field's description as a comment above it."""
    out = [
        "# ftwizard run config. Check it with `ftwizard check`, train with `ftwizard train`.",
        "# Relative paths are relative to this file's folder.",
    ]
    data = cfg.to_dict()

    def emit(model: type[BaseModel], values: dict, indent: str) -> None:
        for key, field in model.model_fields.items():
            value = values[key]
            sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
            if sub is not None:
                out.append("")
                out.append(f"{indent}{key}:")
                emit(sub, value, indent + "  ")
                continue
            if field.description:
                out.append(f"{indent}# {field.description}")
            dumped = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")
            out.extend(indent + line for line in dumped.splitlines())

    emit(RunConfig, data, "")
    return "\n".join(out) + "\n"


def default_config(train: Path, eval_file: Path | None = None, **overrides: Any) -> RunConfig:
    cfg = RunConfig(data=DataSection(train=train, eval=eval_file))
    return cfg.model_copy(update=overrides) if overrides else cfg


def tune_for_sample_task(cfg: RunConfig) -> RunConfig:
    """Settings that make the bundled sample task (support tickets to JSON) learn on a CPU in minutes.

    50 optimizer steps of 8 rows: enough updates for a 135M model to learn the labels, not
    only the JSON shape (with 25 steps of 16 it learned the format but guessed "medium" for
    most urgencies). 4e-4 is inside the general 1e-5..5e-4 range and safe at this size;
    the pre-flight check notes it as info. Used by `ftwizard init` and the wizard alike.
    """
    cfg.data.max_length = 256
    cfg.data.task_type = "extraction"
    cfg.training.epochs = 1
    cfg.training.learning_rate = 4e-4
    cfg.training.gradient_accumulation = 4
    cfg.training.eval_every = 25
    cfg.training.save_every = 25
    return cfg
