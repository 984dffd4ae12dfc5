"""Optional push of an export folder to the Hugging Face Hub.

The token comes only from the environment (HF_TOKEN) and is passed to the API call;
it is never written to disk (no `login()`, no git credential helper). Offline mode
and a missing token fail before any work starts, with what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from ftwizard.errors import UserError


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def check_push(repo_id: str) -> None:
    if repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise UserError(f"{repo_id!r} is not a hub repository id", where="--push-to-hub",
                        fix="use OWNER/NAME, e.g. my-user/support-tickets-lora")
    from ftwizard.models.resolve import is_offline

    if is_offline():
        raise UserError("cannot push to the hub: the network is off (HF_HUB_OFFLINE=1)", where="--push-to-hub",
                        fix="export without --push-to-hub now, and push the folder later from a machine with network "
                            "(`hf upload REPO runs/<name>/export`)")
    if not _token():
        raise UserError("pushing to the hub needs a token in the environment variable HF_TOKEN", where="--push-to-hub",
                        fix="create a write token at https://huggingface.co/settings/tokens and run "
                            "`HF_TOKEN=... ftwizard export ... --push-to-hub REPO` (it is never saved)")


def push(out: Path, repo_id: str, private: bool = True, log=print) -> str:
    """Upload the export folder (not the manifest) to `repo_id`; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=_token())
    try:
        log(f"Pushing {out} to https://huggingface.co/{repo_id} ...")
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, ignore_patterns=["manifest.json", "*.partial"],
                          commit_message="Upload fine-tune exported by ftwizard")
        return str(url)
    except Exception as e:
        raise UserError(f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        where="--push-to-hub", fix="check the token's write access, the repo id and the network; "
                        "the export folder itself is complete") from None
