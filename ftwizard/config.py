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
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ftwizard.errors import UserError

EMBEDDED = "embedded"
Method = Literal["full", "lora", "qlora"]
DataFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "kto"]
TaskType = Literal["classification", "extraction", "style", "domain", "code", "math", "other"]
Objective = Literal["sft", "dpo", "orpo", "kto"]
PREFERENCE_OBJECTIVES = ("dpo", "orpo", "kto")
# The loss types TRL 1.16's DPOConfig accepts (trl/trainer/dpo_config.py), less 'sft' (that is training.objective: sft)
DpoLossType = Literal["sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
                      "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm"]

# Default learning rates per objective and method (docs/preference.md has the sources): preference
# objectives train an order of magnitude below SFT. DPO: Zephyr (Tunstall et al. 2023) full 5e-7, the
# alignment-handbook's QLoRA recipe and TRL's docs 5e-6 with LoRA; ORPO: its paper (Hong et al. 2024) 8e-6 with
# full fine-tuning, and the same with LoRA is the alignment-handbook's ORPO choice; KTO: its paper and TRL's
# docs 5e-7..5e-6 (full 5e-7, LoRA 5e-6).
PREFERENCE_LR = {
    ("dpo", "full"): 5e-7, ("dpo", "lora"): 5e-6, ("dpo", "qlora"): 5e-6,
    ("orpo", "full"): 8e-6, ("orpo", "lora"): 8e-6, ("orpo", "qlora"): 8e-6,
    ("kto", "full"): 5e-7, ("kto", "lora"): 5e-6, ("kto", "qlora"): 5e-6,
}
SFT_LR = 2e-4  # guidance: LoRA 1e-4 to 2e-4 (the field's default, for every method as before)


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
    format: DataFormat = Field("auto", description="Row format: auto, messages, sharegpt, alpaca, prompt_completion, text; "
                               "preference (prompt/chosen/rejected) and kto (prompt/completion/label) for the "
                               "preference objectives.")
    max_length: int = Field(512, ge=16, le=131072, description="Tokens per example after the chat template; longer rows are truncated.")
    packing: bool = Field(False, description="Pack short examples into full-length sequences (faster on short data).")
    padding_free: bool = Field(True, description="Join each micro-batch into one row without padding; examples still never see each other (same loss, less compute).")
    assistant_only_loss: bool = Field(True, description="Count the loss on assistant tokens only (the usual choice for chat data).")
    system_prompt: str | None = Field(None, description="System prompt added to rows without one; use what you will send when serving.")
    task_type: TaskType = Field("other", description="What the data teaches; sets the example-count guidance "
                                "(math: answers end in a final number, scored by final-answer accuracy).")
    chat_template: str = Field("auto", description="Chat template for chat rows: auto (the model's own; ChatML "
                               "when it has none, as base models), chatml, llama3, gemma, mistral, alpaca, or a path "
                               "to a .jinja file. Missing special tokens are added and their embedding rows train; "
                               "the template is saved with the tuned model. Plain text rows need none.")

    @field_validator("chat_template")
    @classmethod
    def _check_chat_template(cls, v: str) -> str:
        from ftwizard.data.chat_templates import check_choice

        return check_choice(v)


class LoraSection(_Section):
    r: int = Field(16, ge=1, le=1024, description="Adapter rank: 8-16 to start, 32-128 for rich instruction tasks (guidance).")
    alpha: int = Field(32, ge=1, le=4096, description="Scaling; usually 2 x r (guidance).")
    dropout: float = Field(0.05, ge=0.0, le=0.5, description="Adapter dropout, 0-0.05 (guidance).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules to adapt: all-linear (q, k, v, o, gate, up, down) or a list of names."
    )


class TrainingSection(_Section):
    objective: Objective = Field("sft", description="What the run optimises: sft (imitate the answers), dpo (prefer "
                                 "chosen over rejected, against a frozen reference), orpo (SFT + an odds-ratio "
                                 "preference term, no reference), kto (single answers labelled good or bad). "
                                 "Preference objectives need preference data; see docs/preference.md.")
    learning_rate: float = Field(SFT_LR, gt=0, lt=1, description="SFT: LoRA 1e-4 to 2e-4, full ~1e-5 to 2e-5 (guidance). "
                                 "DPO/KTO/ORPO train ~10-100x lower (LoRA ~5e-6, full ~5e-7); left out, the default "
                                 "follows training.objective and model.method.")
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
    stop_on_divergence: bool = Field(False, description="Stop the run, saving a checkpoint, when the loss diverges (well "
                                     "above where it started, or rising over a window of steps); off: a warning only.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list, description="Experiment trackers to copy the metrics to (tensorboard, wandb, mlflow, "
        "trackio); the run folder stays the record. Each needs its package: pip install 'ftwizard[tracking]'.")
    tracking_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: trackers write only under runs/NAME/tracking/ (no network); online: to the "
        "tracker's server as its own settings say (wandb login, MLFLOW_TRACKING_URI, TRACKIO_SPACE_ID).")


