"""Training time and cost: tokens x FLOPs per token / (peak FLOP/s x utilisation).

FLOPs per token are counted from the shape: a forward pass costs 2 FLOPs per weight of
every matrix multiply (the decoder's Linear layers and the output layer; the embedding
lookup is free) plus causal attention, 2 x seq x (heads x head_dim) per layer. Full
fine-tuning back-propagates into activations and weights (2 more forwards); LoRA still
back-propagates through the frozen weights to reach earlier adapters (1 more forward)
but computes no weight gradients for them; gradient checkpointing recomputes the
forward once more. QLoRA also dequantises every weight on every pass, which measured
implementations put at roughly a third slower: QLORA_SLOWDOWN.

Utilisation (model FLOPs utilisation, MFU) is the one number that cannot be derived;
0.35 is a typical value for single-GPU SFT with bf16 and SDPA, and it is shown and
editable everywhere it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftwizard.hardware.shapes import ModelShape

DEFAULT_UTILIZATION = 0.35
QLORA_SLOWDOWN = 1.3


def forward_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    matmul_params = shape.quantizable_params + shape.vocab * shape.hidden
    attention = 2 * shape.layers * seq_len * shape.heads * shape.head_dim  # causal: half of QK^T + AV
    return 2.0 * matmul_params + attention


def passes(method: str, gradient_checkpointing: bool) -> float:
    """Training cost in forward-pass equivalents."""
    n = 3.0 if method == "full" else 2.0
    return n + (1.0 if gradient_checkpointing else 0.0)


def expected_padded_length(lengths: list[int], batch: int, max_length: int) -> float:
    """Mean padded length of a random micro-batch: E[max of `batch` draws], truncated."""
    xs = sorted(min(x, max_length) for x in lengths if x > 0)
    if not xs:
        return float(max_length)
    n = len(xs)
    total, prev = 0.0, 0.0
    for k, x in enumerate(xs, start=1):
        cdf = (k / n) ** batch
        total += x * (cdf - prev)
        prev = cdf
    return total


@dataclass
class TimeCost:
    tokens: int  # tokens pushed through the model, padding included
    flops: float
    time_s: float | None
    cost: float | None
    utilization: float
    price_per_hour: float | None
    peak_tflops: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def time_and_cost(shape: ModelShape, *, method: str, gradient_checkpointing: bool, seq_len: int, tokens: int,
                  peak_tflops: float | None, n_gpus: int = 1, utilization: float = DEFAULT_UTILIZATION,
                  price_per_hour: float | None = None) -> TimeCost:
    flops = tokens * forward_flops_per_token(shape, seq_len) * passes(method, gradient_checkpointing)
    if not peak_tflops or utilization <= 0:
        return TimeCost(tokens, flops, None, None, utilization, price_per_hour, peak_tflops)
    t = flops / (peak_tflops * 1e12 * utilization * max(1, n_gpus))
    if method == "qlora":
        t *= QLORA_SLOWDOWN
    cost = t / 3600.0 * price_per_hour * max(1, n_gpus) if price_per_hour is not None else None
    return TimeCost(tokens, flops, t, cost, utilization, price_per_hour, peak_tflops)
