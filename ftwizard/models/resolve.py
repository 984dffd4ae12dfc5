"""Resolve the config's `model.base` to a local folder, never touching the network
unless the user asked for a hub id that is not cached yet and the network is allowed."""

from __future__ import annotations

import os
from pathlib import Path

from ftwizard.config import EMBEDDED
from ftwizard.errors import UserError


def is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(base: str) -> bool:
    """Whether a model reference names a folder rather than a hub id (owner/name): absolute,
    relative (./ ../ ~), or with more than one '/'. Such a reference is never sent to a hub."""
    return Path(base).expanduser().is_absolute() or base.startswith((".", "~")) or base.count("/") != 1 \
        or "\\" in base


def is_run_folder(base: str) -> bool:
    """Whether `base` names an ftwizard run folder (its config.yaml and status.json) rather than a model folder."""
    p = Path(base).expanduser()
    return p.is_dir() and (p / "config.yaml").is_file() and (p / "status.json").is_file() \
        and not (p / "config.json").is_file()


def resolve_base(base: str, log=print) -> str:
    """A local folder for `base`: the embedded cache, a local path, a finished run's model, or a hub snapshot.

    A run folder ("SFT first, then DPO"): a full run's model/ as it is; a LoRA/QLoRA run's adapter merged
    into that run's own base, once, into the user cache (run_as_base)."""
    if base == EMBEDDED:
        from ftwizard.models.embedded import ensure_cached

        return str(ensure_cached(log=log))
    p = Path(base).expanduser()
    if is_run_folder(base):
        return str(run_as_base(p, log=log))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"{p} has no config.json, so it is not a transformers model folder",
                            where="model.base", fix="point model.base at the folder that holds config.json")
        return str(p.resolve())
    if looks_like_path(base):
        raise UserError(f"model folder not found: {base}", where="model.base",
                        fix="give an existing folder, a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct, or 'embedded'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # the local cache first: no network, no retries
        return snapshot_download(base, local_files_only=True, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except LocalEntryNotFoundError:
        pass
    if is_offline():
        raise UserError(
            f"model {base!r} is not in the local hub cache and the network is off (HF_HUB_OFFLINE=1)",
            where="model.base",
            fix=f"download it where there is network (`hf download {base}`), copy the folder here and point model.base at it, or use 'embedded'",
        )
    try:
        log(f"Downloading {base} from the hub...")
        return snapshot_download(base, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"], etag_timeout=10)
    except Exception as e:  # one clear message instead of a stack of retries
        raise UserError(
            f"could not download {base!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            where="model.base",
            fix="check the id and the network (or HF_TOKEN for gated models), or use a local folder or 'embedded'",
        ) from None


MERGED_MARKER = ".ftwizard-merged"


def run_as_base(path: Path, log=print) -> Path:
    """The model a finished run produced, as a folder another run can start from ("SFT first, then DPO").

    full: the run's model/. LoRA/QLoRA: the adapter merged into the run's own base (resolved the same way,
    so a chain of runs works), saved once under the user cache and keyed by the adapter file's identity
    (path, size, mtime); the tokenizer comes from the run (its chat template included). A run that has not
    completed is refused: its adapter is a checkpoint at best, not the model the user means."""
    from ftwizard.rundir import RunDir

    run = RunDir(path)
    state = run.read_status().get("state")
    if state != "completed":
        raise UserError(f"model.base is the run folder {path}, which has not finished (state: {state or 'unknown'})",
                        where="model.base", fix=f"finish it first (`ftwizard resume {run.name}`), or point model.base "
                        "at a completed run, a model folder or a hub id")
    if (run.model / "config.json").is_file():
        return run.model.resolve()
    weights = run.adapter / "adapter_model.safetensors"
    if not (run.adapter / "adapter_config.json").is_file() or not weights.is_file():
        raise UserError(f"the run {path} completed but has neither model/ nor adapter/ to start from",
                        where="model.base", fix="point model.base at another run, a model folder or a hub id")
    import hashlib

    from ftwizard.paths import cache_dir

    st = weights.stat()
    key = hashlib.sha256(f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "merged" / f"{run.name[:40]}-{key}"
    if (target / MERGED_MARKER).is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=3600):
        if (target / MERGED_MARKER).is_file():
            return target
        from ftwizard.config import load_config

        cfg = load_config(run.config)
        base_path = resolve_base(cfg.model.base, log=log)
        log(f"Merging the adapter of run {run.name} into its base once, into {target}...")
        _merge(base_path, run.adapter, target, cfg.model.trust_remote_code)
    return target


def _merge(base_path: str, adapter: Path, target: Path, trust_remote_code: bool) -> None:
    import shutil
    import tempfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto", trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(adapter), trust_remote_code=trust_remote_code).save_pretrained(str(tmp))
        (tmp / MERGED_MARKER).write_text(f"{adapter}\n{base_path}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