class PreferenceSection(_Section):
    """The preference objectives' own settings (training.objective dpo, orpo or kto); SFT ignores them."""

    beta: float = Field(0.1, gt=0, le=10, description="DPO/KTO: how far the model may move from the reference "
                        "(higher stays closer; 0.1 is TRL's and the papers' default, 0.01-0.5 usual). ORPO: the "
                        "weight lambda of the odds-ratio term (0.1 in the ORPO paper).")
    loss_type: DpoLossType = Field("sigmoid", description="DPO only: sigmoid (the DPO paper), ipo (beta is IPO's tau), "
                                   "hinge, robust (with label_smoothing), and TRL's other variants.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="DPO only, for loss_type robust (or exo_pair): "
                                   "the assumed share of flipped preference labels, 0.1 typical for robust DPO; 0: off.")
    desirable_weight: float = Field(1.0, gt=0, le=100, description="KTO only: weight of the desirable (good) "
                                    "examples; set so desirable_weight x n_good / (undesirable_weight x n_bad) is "
                                    "1 to 4/3 (KTO paper).")
    undesirable_weight: float = Field(1.0, gt=0, le=100, description="KTO only: weight of the undesirable (bad) "
                                      "examples.")
    reference: Literal["auto", "precomputed"] = Field(
        "auto", description="DPO/KTO's frozen reference (ORPO has none). auto: with LoRA/QLoRA the base with the "
        "adapter switched off (no second copy); with full fine-tuning a frozen copy of the starting weights. "
        "precomputed: the reference's log-probs are computed once before training, so full fine-tuning holds no copy "
        "(one extra pass over the data).")


NotifyEvent = Literal["completed", "failed", "divergence", "stopped"]


class NotifySection(_Section):
    url: str | None = Field(
        None, description="Webhook or ntfy URL the trainer POSTs to when a run ends (env FTWIZARD_NOTIFY_URL also "
        "works and keeps a secret URL out of this file). Empty: terminal notifications only.")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: ["completed", "failed", "divergence", "stopped"],
        description="Which endings notify: completed, failed, divergence, stopped.")


class JudgeSection(_Section):
    """An LLM judge through any OpenAI-compatible endpoint (ftwizard.evaluation.judge); off without a URL."""

    url: str | None = Field(None, description="Judge endpoint, OpenAI-compatible, ending in /v1 (vLLM, Ollama, llama.cpp "
                            "server, `ftwizard serve`, a hosted API); empty: $FTWIZARD_JUDGE_URL, else no judge.")
    model: str | None = Field(None, description="Judge model name there; empty: $FTWIZARD_JUDGE_MODEL, else the "
                              "endpoint's first model.")
    api_key_env: str = Field("FTWIZARD_JUDGE_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name of "
                             "the environment variable holding the API key; the key itself never goes in a config, "
                             "the run folder or a log.")
    mode: Literal["pairwise", "rubric", "both"] = Field("both", description="pairwise: base vs tuned, asked in both "
                                                        "orders to cancel position bias; rubric: a 1-5 score each.")
    rubric: str | None = Field(None, description="What a good answer does (rubric scores); empty: correct, complete, "
                               "in the reference's format. Saved with the results in eval/judge.json.")
    max_samples: int = Field(30, ge=1, le=2000, description="Held-out rows judged (pairwise: 2 calls a row; rubric: "
                             "1 call per model and row).")
    max_tokens: int = Field(256, ge=4, le=8192, description="Longest judge reply (room to reason before the verdict).")


class EvaluationSection(_Section):
    metric: str | None = Field(None, description="Primary metric for verdicts and the best checkpoint (e.g. "
                               "answer_accuracy, macro_f1, rouge_l, chrf, exact_match); empty: chosen from the task.")
    scorer: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="Your own per-row "
                               "scorer, 'module:function' (module beside this file), called as function(prediction, "
                               "reference) -> 0..1; it becomes the primary metric unless metric says otherwise.")
    few_shot: int = Field(3, ge=0, le=16, description="Also score the base model with this many training rows as "
                          "examples in the prompt (the 'base + k-shot' row); 0: off.")
    judge: JudgeSection = Field(default_factory=JudgeSection, description="LLM judge (off unless a URL is set).")
    preference_generation: bool = Field(False, description="Held-out preference pairs: also generate answers and "
                                        "score them against the chosen answer (ROUGE-L, chrF, your scorer) and run the "
                                        "regression probe; slower. Off: preference accuracy and reward margin only.")


