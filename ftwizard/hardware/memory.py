"""Peak per-GPU training memory, in named parts.

Rules of thumb ("7B LoRA ~18 GB", guidance) ignore sequence length, batch, logits,
optimizer and checkpointing, and are off by large factors. This model instead counts
what PyTorch actually holds at the peak of a training step, for the setup ftwizard's
trainer uses (transformers + peft, SDPA attention, bf16/fp16 autocast):

* weights: full fine-tuning keeps fp32 master weights and runs under bf16/fp16 autocast
  (standard mixed precision; the only correct choice with fp16), and autocast keeps a
  16-bit copy of every Linear weight alive from forward until backward has used it.
  LoRA keeps the frozen base in the compute dtype; QLoRA stores the Linear layers of the
  decoder in NF4 (0.5 B/param) plus quantisation constants (one fp32 absmax per 64
  weights, or with double quantisation one 8-bit absmax per 64 plus one fp32 per 256
  blocks); peft's `prepare_model_for_kbit_training` (which the trainer calls) then
  used to upcast everything else (embeddings, output layer, norms) to fp32, which also
  made the residual stream and the MLP intermediates fp32 (bitsandbytes returns its
  output in the input's dtype). The trainer no longer calls it: the rest stays in the
  compute dtype (`kbit_fp32_rest=False`, the default; True models the old way).
* LoRA adapters: fp32 (peft's default), bf16 for QLoRA (what TRL does).
* gradients in the dtype of the trainable parameters; AdamW keeps two states in the
  parameter dtype (8 B/param for fp32), 8-bit AdamW two bytes plus one fp32 absmax per
  256-value block; paged variants take the same bytes when resident.
* activations: the tensors autograd saves for backward in one decoder layer, counted
  op by op (RMSNorm saves an fp32 copy of its input; SDPA saves q, k, v, the output
  and the fp32 log-sum-exp; SiLU and the gating product save three intermediate-sized
  tensors; a frozen Linear saves nothing, a trainable one its input; each LoRA adapter
  saves a 16-bit copy of its input and, with dropout, the dropout mask). This was
  checked byte-for-byte against `torch.autograd.graph.saved_tensors_hooks` on CPU
  (tests/test_estimate_activations.py). With gradient checkpointing a layer keeps only
  its input and one layer is recomputed at a time.
* logits and loss: TRL 1.16's SFTTrainer (what the trainer runs) never builds the full
  logits: its chunked LM head projects 4096-token x 32768-vocab tiles and keeps fp32
  per-token statistics; backward holds one tile, the fp32 gradient of the hidden states
  and the trained positions' hidden states (`fused_lm_head=True`). A plain loop that
  calls `model(labels=...)` (the probe, `fused_lm_head=False`) holds the fp32
  log-softmax output, its incoming and its outgoing gradient at the start of backward:
  12 bytes per token per vocab entry, large with 128k-256k vocabularies (in full
  fine-tuning, the output layer's weight gradient that follows can be larger).
* padding-free batches join a micro-batch into one row of b x seq tokens: under SDPA or
  eager attention the block-diagonal mask is a (b x seq)^2 bias per layer and K/V are
  repeated to all heads; FlashAttention's varlen kernels need neither.
* Liger kernels: RMSNorm saves its input in its own dtype (no fp32 copy) and the fused
  SwiGLU saves only the gate and up projections (not the activation's output).
* a backward workspace for one layer, the CUDA context (outside PyTorch's allocator),
  cuBLAS workspaces, and allocator overhead (reserved minus allocated).

The peak is the larger of two moments: the start of backward (activations and logits
alive) and the optimizer step (all gradients plus optimizer temporaries). Per GPU:
DDP replicates everything; FSDP shards weights, gradients and optimizer states but
gathers one layer's full weights at a time (a rough model of FSDP's own buffers); DDP
also keeps its gradient buckets, a second copy of the gradients.

Preference objectives (TRL's DPOTrainer, KTOTrainer, ORPOTrainer; `objective`):
* DPO and ORPO put chosen and rejected through the policy together: one micro-batch of b
  pairs is 2b padded sequences of activations and LM-head buffers (padding-free is off:
  TRL 1.16's DPO falls back to padding). ORPO's (experimental) trainer builds the full
  logits rather than TRL's chunked head.
* The reference forward (DPO, KTO) runs under no_grad before the policy's: it keeps no
  activations, so it adds nothing at the backward peak (its transient forward is smaller).
  With LoRA/QLoRA the reference is the base with the adapter switched off: no memory.
  Full fine-tuning holds a frozen copy of the weights in the compute dtype
  (`reference_model`), unless `reference="precomputed"` (log-probs computed once first).
* KTO adds a KL batch (each prompt with another row's completion): a no_grad policy
  forward and a reference forward, transient like the reference's; its activations are
  those of b sequences. ORPO has no reference at all.

Pure arithmetic, no torch import: the wizard re-estimates on every keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ftwizard.hardware.shapes import ALL_LINEAR, ModelShape

MIB = 1024**2
GIB = 1024**3

# Constants that only a GPU can calibrate; bench/memory_accuracy.py reports the error
# they leave. Kept together so a measured correction is one edit.
CALIBRATION = {
    "cuda_context_bytes": 500 * MIB,  # driver context + kernels; not in torch's allocator
    "cublas_workspace_bytes": 64 * MIB,  # cuBLAS + cuBLASLt workspaces (through the allocator)
    "allocator_overhead": 0.06,  # reserved/allocated - 1 at the peak (fragmentation, rounding)
    "nf4_blocksize": 64,
    "nf4_dq_blocksize": 256,
    "adam8bit_blocksize": 256,
    # With gradient checkpointing, is the backward peak the recomputed layer PLUS the
    # logits/loss buffers ("sum", today's model) or the larger of the two ("max": the loss
    # buffers are freed before the last layer is recomputed)? bench/gpu_kit.py reports both.
    "checkpointed_backward_peak": "sum",
}
FUSED_HEAD_TOKENS = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
FUSED_HEAD_VOCAB = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
FLASH_ATTENTIONS = ("flash_attention_2", "flash_attention_3")

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemorySettings:
    method: str = "lora"  # full | lora | qlora
    seq_len: int = 512
    micro_batch: int = 1
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"  # adamw | adamw8bit | paged_adamw8bit | paged_adamw32bit | sgd
    precision: str = "bf16"  # compute dtype: bf16 | fp16 | fp32
    lora_r: int = 16
    lora_targets: str | tuple[str, ...] = ALL_LINEAR
    lora_dropout: float = 0.05
    n_gpus: int = 1
    strategy: str = "ddp"  # ddp | fsdp
    padded: bool | None = None  # batches padded to a common length (a mask goes to attention); None: micro_batch > 1
    double_quant: bool = True
    kbit_fp32_rest: bool = False  # QLoRA: True models peft's prepare_model_for_kbit_training fp32 upcast
    device: str = "cuda"  # cuda | cpu (dropout masks and context differ)
    fused_lm_head: bool = True  # TRL's chunked LM head (the trainer); False: full logits (a plain loop)
    padding_free: bool = False  # the micro-batch joined into one row (position ids restart per example)
    liger: bool = False  # Liger RMSNorm + SwiGLU kernels
    attention: str = "sdpa"  # sdpa | eager | flash_attention_2 | flash_attention_3
    template_tokens: int = 0  # chat-template tokens whose embedding rows train (a base without a template)
    objective: str = "sft"  # sft | dpo | orpo | kto (training.objective)
    reference: str = "auto"  # preference.reference: auto (full: a frozen copy) | precomputed (no copy)


@dataclass
class MemoryBreakdown:
    parts: dict[str, int]
    peak_phase: str  # "backward" | "optimizer_step"
    trainable_params: int
    total_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.parts.values())


def _opt_state_bytes(optimizer: str, n: int, param_bytes: int) -> tuple[int, int]:
    """(persistent state bytes, transient bytes during step) for n trainable params."""
    bs = CALIBRATION["adam8bit_blocksize"]
    if optimizer in ("adamw", "adamw_torch", "paged_adamw32bit", "paged_adamw_32bit"):
        # torch AdamW (foreach) holds exp_avg and exp_avg_sq; the step builds one
        # temporary of the same size (sqrt of the second moment).
        return 2 * n * param_bytes, n * param_bytes
    if optimizer in ("adamw8bit", "adamw_8bit", "paged_adamw8bit", "paged_adamw_8bit"):
        # bitsandbytes blockwise 8-bit: 1 B per state value + an fp32 absmax per block;
        # the fused update kernel needs no full-size temporary.
        return 2 * n + 2 * 4 * -(-n // bs), 0
    if optimizer == "sgd":
        return 0, 0
    raise ValueError(f"unknown optimizer {optimizer!r}")


def layer_activation_bytes(shape: ModelShape, s: MemorySettings, *, trainable_base: bool, res: int, p: int,
                           autocast: bool, mask: bool, mlp: int | None = None) -> int:
    """Bytes autograd saves in one decoder layer per micro-batch (b x seq tokens)."""
    h, i = shape.hidden, shape.intermediate
    q, kvd = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    tok = s.micro_batch * s.seq_len
    per_tok = 0
    const = 0  # bytes per layer that do not grow with tokens
    gemma = shape.model_type.startswith("gemma")
    # RMSNorm: an fp32 copy of the input and the rsqrt per row; when its weight trains,
    # the normalised value too (in the input's dtype; Gemma's norm works in fp32 and
    # also keeps 1 + weight in fp32).
    norm_train = (4 if gemma else res) if trainable_base else 0
    norm_saved = res * h if s.liger else 4 * h  # Liger keeps the input as is; HF's norm an fp32 copy
    per_tok += shape.norms_per_layer * (norm_saved + 4 + norm_train * h)
    const += shape.norms_per_layer * 4 * h if gemma else 0
    if shape.qk_norm:  # RMSNorm over head_dim on the 16-bit q and k projections
        qk_train = (4 if gemma else p) if trainable_base else 0
        per_tok += (4 + qk_train) * (q + kvd) + 4 * (shape.heads + shape.kv_heads)
        const += 2 * 4 * shape.head_dim if gemma else 0
    # Inputs of trainable Linear layers (the fp32 norm output is cast to 16 bit once per call).
    if trainable_base:
        calls_attn = (1 if shape.fused else 3) if (autocast and res == 4) else 1
        calls_mlp = (1 if shape.fused else 2) if (autocast and res == 4) else 1
        per_tok += calls_attn * p * h + calls_mlp * p * h + p * i  # qkv input, gate/up input, down input
        # o_proj's input shares storage with the SDPA output when rotary embedding kept
        # the (batch, seq, heads, dim) layout; Phi-3's partial-rotary concatenation does
        # not, so there the output is copied.
        if shape.fused:
            per_tok += p * q
    # Attention. With a padding mask (or head_dim > 256) K and V are repeated to all heads.
    flash = s.attention in FLASH_ATTENTIONS
    if flash:
        mask = False  # varlen kernels take sequence boundaries, not a mask
    kv_eff = q if (mask or shape.head_dim > 256) and not flash else kvd
    if shape.attention == "eager" and not flash:
        # scores, soft-capped scores, fp32 softmax and its 16-bit cast, per head per key
        per_tok += p * (q + 2 * kv_eff) + p * q + shape.heads * s.seq_len * (p + p + 4 + p)
    else:
        per_tok += p * (2 * q + 2 * kv_eff) + 4 * shape.heads
    # Gated MLP: activation input, activation output, up projection (fp32 when the
    # projections hand back fp32, as bitsandbytes does for an fp32 residual stream).
    per_tok += (2 if s.liger else 3) * (mlp or p) * i  # Liger's SwiGLU recomputes the activation
    # LoRA adapters on the chosen modules.
    if s.method in ("lora", "qlora"):
        per_tok += _lora_saved_per_token(shape, s, res=res, p=p, autocast=autocast, mlp=mlp or p)
    total = per_tok * tok + const
    if mask and shape.attention != "eager":
        # bool mask converted to a float bias per call, padded to 16 columns (efficient-attention kernel)
        total += s.micro_batch * s.seq_len * (-(-s.seq_len // 16) * 16) * p
    return total


def _lora_saved_per_token(shape: ModelShape, s: MemorySettings, *, res: int, p: int, autocast: bool, mlp: int) -> int:
    """What the LoRA branches save per token in one layer.

    lora_A keeps its input. peft first casts the input to the adapter dtype, dropout
    makes a new tensor, and autocast casts to 16 bit: if any of these copies, every
    adapter keeps its own copy; if none does (fp32 adapters in fp32 training, or 16-bit
    adapters on a 16-bit input without dropout) the adapters share the original input,
    which is counted once, or not at all where autograd already keeps it (o_proj's
    input is the SDPA output). lora_B keeps lora_A's r-wide output. Dropout keeps a
    mask: a bool on CUDA, the scaled noise in the adapter dtype on CPU.
    """
    adapter_b = 2 if (s.method == "qlora" and autocast) else 4  # TRL casts QLoRA adapters to bf16
    saved_b = p if autocast else adapter_b
    mask_b = 1 if s.device == "cuda" else adapter_b
    q = shape.heads * shape.head_dim
    group_of = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "qkv_proj": "attn", "o_proj": "o",
                "gate_proj": "mlp", "up_proj": "mlp", "gate_up_proj": "mlp", "down_proj": "down"}
    in_bytes = {"attn": res, "o": p, "mlp": res, "down": mlp}
    already_saved = {"o": not shape.fused}  # the SDPA output; Phi-3 copies it first
    counted: set[str] = set()
    total = 0
    for name, n_in, _ in shape.lora_targets(s.lora_targets):
        g = group_of.get(name, name)
        in_b = in_bytes.get(g, p)
        copies = in_b != adapter_b or s.lora_dropout > 0 or (autocast and adapter_b != p)
        if copies:
            total += saved_b * n_in
        elif g not in counted and not already_saved.get(g, False):
            total += in_b * n_in
        counted.add(g)
        total += saved_b * s.lora_r
        if s.lora_dropout > 0:
            total += mask_b * n_in
    return total


def fused_head_bytes(shape: ModelShape, s: MemorySettings, tok: int, *, res: int, p: int, trainable_head: bool) -> int:
    """What TRL's chunked LM head holds at the start of backward (trl/kernels/chunked_logprob.py).

    Forward keeps the trained positions' hidden states (a compact copy on CUDA) and ~8 fp32
    values per token; backward adds one projection tile in the compute dtype, the fp32
    gradient of the hidden states, its cast back to the hidden dtype, and, when the output
    layer trains, an fp32 weight gradient. The CPU path (no Triton) folds a tile in torch,
    with ~16 fp32 temporaries of the tile's size alive at once (measured with torch.profiler:
    1.10 GB above the inputs for 512 tokens x 49,152 vocab, fp32)."""
    h = shape.hidden
    tile = min(tok, FUSED_HEAD_TOKENS) * min(shape.vocab, FUSED_HEAD_VOCAB)
    total = tok * 32 + tile * p + tok * h * 4 + (tok * h * res if res != 4 else 0)
    total += tok * h * res if s.device == "cuda" else 0  # hidden_states[mask]
    if s.device != "cuda":
        total += tile * 16 * 4
    if res == 4 and p != 4:  # fp32 hidden states cast to the compute dtype per token chunk
        total += min(tok, FUSED_HEAD_TOKENS) * h * p
    if trainable_head:
        total += shape.vocab * h * 4 + (FUSED_HEAD_VOCAB * h * p if p != 4 else 0)
    return total


def template_token_bytes(shape: ModelShape, s: MemorySettings, p: int) -> tuple[int, int]:
    """(always held, held at the start of backward) for training the rows of `s.template_tokens` chat-template
    tokens (ftwizard.models.vocab; a base model given a template).

    Full fine-tuning: the new rows are ordinary weights (fp32 weight, gradient, two Adam states). LoRA/QLoRA,
    peft's trainable tokens: per row and matrix (the embedding, and the output layer unless tied) an fp32
    trainable copy, its original, gradient and two Adam states (20 B per value); and, because TRL's chunked
    LM head multiplies by the output layer's weight as peft presents it (the base weight with the trained rows
    written in, a full vocab x hidden copy in the weight dtype, kept for backward), backward builds that whole
    weight's gradient in fp32 and casts it to the weight dtype (no copy when that is fp32) before peft keeps the
    trained rows: 8 bytes per vocabulary entry and hidden unit in fp32 or 16 bit, on top of the peak. Measured
    on the CPU (SmolLM2-135M, LoRA, fp32, TRL's fused head; hardware.measure.cpu_peak_tensor_bytes): +216.6 MiB
    against 49,152 x 576 x 8 B = 216.0 MiB. (peft's modules_to_save on the embedding and output layer instead
    would hold full fp32 copies with gradients and Adam states: ~20 B per value, for the whole vocabulary.)"""
    n = s.template_tokens
    if n <= 0:
        return 0, 0
    mats = 1 if shape.tied else 2
    if s.method == "full":
        return n * shape.hidden * mats * 16, 0
    vocab = shape.vocab + n
    return n * shape.hidden * mats * 20, vocab * shape.hidden * (p + 4 + (p if p != 4 else 0))


def training_memory(shape: ModelShape, s: MemorySettings) -> MemoryBreakdown:
    """Peak memory of one GPU during training, in parts that add up to the total."""
    if s.method not in ("full", "lora", "qlora"):
        raise ValueError(f"unknown method {s.method!r}")
    pref_notes: list[str] = []
    if s.objective in ("dpo", "orpo"):
        # chosen and rejected of each pair go through the policy as one padded batch of 2b sequences
        s = replace(s, micro_batch=2 * s.micro_batch, padding_free=False, padded=True,
                    fused_lm_head=s.fused_lm_head and s.objective == "dpo")
        pref_notes.append(f"{s.objective.upper()}: chosen and rejected together, {s.micro_batch} sequences per "
                          "micro-batch" + ("; ORPO's trainer builds full logits" if s.objective == "orpo" else ""))
    elif s.objective == "kto":
        s = replace(s, padding_free=False)
        pref_notes.append("KTO: the KL batch and the reference run without gradients (no activations kept)")
    if s.padding_free and s.micro_batch > 1:
        # one row of b x seq tokens; SDPA/eager get a block-diagonal mask over all of it
        s = replace(s, micro_batch=1, seq_len=s.micro_batch * s.seq_len, padding_free=False,
                    padded=s.attention not in FLASH_ATTENTIONS)
    p = DTYPE_BYTES[s.precision]
    autocast = s.precision != "fp32"
    n_total = shape.total_params
    n_lm = shape.total_params - shape.extra_params
    notes: list[str] = []
    shard = s.n_gpus if (s.strategy == "fsdp" and s.n_gpus > 1) else 1
    mask = s.padded if s.padded is not None else s.micro_batch > 1
    tok = s.micro_batch * s.seq_len

    parts: dict[str, int] = {}
    frozen_copy = s.objective in ("dpo", "kto") and s.method == "full" and s.reference != "precomputed"
    # the frozen reference copy TRL loads for full fine-tuning, in the compute dtype (the trainer asks for it)
    parts["reference_model"] = (n_total * p) // shard if frozen_copy else 0
    if frozen_copy:
        pref_notes.append("full fine-tuning holds a frozen reference copy of the weights")
    elif s.objective in ("dpo", "kto"):
        pref_notes.append("reference: " + ("log-probs precomputed before training" if s.reference == "precomputed"
                                           else "the base with the adapter off (no copy)"))
    notes.extend(pref_notes)
    if s.method == "full":
        w_bytes = 4  # fp32 master weights under autocast (mixed precision), or plain fp32
        res = 4
        trainable = n_lm
        parts["weights"] = (n_lm * w_bytes) // shard + shape.extra_params * p
        parts["lora_adapters"] = 0
        grad_bytes = 4
        # autocast's 16-bit copies of each Linear weight (and the output layer), held until backward
        linear = shape.layers * shape.linear_weight_params_per_layer + shape.vocab * shape.hidden
        weight_copies = linear * p if autocast else 0
        if shard > 1:  # FSDP gathers one layer (and the output layer) at a time
            weight_copies = (shape.layer_params + shape.vocab * shape.hidden) * (p + 4)
    else:
        base_b = p if autocast else 4
        res = base_b
        if s.method == "lora":
            base = n_total * base_b
        else:
            bsz, dq = CALIBRATION["nf4_blocksize"], CALIBRATION["nf4_dq_blocksize"]
            nq = shape.quantizable_params
            blocks = -(-nq // bsz)
            consts = blocks * 1 + -(-blocks // dq) * 4 if s.double_quant else blocks * 4
            rest_b = 4 if s.kbit_fp32_rest else base_b
            if s.kbit_fp32_rest:
                res = 4
            base = nq // 2 + consts + (n_total - nq) * rest_b
        trainable = shape.lora_params(s.lora_r, s.lora_targets)
        # peft keeps adapters in fp32; for a quantised base TRL casts them to bf16.
        adapter_b = 2 if (s.method == "qlora" and autocast) else 4
        parts["weights"] = base // shard
        parts["lora_adapters"] = trainable * adapter_b
        grad_bytes = adapter_b
        w_bytes = adapter_b
        # autocast's 16-bit copies of fp32 adapters
        weight_copies = trainable * p if (autocast and adapter_b == 4) else 0

    opt_state, opt_tmp = _opt_state_bytes(s.optimizer, trainable, w_bytes if s.method == "full" else grad_bytes)
    grads = trainable * grad_bytes
    parts["gradients"] = grads // shard
    parts["optimizer_states"] = opt_state // shard
    # DDP (gradient_as_bucket_view off, the default) keeps a second, flat copy of every
    # gradient in its all-reduce buckets for the whole run.
    parts["ddp_gradient_buckets"] = grads if (s.n_gpus > 1 and s.strategy == "ddp") else 0
    if s.optimizer.startswith("paged"):
        notes.append("paged optimizer states can spill to CPU memory under pressure (slower, but no OOM)")

    trainable_base = s.method == "full"
    mlp = 4 if (s.method == "qlora" and res == 4) else p
    per_layer = layer_activation_bytes(shape, s, trainable_base=trainable_base, res=res, p=p,
                                       autocast=autocast, mask=mask, mlp=mlp)
    h = shape.hidden
    # Outside the layers: final norm, the output layer's input when it trains, labels.
    outside = tok * (4 * h + 4 + (res * h + p * h if trainable_base else 0) + 8)
    if s.gradient_checkpointing:
        acts = shape.layers * tok * res * h + per_layer + outside
    else:
        acts = shape.layers * per_layer + outside
    if s.fused_lm_head:
        logits = fused_head_bytes(shape, s, tok, res=res, p=p, trainable_head=trainable_base)
    else:
        logits = tok * shape.vocab * 12
    if trainable_base and not s.fused_lm_head:
        # Right after the loss, the output layer's weight gradient appears: computed in 16
        # bit under autocast and accumulated into the fp32 .grad (both briefly alive),
        # beside the 16-bit gradient of the logits. For small batches this moment, not
        # the fp32 loss, is the larger one.
        logits = max(logits, tok * shape.vocab * p + shape.vocab * shape.hidden * (p + 4))
    # Backward workspace for one layer: gradients of the MLP intermediates and of the
    # hidden states (fp32 inside RMSNorm's backward).
    workspace = tok * (3 * mlp * shape.intermediate + 16 * h) + CALIBRATION["cublas_workspace_bytes"]
    if s.method == "qlora":  # one Linear dequantised to 16 bit at a time
        workspace += max(i * o for _, i, o, _ in shape.linear_modules()) * p

    grads_during_backward = parts["gradients"] if s.grad_accum > 1 else 0
    if s.gradient_checkpointing and CALIBRATION["checkpointed_backward_peak"] == "max":
        # the loss buffers are gone before the last layer is recomputed: the larger one sets the peak
        recomputed = per_layer
        acts -= recomputed
        logits = max(logits, recomputed)
    rows_small, rows_backward = template_token_bytes(shape, s, p)
    if rows_small or rows_backward:
        notes.append(f"{s.template_tokens} chat-template token rows train: "
                     + ("the output layer's merged weight and its gradient at the start of backward"
                        if rows_backward else "their new embedding rows"))
    backward_peak = weight_copies + acts + logits + grads_during_backward + rows_backward
    step_peak = parts["gradients"] - grads_during_backward + opt_tmp // shard
    if backward_peak >= step_peak:
        phase = "backward"
        parts["autocast_weight_copies"] = weight_copies
        parts["activations"] = acts
        parts["logits_and_loss"] = logits
        parts["template_token_rows"] = rows_small + rows_backward
        if not grads_during_backward:
            parts["gradients"] = 0  # set to None after each step; built during backward
            notes.append("gradients are built as activations are freed, after this peak")
        parts["optimizer_step_temporaries"] = 0
    else:
        phase = "optimizer_step"
        parts["autocast_weight_copies"] = 0
        parts["activations"] = 0
        parts["logits_and_loss"] = 0
        parts["optimizer_step_temporaries"] = opt_tmp // shard
        parts["template_token_rows"] = rows_small
    parts["backward_workspace"] = workspace if phase == "backward" else CALIBRATION["cublas_workspace_bytes"]
    allocated = sum(parts.values())
    parts["allocator_overhead"] = int(allocated * CALIBRATION["allocator_overhead"])
    parts["cuda_context"] = CALIBRATION["cuda_context_bytes"] if s.device == "cuda" else 0
    if s.device != "cuda":
        parts["backward_workspace"] -= CALIBRATION["cublas_workspace_bytes"]
    ordered = {k: int(parts[k]) for k in PART_ORDER}
    return MemoryBreakdown(ordered, phase, trainable, n_total, notes)


PART_ORDER = (
    "weights",
    "reference_model",
    "lora_adapters",
    "gradients",
    "ddp_gradient_buckets",
    "optimizer_states",
    "autocast_weight_copies",
    "activations",
    "logits_and_loss",
    "optimizer_step_temporaries",
    "template_token_rows",
    "backward_workspace",
    "allocator_overhead",
    "cuda_context",
)

PART_LABELS = {
    "weights": "weights",
    "reference_model": "frozen reference model",
    "lora_adapters": "LoRA adapters",
    "gradients": "gradients",
    "ddp_gradient_buckets": "DDP gradient buckets",
    "optimizer_states": "optimizer states",
    "autocast_weight_copies": "16-bit weight copies (autocast)",
    "activations": "activations",
    "logits_and_loss": "logits + fp32 loss",
    "optimizer_step_temporaries": "optimizer step temporaries",
    "template_token_rows": "chat-template token rows",
    "backward_workspace": "backward workspace",
    "allocator_overhead": "allocator overhead",
    "cuda_context": "CUDA context",
}
