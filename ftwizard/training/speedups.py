"""Which optional speed-ups a run uses: padding-free batches, Liger kernels, FlashAttention.

Pure decision logic with no torch import, so the pre-flight check and the wizard can say
what a run will use (and what installing a package would add) without loading anything.
The trainer calls the same `choose_speedups`, so what is reported is what runs.

- Padding-free batches (TRL's `padding_free`): each micro-batch becomes one row whose
  position ids restart at 0 per example, with no attention mask; transformers then builds a
  block-diagonal causal mask (sdpa/eager) or passes sequence boundaries to FlashAttention,
  so examples never attend to each other and no compute is spent on padding. Needs a model
  whose code builds its masks through `transformers.masking_utils` (checked by the trainer
  once the model is loaded: `model_builds_packed_masks`). Nothing to gain at micro-batch 1.
- Liger kernels (`liger-kernel`, CUDA only): fused RMSNorm, SwiGLU and RoPE for the model
  families it patches. Its fused linear cross-entropy is not used: TRL 1.16's SFTTrainer
  already computes the loss through its own chunked LM head and refuses Liger's.
- FlashAttention: `flash_attn_interface` (FA3, Hopper) or `flash_attn` (FA2, Ampere+), in
  bf16/fp16 only. Varlen kernels read the padding-free boundaries directly (no T x T mask).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

# Model types whose modules liger-kernel 0.6+ patches (liger_kernel.transformers.monkey_patch)
LIGER_MODEL_TYPES = frozenset({
    "llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text", "qwen2", "qwen3", "qwen3_moe", "phi3",
    "granite", "olmo2", "glm4", "smollm3",
})
ATTENTIONS_WITH_PACKED_MASKS = frozenset({"sdpa", "eager", "flash_attention_2", "flash_attention_3"})


def installed() -> dict[str, bool]:
    """Which optional packages are importable (found, not imported: cheap and torch-free)."""
    def has(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    return {"liger_kernel": has("liger_kernel"), "flash_attn": has("flash_attn"),
            "flash_attn_interface": has("flash_attn_interface")}


@dataclass(frozen=True)
class Speedups:
    padding_free: bool
    liger: bool
    attention: str  # attn_implementation handed to from_pretrained
    used: list[str] = field(default_factory=list)  # one line per speed-up in use
    not_used: list[str] = field(default_factory=list)  # why each other one is off, and how to get it

    def to_dict(self) -> dict:
        return {"padding_free": self.padding_free, "liger": self.liger, "attention": self.attention,
                "used": list(self.used), "not_used": list(self.not_used)}


def choose_speedups(*, device: str, precision: str, model_type: str, batch_size: int, padding_free: bool = True,
                    packing: bool = False, use_liger: bool = True, use_flash_attention: bool = True,
                    cuda_capability: tuple[int, int] | None = None, have: dict[str, bool] | None = None,
                    trust_remote_code: bool = False) -> Speedups:
    """The speed-ups a run gets. `device` is "cuda" or "cpu"; `precision` the compute dtype name."""
    have = installed() if have is None else have
    used: list[str] = []
    not_used: list[str] = []
    cuda = device == "cuda"

    # Padding-free: structural checks here; the trainer re-checks the loaded model's code.
    pf = False
    if packing:
        not_used.append("padding-free: packing is on (TRL packs into padding-free rows itself)")
    elif not padding_free:
        not_used.append("padding-free: off in the config (data.padding_free: false)")
    elif batch_size < 2:
        not_used.append("padding-free: micro-batch 1 has no padding to remove")
    elif trust_remote_code:
        not_used.append("padding-free: remote model code may build its own attention masks")
    else:
        pf = True
        used.append("padding-free batches (position ids restart per example, no compute on padding)")

    # FlashAttention
    attention = "sdpa"
    sixteen = precision in ("bf16", "fp16")
    cap = cuda_capability or (0, 0)
    if not use_flash_attention:
        not_used.append("FlashAttention: off")
    elif not cuda:
        not_used.append("FlashAttention: CUDA only")
    elif not sixteen:
        not_used.append("FlashAttention: needs bf16 or fp16")
    elif have.get("flash_attn_interface") and cap >= (9, 0):
        attention = "flash_attention_3"
    elif have.get("flash_attn") and cap >= (8, 0):
        attention = "flash_attention_2"
    elif cap < (8, 0):
        not_used.append("FlashAttention: needs compute capability 8.0+ (Ampere or newer)")
    else:
        not_used.append("FlashAttention: not installed (`pip install flash-attn --no-build-isolation`); with "
                        "padding-free batches it drops the T x T mask and repeated K/V of SDPA")
    if attention != "sdpa":
        used.append(f"FlashAttention ({attention})")

    # Liger
    liger = False
    if not use_liger:
        not_used.append("Liger kernels: off")
    elif not cuda:
        not_used.append("Liger kernels: CUDA only")
    elif model_type not in LIGER_MODEL_TYPES:
        not_used.append(f"Liger kernels: no kernels for model type {model_type!r}")
    elif not have.get("liger_kernel"):
        not_used.append("Liger kernels: not installed (`pip install liger-kernel`): fused RMSNorm/SwiGLU/RoPE "
                        "keep fewer activations")
    else:
        liger = True
        used.append("Liger kernels (RMSNorm, SwiGLU, RoPE)")
    return Speedups(pf, liger, attention, used, not_used)


def model_builds_packed_masks(model) -> bool:
    """True when the model's attention masks come from transformers.masking_utils, which turns
    restarting position ids (and no attention mask) into a block-diagonal mask."""
    import sys

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    impl = getattr(base.config, "_attn_implementation", None) or "eager"
    if impl not in ATTENTIONS_WITH_PACKED_MASKS:
        return False
    inner = getattr(base, getattr(base, "base_model_prefix", "model"), base)
    for obj in (inner, base):
        mod = sys.modules.get(type(obj).__module__)
        if mod is not None and (hasattr(mod, "create_causal_mask") or hasattr(mod, "create_sliding_window_causal_mask")):
            return True
    return False
