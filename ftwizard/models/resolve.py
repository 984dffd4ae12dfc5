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


def resolve_base(base: str, log=print) -> str:
    """A local folder for `base`: the embedded cache, a local path, or a hub snapshot."""
    if base == EMBEDDED:
        from ftwizard.models.embedded import ensure_cached

        return str(ensure_cached(log=log))
    p = Path(base).expanduser()
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