class RunConfig(_Section):
    """Everything needed to start (or reproduce) one training run."""

    name: str | None = Field(None, description="Run name; the run folder is <runs_dir>/<name>. Empty: method and time.")
    runs_dir: Path = Field(Path("runs"), description="Folder holding run folders.")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    lora: LoraSection = Field(default_factory=LoraSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    preference: PreferenceSection = Field(default_factory=PreferenceSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    notify: NotifySection = Field(default_factory=NotifySection)

    @field_validator("name")
    @classmethod
    def _check_name(cls, n: str | None) -> str | None:
        if n is not None and (not n or "/" in n or "\\" in n or "\x00" in n or n.startswith(".") or len(n) > 100
                              or n != n.strip()):
            raise ValueError("a run name must be a plain folder name: 1-100 characters, no '/' or '\\', "
                             "not starting with '.', no leading or trailing spaces")
        return n

    @model_validator(mode="after")
    def _objective_defaults(self) -> "RunConfig":
        """The one place a preference objective's defaults and limits apply: a learning rate the user left
        out follows the objective and method (default_learning_rate); packing is SFT only."""
        t = self.training
        if t.objective in PREFERENCE_OBJECTIVES:
            if "learning_rate" not in t.model_fields_set:
                object.__setattr__(t, "learning_rate", default_learning_rate(t.objective, self.model.method))
            if self.data.packing:
                raise ValueError(f"data.packing is for SFT only; {t.objective.upper()} scores each chosen and "
                                 "rejected answer as a whole: set data.packing: false")
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
        from ftwizard.data.chat_templates import is_path_choice

        if is_path_choice(self.data.chat_template):  # a .jinja file, relative to the config like the data
            data = data.model_copy(update={"chat_template": str(fix(Path(self.data.chat_template)))})
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


def _found(value: Any) -> str:
    """What was found, in the user's words (no Python type names)."""
    if isinstance(value, dict):
        return "a mapping (key: value lines)"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (an empty value)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(err: ValidationError, source: str, labels: dict[str, str] | None = None) -> UserError:
    """Turn pydantic's errors into one readable message: field path, found, allowed.

    `labels` maps a field path ("training.max_steps") to where its value came from on the
    command line ("--max-steps"); when every error is such a value, the exit code is 2.
    """
    labels = labels or {}
    lines = []
    from_cli = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        path = _describe_loc(loc)
        label = labels.get(path)
        from_cli.append(label is not None)
        shown = f"{label} ({path})" if label else path
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(RunConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"{shown}: unknown key{hint}; allowed here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"{shown}: required but missing")
        else:
            msg = re.sub(r" for <class '[\w.]+'>", "", e["msg"].removeprefix("Value error, "))
            lines.append(f"{shown}: found {_found(e.get('input'))}; {msg[0].lower()}{msg[1:]}")
    cli = bool(from_cli) and all(from_cli)
    return UserError(
        ("invalid value on the command line:\n    " if cli else "invalid config:\n    ") + "\n    ".join(lines),
        where=("command line " + ", ".join(sorted(set(l for l in labels.values())))) if cli else source,
        fix="change the value(s) above" + ("" if cli else "; `ftwizard init -o example.yaml` writes a commented example"),
        code=2 if cli else 1,
    )


def config_from_dict(data: Any, source: str = "<config>", base_dir: Path | None = None,
                     labels: dict[str, str] | None = None) -> RunConfig:
    if not isinstance(data, dict):
        raise UserError(
            f"config must be a YAML mapping (key: value lines), found {_found(data)}",
            where=source,
            fix="`ftwizard init -o example.yaml` writes a commented example",
        )
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise validation_message(e, source, labels) from None
    return cfg.resolved(base_dir) if base_dir is not None else cfg


MAX_CONFIG_BYTES = 1 << 20  # a run config is a few kB; anything this big is the wrong file


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # reported by the base class
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (first on line {seen[key].line + 1}); "
                    "YAML would silently keep only the last one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_config_data(path: Path | str) -> Any:
    """The parsed YAML of a config file, with every way of not being one reported with its place."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}", where=str(path),
                        fix="check the path, or run `ftwizard init -o config.yaml`") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError("the config path is a folder, not a file", where=str(path),
                        fix="pass the YAML file inside it (ftwizard init writes ftwizard.yaml)")
    if not stat.S_ISREG(st.st_mode):
        raise UserError("the config path is not a regular file (a pipe or device?)", where=str(path),
                        fix="pass a YAML file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise UserError(f"the config is {st.st_size:,} bytes; a run config is a few kB", where=str(path),
                        fix="check that this is the YAML config (data goes in data.train, not in the config)")
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[:2] == b"\x1f\x8b":
        kind = "gzip-compressed" if raw[:2] == b"\x1f\x8b" else "UTF-16 text"
        raise UserError(f"config is {kind}, not UTF-8 YAML", where=str(path), fix="save it as UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"config is not UTF-8 text (byte {e.start})", where=f"{path}:{line}",
                        fix="save it as UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        raise UserError("config is nested too deeply to read (thousands of levels)", where=str(path),
                        fix="a run config has three levels; `ftwizard init -o example.yaml` writes one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"config is not valid YAML: {problem}", where=where, fix="fix the YAML at that line") from None


def set_dotted(data: dict, key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", making the sections on the way."""
    parts = key.split(".")
    cur = data
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    cur[parts[-1]] = value


def parse_set_args(items: list[str] | None, option: str = "--set") -> dict[str, tuple[str, Any]]:
    """`--set training.learning_rate=1e-4` items as load_config overrides; values are read as YAML
    (1e-4 a number, true a bool, [q_proj, v_proj] a list). A malformed item is a usage error."""
    from ftwizard.errors import UsageError

    out: dict[str, tuple[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r} is not KEY=VALUE", where=f"command line {option}",
                             fix=f"for example {option} training.learning_rate=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = (f"{option} {key.strip()}", value)
    return out


def load_config(path: Path | str, overrides: dict[str, tuple[str, Any]] | None = None) -> RunConfig:
    """Read and validate a YAML config; relative paths resolve against its folder.

    `overrides` maps a field path to (its command-line option, value), e.g.
    {"training.max_steps": ("--max-steps", 5)}: they are written into the file's data and
    go through the same validation, so a bad value gets the same clear message (exit 2).
    None values are not overrides.
    """
    path = Path(path)
    data = read_config_data(path)
    labels = {}
    if overrides and isinstance(data, dict):
        for key, (option, value) in overrides.items():
            if value is None:
                continue
            set_dotted(data, key, value)
            labels[key] = option
    return config_from_dict(data, source=str(path), base_dir=path.resolve().parent, labels=labels)


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


def default_learning_rate(objective: str, method: str) -> float:
    """The learning rate a run starts from when the config leaves it out: SFT's guidance default, or the
    preference objective's own (an order or two lower; PREFERENCE_LR names the sources)."""
    return PREFERENCE_LR.get((objective, method), SFT_LR)


# The preference.* fields each objective reads (the wizard shows only these; the others are ignored by that run).
OBJECTIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": (),
    "dpo": ("beta", "loss_type", "label_smoothing", "reference"),
    "orpo": ("beta",),
    "kto": ("beta", "desirable_weight", "undesirable_weight", "reference"),
}


def objective_fields(objective: str) -> tuple[str, ...]:
    """The `preference.*` field names that `objective` uses."""
    return OBJECTIVE_FIELDS.get(objective, ())


def objective_defaults(objective: str, method: str) -> dict[str, Any]:
    """What changes when a run switches to `objective` (dotted field path -> value): today the learning rate
    (default_learning_rate). The wizard applies it when the user picks an objective."""
    return {"training.learning_rate": default_learning_rate(objective, method)}


def default_config(train: Path, eval_file: Path | None = None, **overrides: Any) -> RunConfig:
    cfg = RunConfig(data=DataSection(train=train, eval=eval_file))
    return cfg.model_copy(update=overrides) if overrides else cfg


def starting_config(train: Path | None = None, eval_file: Path | None = None, *, method: str | None = None,
                    base: str | None = None, objective: str | None = None) -> RunConfig:
    """The one default config: `ftwizard init` writes it and the wizard opened without a config starts from it.

    No training file: the bundled sample task (train + held-out file) with `tune_for_sample_task`,
    the demo that learns on a CPU in minutes. A user's own file keeps the guidance defaults."""
    from ftwizard.paths import sample_data_dir

    sample = train is None
    preference = bool(objective) and objective != "sft"
    if sample:
        folder = sample_data_dir()
        # a preference objective starts from the bundled preference pairs (sample_data/preference_*.jsonl)
        stem = "preference_" if preference and (folder / "preference_train.jsonl").is_file() else ""
        train = folder / f"{stem}train.jsonl"
        if eval_file is None and (folder / f"{stem}eval.jsonl").is_file():
            eval_file = folder / f"{stem}eval.jsonl"
    cfg = default_config(Path(train), Path(eval_file) if eval_file is not None else None)
    if method or base:
        cfg.model = cfg.model.model_copy(update={k: v for k, v in {"method": method, "base": base}.items() if v})
    if sample and not preference:
        tune_for_sample_task(cfg)
    if preference:
        # through validation, so the objective's learning-rate default (RunConfig._objective_defaults) applies
        data = cfg.to_dict()
        data["training"]["objective"] = objective
        data["training"].pop("learning_rate", None)
        cfg = RunConfig.model_validate(data)
    return cfg


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
