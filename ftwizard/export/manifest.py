"""export/manifest.json: what was exported, where, how big, and whether each check passed.

One entry per format, each with a state: ok, failed (with the reason) or skipped (with
why). The manifest is rewritten atomically after every format, so a viewer (the wizard,
`ftwizard export --json`) can follow an export in progress, and a crash leaves the
formats done so far recorded. Light: no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from ftwizard.fileio import atomic_write_bytes

FORMATS = ("adapter", "merged", "gguf", "ollama", "card")
NAME = "manifest.json"


class Manifest:
    def __init__(self, out: Path, run: str, formats: list[str], options: dict[str, Any]):
        self.path = Path(out) / NAME
        self.data: dict[str, Any] = {"run": run, "state": "running", "started_at": time.time(), "ended_at": None,
                                     "formats": formats, "options": options, "exports": {}, "warnings": []}

    def start(self, key: str) -> None:
        self.data["exports"][key] = {"state": "running", "started_at": time.time()}
        self.save()

    def finish(self, key: str, state: str, *, reason: str | None = None, files: list[Path] | None = None,
               checks: list[dict] | None = None, **extra: Any) -> dict[str, Any]:
        e = self.data["exports"].setdefault(key, {"started_at": time.time()})
        e.update(state=state, seconds=round(time.time() - e["started_at"], 1), **extra)
        if reason:
            e["reason"] = reason
        if files:
            root = self.path.parent
            e["files"] = [{"path": str(f.relative_to(root)), "bytes": f.stat().st_size} for f in files if f.is_file()]
            e["bytes"] = sum(x["bytes"] for x in e["files"])
        if checks is not None:
            e["checks"] = checks
        self.save()
        return e

    def warn(self, text: str) -> None:
        self.data["warnings"].append(text)
        self.save()

    def close(self) -> str:
        states = [e["state"] for e in self.data["exports"].values()]
        self.data["state"] = "failed" if "failed" in states or "running" in states else "completed"
        self.data["ended_at"] = time.time()
        self.save()
        return self.data["state"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, orjson.dumps(self.data, option=orjson.OPT_INDENT_2))


def read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads((Path(out) / NAME).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in Path(d).rglob("*") if p.is_file())
