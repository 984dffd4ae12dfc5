"""Loading the fine-tuned model as training left it, and merging it.

- LoRA: the base in fp32 with the adapter applied on the fly (PEFT) is the reference.
- QLoRA: the reference is what was trained: the base quantised to NF4 exactly as the
  trainer did (double quantisation) with the adapter on top. The merge goes into the
  *dequantised* NF4 weights, not into the 4-bit model (PEFT would requantise and lose
  the update) and not into the original full-precision base (the adapter learned to
  correct the NF4 weights, so that would be a slightly different model).
- full: the run's model/ folder is the model.

Everything is merged and checked in fp32 (exact sums), then saved in 16-bit.
Heavy: imported only by the export worker.
"""

from __future__ import annotations

from pathlib import Path

from ftwizard.export.source import RunSource


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _nf4_config():
    import torch
    from transformers import BitsAndBytesConfig

    # As the trainer builds it on this device class (compute fp32 on CPU; see training/trainer.py)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)


def load_base(src: RunSource, base_path: str, quantised: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"dtype": torch.float32, "trust_remote_code": src.cfg.model.trust_remote_code}
    if quantised:
        kw["quantization_config"] = _nf4_config()
    if device() == "cuda":
        kw["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(base_path, **kw)
    from ftwizard.models.vocab import fit_embeddings

    fit_embeddings(model, str(src.artifact))  # rows for tokens the run's chat template added (before the adapter)
    return model.eval()


def load_finetuned(src: RunSource, base_path: str, adapter_dir: Path | None = None):
    """The fine-tuned model as training used it (adapter unmerged); `adapter_dir` defaults to the run's."""
    import torch
    from transformers import AutoModelForCausalLM

    if src.method == "full":
        model = AutoModelForCausalLM.from_pretrained(str(adapter_dir or src.artifact), dtype=torch.float32,
                                                     trust_remote_code=src.cfg.model.trust_remote_code)
        return model.to(device()).eval()
    from peft import PeftModel

    base = load_base(src, base_path, quantised=src.method == "qlora")
    return PeftModel.from_pretrained(base, str(adapter_dir or src.artifact), is_trainable=False).eval()


def merged_fp32(src: RunSource, base_path: str):
    """The adapter merged into fp32 weights (dequantised NF4 for QLoRA)."""
    if src.method == "full":
        return load_finetuned(src, base_path)
    from peft import PeftModel

    base = load_base(src, base_path, quantised=src.method == "qlora")
    if src.method == "qlora":
        base = base.dequantize()  # NF4 -> the fp32 values the adapter was trained against
        base.config.quantization_config = None
        if hasattr(base, "quantization_method"):
            base.quantization_method = None
        base.is_quantized = False
        base.hf_quantizer = None
    model = PeftModel.from_pretrained(base, str(src.artifact), is_trainable=False)
    return model.merge_and_unload().eval()


def save_merged(model, tok, out: Path, dtype_name: str) -> None:
    """Save in `dtype_name` (fp16/bf16/fp32) with the tokenizer, chat template and generation config."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    model.to(dtype)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            try:
                delattr(model.config, attr)
            except AttributeError:
                pass
    model.config.dtype = dtype
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def load_merged(path: Path, dtype_name: str):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device()).eval()


def load_gguf(path: Path):
    """A GGUF file through transformers' loader (dequantised to fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                dtype=torch.float32).to(device()).eval()


def default_merged_dtype(base_path: str, device_name: str | None = None) -> tuple[str, str]:
    """(dtype, why): on a CPU, fp32, the precision the CPU computes in (and training used); on a GPU, the
    base's own 16-bit dtype, fp16 for fp32 bases (more mantissa than bf16)."""
    import json

    if (device_name or device()) == "cpu":
        return "fp32", ("merged and saved in fp32, the precision this CPU computes in (training ran in fp32 too); "
                        "16-bit files are the GGUF export's job. --dtype fp16 halves merged/ at a small rounding")
    try:
        cfg = json.loads((Path(base_path) / "config.json").read_text())
    except (OSError, ValueError):
        return "fp16", "the base declares no dtype: fp16"
    d = str(cfg.get("dtype") or cfg.get("torch_dtype") or "")
    if "bfloat16" in d:
        return "bf16", "the base's own dtype (bf16)"
    return "fp16", f"the base is {d or 'fp32'}: fp16 keeps more mantissa than bf16"
