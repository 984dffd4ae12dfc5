"""The activation formula against what autograd really saves, byte for byte, on CPU.

A small random model of each architecture runs one forward pass under
`saved_tensors_hooks`; the bytes one decoder layer keeps for backward must equal
`layer_activation_bytes` for the same shape and setup (full fine-tuning with fp32
master weights under bf16 autocast, LoRA over a bf16 base, QLoRA over NF4 with
prepare_model_for_kbit_training, gradient checkpointing). Layer 1 is compared because
layer 0 also holds the rotary tables shared by every layer.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ftwizard.hardware.memory import MemorySettings, layer_activation_bytes  # noqa: E402
from ftwizard.hardware.shapes import shape_from_config  # noqa: E402

B, S = 2, 32
SMALL = dict(hidden_size=128, intermediate_size=352, num_attention_heads=4, num_key_value_heads=2,
             num_hidden_layers=2, vocab_size=512, max_position_embeddings=256)


def _config(model_type: str):
    from transformers import AutoConfig

    extra = {}
    if model_type in ("qwen3", "gemma3_text", "gemma2"):
        extra["head_dim"] = 32
    if model_type == "gemma3_text":
        extra["sliding_window"] = 64
    return AutoConfig.for_model(model_type, **SMALL, **extra, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _model(model_type: str, dtype):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = _config(model_type)
    m = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    m.train()
    return m, shape_from_config(cfg.to_dict(), model_type, "test")


def _lora(model, dropout: float, adapters_bf16: bool = False):
    from peft import LoraConfig, get_peft_model

    m = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
    if adapters_bf16:
        for p in m.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    return m


def _measure(model, autocast: bool, layer: str = "L1") -> int:
    from ftwizard.hardware.measure import saved_activation_bytes

    ids = torch.randint(0, SMALL["vocab_size"], (B, S))
    got = saved_activation_bytes(model, ids, autocast_dtype=torch.bfloat16 if autocast else None)
    return got[layer]


def _settings(method: str, dropout: float = 0.0, gc: bool = False) -> MemorySettings:
    return MemorySettings(method=method, seq_len=S, micro_batch=B, lora_r=8, lora_dropout=dropout,
                          gradient_checkpointing=gc, device="cpu", padded=False)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "phi3", "gemma3_text"])
def test_full_mixed_precision_layer(model_type):
    model, shape = _model(model_type, torch.float32)
    got = _measure(model, autocast=True)
    # autocast keeps a bf16 copy of every Linear weight of the layer until backward
    copies = 2 * shape.linear_weight_params_per_layer
    want = layer_activation_bytes(shape, _settings("full"), trainable_base=True, res=4, p=2, autocast=True, mask=False)
    assert got - copies == want


@pytest.mark.parametrize("model_type,dropout", [("llama", 0.0), ("llama", 0.1), ("qwen3", 0.0), ("phi3", 0.1),
                                                ("gemma3_text", 0.0)])
def test_lora_bf16_layer(model_type, dropout):
    model, shape = _model(model_type, torch.bfloat16)
    model = _lora(model, dropout)
    got = _measure(model, autocast=True)
    copies = 2 * shape.lora_params(8) // shape.layers  # autocast bf16 copies of the fp32 adapters
    s = _settings("lora", dropout)
    want = layer_activation_bytes(shape, s, trainable_base=False, res=2, p=2, autocast=True, mask=False)
    assert got - copies == want


@pytest.mark.parametrize("method", ["full", "lora"])
def test_checkpointing_keeps_only_layer_inputs(method):
    model, shape = _model("llama", torch.float32 if method == "full" else torch.bfloat16)
    if method == "lora":
        model = _lora(model, 0.0)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method == "lora":
        model.enable_input_require_grads()
    got = _measure(model, autocast=True)
    res = 4 if method == "full" else 2
    assert got == B * S * shape.hidden * res


@pytest.mark.slow
def test_qlora_layer(tmp_path):
    """NF4 base (bitsandbytes on CPU), prepare_model_for_kbit_training, bf16 adapters as TRL does."""
    pytest.importorskip("bitsandbytes")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model, shape = _model("llama", torch.bfloat16)
    model.save_pretrained(tmp_path)
    q = AutoModelForCausalLM.from_pretrained(
        tmp_path, dtype=torch.bfloat16, attn_implementation="sdpa",
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16,
                                               bnb_4bit_quant_storage=torch.bfloat16))
    q = prepare_model_for_kbit_training(q, use_gradient_checkpointing=False)
    q = _lora(q, 0.0, adapters_bf16=True)
    q.train()
    got = _measure(q, autocast=True)
    want = layer_activation_bytes(shape, _settings("qlora"), trainable_base=False, res=4, p=2, autocast=True,
                                  mask=False, mlp=4)
    assert got == want


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_fp32_on_cpu_layer(dropout):
    """How ftwizard trains on a CPU: fp32 base and adapters, no autocast; without dropout
    the adapters share their inputs instead of copying them."""
    model, shape = _model("llama", torch.float32)
    model = _lora(model, dropout)
    got = _measure(model, autocast=False)
    s = MemorySettings(method="lora", seq_len=S, micro_batch=B, lora_r=8, lora_dropout=dropout, precision="fp32",
                       device="cpu", padded=False)
    want = layer_activation_bytes(shape, s, trainable_base=False, res=4, p=4, autocast=False, mask=False)
    assert got == want


@pytest.mark.slow
def test_whole_training_step_peak_on_cpu():
    """CPU sanity check of the total, not only the activations: a LoRA step (forward,
    backward, AdamW) of a small random llama in fp32, peak live tensor bytes measured with
    torch.profiler, against the estimate without its allocator-overhead part. Tolerance
    10 %: the backward workspace is modelled, not measured, and the profiler misses
    temporaries that live inside a single op."""
    from ftwizard.hardware.measure import cpu_peak_tensor_bytes, live_tensor_bytes
    from ftwizard.hardware.memory import training_memory

    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", hidden_size=256, intermediate_size=704, num_attention_heads=4,
                               num_key_value_heads=2, num_hidden_layers=2, vocab_size=8000,
                               max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    model = _lora(model, 0.05)
    model.train()
    shape = shape_from_config(cfg.to_dict(), "llama", "test")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    b, s = 2, 128
    ids = torch.randint(0, 8000, (b, s))

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # optimizer state exists from the second step on, as in training
    measured = cpu_peak_tensor_bytes(step, live_tensor_bytes(model, opt))
    est = training_memory(shape, MemorySettings(method="lora", seq_len=s, micro_batch=b, lora_r=8, lora_dropout=0.05,
                                                precision="fp32", device="cpu", padded=False,
                                                fused_lm_head=False))  # this plain loop builds full logits
    allocated = est.total_bytes - est.parts["allocator_overhead"]
    assert abs(allocated - measured) / measured < 0.10, (allocated, measured, est.parts)
