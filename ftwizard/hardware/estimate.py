"""The public estimate: peak memory in parts, a verdict against a GPU, advice, time, cost.

`estimate(EstimateInput) -> Estimate` is what the wizard calls on every keystroke and
what the pre-flight check calls before a run: pure arithmetic (no torch, no
transformers), well under 5 ms once the model shape is known. `Estimate.to_dict()` is
the documented, stable JSON of `ftwizard estimate --json` (schema "ftwizard.estimate/1"):

    schema           "ftwizard.estimate/1"
    model            {name, source, hub_id, total_params, trainable_params, hidden, layers, ...}
    settings         the inputs after defaults were resolved (method, seq_len used, ...)
    total_bytes      peak bytes per GPU (int)
    parts            {part name: bytes}, in a fixed order, summing to total_bytes
    peak_phase       "backward" or "optimizer_step"
    gpu              {name, memory_bytes, source: "detected"|"catalog"|"user"} or null
    verdict          "fits" | "tight" | "does_not_fit" | "unknown" (no GPU to compare with)
    headroom_bytes   GPU memory minus total (null without a GPU)
    advice           [{change, settings, total_bytes, verdict}], best first
    cheapest_gpu     the lowest-priced GPU of the table on which this run fits
                     {name, memory_bytes, price_per_hour, total_bytes, cost}, or null
    tokens           tokens processed in training (padding included), or null
    time_s, cost     seconds and USD for the whole run, or null
    utilization, price_per_hour, flops, peak_tflops
    notes            list of short strings (assumptions that matter for this estimate)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ftwizard.hardware import catalog as _catalog
from ftwizard.hardware.memory import MemorySettings, training_memory
from ftwizard.hardware.shapes import ALL_LINEAR, ModelShape, resolve_shape
from ftwizard.hardware.throughput import DEFAULT_UTILIZATION, expected_padded_length, time_and_cost

SCHEMA = "ftwizard.estimate/1"
TIGHT_FRACTION = 0.90  # above 90 % of the GPU's memory a run is "tight": fragmentation and spikes bite
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "paged_adamw32bit", "sgd")
_CONFIG_OPTIMIZER = {
    "adamw_torch": "adamw",
    "adamw_8bit": "adamw8bit",
    "paged_adamw_8bit": "paged_adamw8bit",
    "paged_adamw_32bit": "paged_adamw32bit",
    "sgd": "sgd",
}


@dataclass(frozen=True)
class GpuTarget:
    """The GPU an estimate is judged against: detected, from the catalog, or user-given."""

    name: str
    memory_bytes: int
    peak_tflops: float | None = None
    price_per_hour: float | None = None
    supports_bf16: bool = True
    source: str = "catalog"

    @classmethod
    def from_spec(cls, spec: _catalog.GpuSpec, source: str = "catalog") -> "GpuTarget":
        return cls(spec.name, spec.memory_bytes, spec.peak_tflops, spec.price_per_hour, spec.supports_bf16, source)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EstimateInput:
    model: str | ModelShape = "embedded"
    method: str = "lora"
    max_length: int = 512
    lengths: tuple[int, ...] | None = None  # per-example token counts of the training data
    micro_batch: int = 1
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    lora_r: int = 16
    lora_targets: str | tuple[str, ...] = ALL_LINEAR
    lora_dropout: float = 0.05
    n_gpus: int = 1
    strategy: str = "ddp"
    gpu: GpuTarget | str | None = None  # a catalog name, a GpuTarget (detected), or None
    train_tokens: int | None = None  # total tokens of one epoch when lengths are unknown
    rows: int | None = None
    epochs: float = 1.0
    utilization: float = DEFAULT_UTILIZATION
    price_per_hour: float | None = None  # overrides the GPU's price
    packing: bool = False
    # Padding-free batches (the trainer's default, data.padding_free): no compute on padding;
    # under SDPA the micro-batch's block-diagonal mask is (b x seq)^2 per layer.
    padding_free: bool = True
    # QLoRA as the trainer builds it: non-4-bit weights in the compute dtype. True models
    # peft's prepare_model_for_kbit_training (fp32 weights and residual stream).
    kbit_fp32_rest: bool = False
    liger: bool = False  # Liger RMSNorm/SwiGLU kernels (liger-kernel installed, CUDA)
    attention: str = "sdpa"  # or flash_attention_2 / flash_attention_3 (flash-attn installed)
    fused_lm_head: bool = True  # TRL's chunked LM head (the trainer); False: a plain loop with full logits
    device: str = "cuda"  # "cpu": a CPU run (precision fp32, no CUDA context)
    template_tokens: int = 0  # chat-template tokens whose embedding rows train (data.chat_template on a base)
    objective: str = "sft"  # training.objective: sft | dpo | orpo | kto (memory.py says what each holds)
    reference: str = "auto"  # preference.reference: auto | precomputed

    def with_changes(self, **kw: Any) -> "EstimateInput":
        return replace(self, **kw)


@dataclass
class Estimate:
    input: EstimateInput
    shape: ModelShape
    total_bytes: int
    parts: dict[str, int]
    peak_phase: str
    gpu: GpuTarget | None
    verdict: str
    seq_len: int
    precision: str
    trainable_params: int
    total_params: int
    tokens: int | None = None
    time_s: float | None = None
    cost: float | None = None
    flops: float | None = None
    price_per_hour: float | None = None
    advice: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cheapest_gpu: dict | None = None

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.gpu is None else self.gpu.memory_bytes - self.total_bytes

    def to_dict(self) -> dict:
        i = self.input
        s = self.shape
        return {
            "schema": SCHEMA,
            "model": {
                "name": s.name, "source": s.source, "hub_id": s.hub_id, "model_type": s.model_type,
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "hidden": s.hidden, "layers": s.layers, "heads": s.heads, "kv_heads": s.kv_heads,
                "head_dim": s.head_dim, "intermediate": s.intermediate, "vocab": s.vocab, "tied": s.tied,
            },
            "settings": {
                "method": i.method, "max_length": i.max_length, "seq_len": self.seq_len,
                "micro_batch": i.micro_batch, "grad_accum": i.grad_accum,
                "gradient_checkpointing": i.gradient_checkpointing, "optimizer": i.optimizer,
                "precision": self.precision, "lora_r": i.lora_r,
                "lora_targets": i.lora_targets if isinstance(i.lora_targets, str) else list(i.lora_targets),
                "lora_dropout": i.lora_dropout, "n_gpus": i.n_gpus, "strategy": i.strategy,
                "epochs": i.epochs, "packing": i.packing, "padding_free": i.padding_free, "liger": i.liger,
                "attention": i.attention, "fused_lm_head": i.fused_lm_head, "kbit_fp32_rest": i.kbit_fp32_rest,
                "template_tokens": i.template_tokens,
            },
            "total_bytes": self.total_bytes,
            "parts": dict(self.parts),
            "peak_phase": self.peak_phase,
            "gpu": self.gpu.to_dict() if self.gpu else None,
            "verdict": self.verdict,
            "headroom_bytes": self.headroom_bytes,
            "advice": list(self.advice),
            "cheapest_gpu": self.cheapest_gpu,
            "tokens": self.tokens,
            "time_s": self.time_s,
            "cost": self.cost,
            "flops": self.flops,
            "utilization": i.utilization,
            "price_per_hour": self.price_per_hour,
            "peak_tflops": self.gpu.peak_tflops if self.gpu else None,
            "notes": list(self.notes),
        }


def resolve_gpu(gpu: GpuTarget | str | None) -> GpuTarget | None:
    if gpu is None or isinstance(gpu, GpuTarget):
        return gpu
    from ftwizard.errors import UserError

    spec = _catalog.lookup(gpu)
    if spec is None:
        raise UserError(f"unknown GPU {gpu!r}", fix="one of: " + ", ".join(_catalog.names())
                        + f" (or add it to {_catalog.overrides_path()})")
    return GpuTarget.from_spec(spec, "catalog")


def verdict_for(total: int, gpu: GpuTarget | None) -> str:
    if gpu is None or gpu.memory_bytes <= 0:
        return "unknown"
    if total <= TIGHT_FRACTION * gpu.memory_bytes:
        return "fits"
    if total <= gpu.memory_bytes:
        return "tight"
    return "does_not_fit"


def _validate(inp: EstimateInput) -> None:
    from ftwizard.errors import UserError

    if inp.method not in METHODS:
        raise UserError(f"unknown method {inp.method!r}", fix="full, lora or qlora")
    if inp.optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {inp.optimizer!r}", fix=", ".join(OPTIMIZERS))
    if inp.strategy not in ("ddp", "fsdp"):
        raise UserError(f"unknown strategy {inp.strategy!r}", fix="ddp or fsdp")
    for name in ("max_length", "micro_batch", "grad_accum", "n_gpus", "lora_r"):
        if int(getattr(inp, name)) < 1:
            raise UserError(f"{name} must be at least 1, got {getattr(inp, name)}")
    if not 0 < inp.utilization <= 1:
        raise UserError(f"utilization must be between 0 and 1, got {inp.utilization}")
    if inp.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise UserError(f"unknown precision {inp.precision!r}", fix="auto, bf16, fp16 or fp32")


def memory_seq_len(inp: EstimateInput) -> int:
    """The sequence length of the longest micro-batch, which sets the peak."""
    if inp.packing:
        return inp.max_length
    if inp.lengths:
        return max(1, min(inp.max_length, max(inp.lengths)))
    return inp.max_length


def memory_only(inp: EstimateInput, shape: ModelShape | None = None, gpu: GpuTarget | None = None):
    """Just the memory breakdown (used by advice; no time, no advice)."""
    shape = shape or (inp.model if isinstance(inp.model, ModelShape) else resolve_shape(inp.model))
    precision = inp.precision
    if precision == "auto":
        precision = "fp32" if inp.device == "cpu" else "bf16" if (gpu is None or gpu.supports_bf16) else "fp16"
    targets = inp.lora_targets if isinstance(inp.lora_targets, str) else tuple(inp.lora_targets)
    settings = MemorySettings(
        method=inp.method, seq_len=memory_seq_len(inp), micro_batch=inp.micro_batch, grad_accum=inp.grad_accum,
        gradient_checkpointing=inp.gradient_checkpointing, optimizer=inp.optimizer, precision=precision,
        lora_r=inp.lora_r, lora_targets=targets, lora_dropout=inp.lora_dropout, n_gpus=inp.n_gpus,
        strategy=inp.strategy, padded=False if inp.packing else None, kbit_fp32_rest=inp.kbit_fp32_rest,
        device="cpu" if inp.device == "cpu" else "cuda", fused_lm_head=inp.fused_lm_head,
        padding_free=inp.padding_free and not inp.packing, liger=inp.liger, attention=inp.attention,
        template_tokens=inp.template_tokens, objective=inp.objective, reference=inp.reference,
    )
    return training_memory(shape, settings), precision, settings.seq_len


def estimate(inp: EstimateInput, *, with_advice: bool = True) -> Estimate:
    _validate(inp)
    shape = inp.model if isinstance(inp.model, ModelShape) else resolve_shape(inp.model)
    gpu = resolve_gpu(inp.gpu)
    mem, precision, seq = memory_only(inp, shape, gpu)
    total = mem.total_bytes
    notes = list(mem.notes)
    if inp.lengths:
        xs = sorted(inp.lengths)
        p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
        over = sum(1 for x in xs if x > inp.max_length)
        notes.append(f"data: {len(xs)} rows, p99 {p99} tokens, longest {xs[-1]}; peak uses the longest batch ({seq})")
        if over:
            notes.append(f"{over} rows ({100 * over / len(xs):.1f} %) are longer than max_length {inp.max_length} and get truncated")
    if inp.precision == "auto":
        why = "training on this CPU" if inp.device == "cpu" else "GPU supports bf16" if precision == "bf16" \
            else "no bf16 on this GPU"
        notes.append(f"precision {precision} ({why})")
    if inp.method == "full":
        notes.append("full fine-tuning keeps fp32 master weights under 16-bit autocast (mixed precision)")
    if inp.method == "qlora" and inp.kbit_fp32_rest:
        lora_total = memory_only(inp.with_changes(method="lora"), shape, gpu)[0].total_bytes
        if lora_total <= total:
            notes.append("QLoRA needs more memory than LoRA here: its fp32 residual stream and MLP activations "
                         "(prepare_model_for_kbit_training) outweigh the 4-bit weights of a small model")

    # Time and cost
    tokens = None
    if inp.lengths:
        rows = len(inp.lengths)
        per_row = inp.max_length if inp.packing else expected_padded_length(list(inp.lengths), inp.micro_batch, inp.max_length)
        if inp.packing or (inp.padding_free and inp.micro_batch > 1):  # no compute spent on padding
            tokens = int(sum(min(x, inp.max_length) for x in inp.lengths) * inp.epochs)
        else:
            tokens = round(rows * per_row * inp.epochs)
    elif inp.train_tokens:
        tokens = int(inp.train_tokens * inp.epochs)
    elif inp.rows:
        tokens = int(inp.rows * inp.max_length * inp.epochs)
        notes.append("token count assumed: rows x max_length (give --data for real counts)")
    price = inp.price_per_hour if inp.price_per_hour is not None else (gpu.price_per_hour if gpu else None)
    tc = None
    factor = OBJECTIVE_COMPUTE.get(inp.objective, 1.0)
    if tokens and factor != 1.0:
        notes.append(f"{inp.objective.upper()} computes ~{factor:.2g}x an SFT step per row (its extra forwards)")
    if tokens:
        tc = time_and_cost(shape, method=inp.method, gradient_checkpointing=inp.gradient_checkpointing,
                           seq_len=seq, tokens=round(tokens * factor), peak_tflops=gpu.peak_tflops if gpu else None,
                           n_gpus=inp.n_gpus, utilization=inp.utilization, price_per_hour=price)
    est = Estimate(
        input=inp, shape=shape, total_bytes=total, parts=mem.parts, peak_phase=mem.peak_phase, gpu=gpu,
        verdict=verdict_for(total, gpu), seq_len=seq, precision=precision,
        trainable_params=mem.trainable_params, total_params=mem.total_params,
        tokens=tokens, time_s=tc.time_s if tc else None, cost=tc.cost if tc else None,
        flops=tc.flops if tc else None, price_per_hour=price, notes=notes,
    )
    if with_advice and gpu is not None and est.verdict != "fits":
        from ftwizard.hardware.fit import advise

        est.advice = advise(inp, shape, gpu)
    if with_advice and (gpu is None or est.verdict != "fits"):
        est.cheapest_gpu = _cheapest(inp, shape, tokens)
    return est


# Compute per training row against SFT's (forward + backward = 3 forward units per sequence): DPO runs the policy
# forward and backward on chosen and rejected (2 x 3) and the reference forward on both (2 x 1): 8/3. ORPO: 2 x 3,
# no reference: 2. KTO: the policy on the completion (3), its KL completion without gradients (1) and the reference
# on both (2): 2. (A precomputed reference moves DPO's/KTO's reference forwards before training; same total.)
OBJECTIVE_COMPUTE = {"sft": 1.0, "dpo": 8 / 3, "orpo": 2.0, "kto": 2.0}

RENTAL_SETUP_HOURS = 0.25  # ~15 min billed per rented run besides training (boot, downloads, saving)


def _cheapest(inp: EstimateInput, shape: ModelShape, tokens: int | None) -> dict | None:
    """The lowest-priced catalog GPU on which this run fits, with its cost (for renting)."""
    best = None
    if inp.device == "cpu":  # planning a rental from a CPU machine: on the GPU it trains as a GPU run does
        inp = inp.with_changes(device="cuda")
    for spec in _catalog.catalog():
        # NVIDIA only: the training stack (bitsandbytes, CUDA kernels) assumes it
        if spec.price_per_hour is None or spec.vendor != "nvidia":
            continue
        g = GpuTarget.from_spec(spec)
        mem, _, seq = memory_only(inp, shape, g)
        if verdict_for(mem.total_bytes, g) != "fits":
            continue
        cost = None
        if tokens:
            tc = time_and_cost(shape, method=inp.method, gradient_checkpointing=inp.gradient_checkpointing,
                               seq_len=seq, tokens=tokens, peak_tflops=g.peak_tflops, n_gpus=inp.n_gpus,
                               utilization=inp.utilization, price_per_hour=g.price_per_hour)
            cost = tc.cost
        # What renting it really costs: the run plus the setup billed around it (start, model download,
        # saving), so a short run goes to the lowest hourly price and only a long one to a faster GPU.
        billed = (cost or 0.0) + g.price_per_hour * inp.n_gpus * RENTAL_SETUP_HOURS
        key = (billed, g.price_per_hour)
        if best is None or key < best[0]:
            best = (key, {"name": g.name, "memory_bytes": g.memory_bytes, "price_per_hour": g.price_per_hour,
                          "total_bytes": mem.total_bytes, "cost": cost})
    return best[1] if best else None


def estimate_for_config(cfg, gpu: GpuTarget | str | None = None, lengths: list[int] | None = None,
                        n_gpus: int = 1, strategy: str = "ddp", **overrides: Any) -> Estimate:
    """Estimate for a `ftwizard.config.RunConfig` (what `ftwizard train` would run)."""
    t = cfg.training
    precision = t.precision if t.precision != "auto" else "auto"
    targets = cfg.lora.target_modules if isinstance(cfg.lora.target_modules, str) else tuple(cfg.lora.target_modules)
    inp = EstimateInput(
        model=cfg.model.base, method=cfg.model.method, max_length=cfg.data.max_length,
        lengths=tuple(int(x) for x in lengths) if lengths is not None and len(lengths) else None, micro_batch=t.batch_size, grad_accum=t.gradient_accumulation,
        gradient_checkpointing=t.gradient_checkpointing, optimizer=_CONFIG_OPTIMIZER.get(t.optimizer, "adamw"),
        precision=precision, lora_r=cfg.lora.r, lora_targets=targets, lora_dropout=cfg.lora.dropout,
        n_gpus=n_gpus, strategy=strategy, gpu=gpu, epochs=t.epochs, packing=cfg.data.packing,
        padding_free=getattr(cfg.data, "padding_free", True),
        template_tokens=_template_tokens(cfg), objective=t.objective, reference=cfg.preference.reference,
    )
    if "liger" not in overrides and "attention" not in overrides:
        inp = inp.with_changes(**_installed_speedups(cfg, inp))
    if overrides:
        inp = inp.with_changes(**overrides)
    return estimate(inp)


def _template_tokens(cfg) -> int:
    """The chat-template tokens whose rows the run trains (data.chat_template; files only, no transformers)."""
    from ftwizard.data.chat_templates import trained_token_count

    try:
        return trained_token_count(cfg.model.base, getattr(cfg.data, "chat_template", "auto"), cfg.data.train,
                                   cfg.data.format)
    except Exception:  # noqa: BLE001 - an unreadable model folder or data file is reported by the check itself
        return 0


def _installed_speedups(cfg, inp: EstimateInput) -> dict:
    """Liger and FlashAttention as the trainer would use them on a GPU, from what is installed here."""
    from ftwizard.training.speedups import choose_speedups

    if inp.device == "cpu":
        return {}
    try:
        model_type = resolve_shape(inp.model).model_type if isinstance(inp.model, str) else inp.model.model_type
    except Exception:  # noqa: BLE001 - an unknown model is reported by estimate() itself
        return {}
    sp = choose_speedups(device="cuda", precision="fp16" if inp.precision == "fp16" else "bf16", model_type=model_type,
                         batch_size=inp.micro_batch, padding_free=inp.padding_free, packing=inp.packing,
                         cuda_capability=(9, 0))
    return {"liger": sp.liger, "attention": sp.attention}


def speedup_savings(inp: EstimateInput) -> list[dict]:
    """What each speed-up not in use would save on this run's peak memory (bytes), for the
    pre-flight's "installing X would save Y" line: [{name, package, saves_bytes}]."""
    base = memory_only(inp)[0].total_bytes
    out = []
    if not inp.liger:
        out.append({"name": "Liger kernels", "package": "liger-kernel",
                    "saves_bytes": base - memory_only(inp.with_changes(liger=True))[0].total_bytes})
    if inp.attention not in ("flash_attention_2", "flash_attention_3"):
        out.append({"name": "FlashAttention", "package": "flash-attn",
                    "saves_bytes": base - memory_only(inp.with_changes(attention="flash_attention_2"))[0].total_bytes})
    return out
