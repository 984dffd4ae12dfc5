"""The export process: `python -m ftwizard.export.worker RUN [options]`.

Runs the whole export (heavy imports live here, not in the CLI or the wizard), prints
progress lines, and writes the manifest. Exit code 0 when every export passed its
checks, 2 when some failed (the manifest says which and why), 1 on a user error
(also written as JSON to --error-file for the caller to show).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftwizard.export.worker")
    ap.add_argument("run")
    ap.add_argument("--format", default="adapter,merged,gguf,ollama")
    ap.add_argument("--quant", default="q8_0")
    ap.add_argument("--out")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--push-to-hub")
    ap.add_argument("--error-file")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:  # library progress bars are noise in an export log; our own lines say what happens
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    from ftwizard.errors import UserError

    _threads_for_load()
    try:
        from ftwizard.export.pipeline import export_run

        m = export_run(Path(a.run).resolve(), a.format, a.quant, Path(a.out).resolve() if a.out else None, a.force, a.dtype,
                       a.max_new_tokens, a.push_to_hub, log=lambda s: print(s, flush=True))
    except UserError as e:
        if a.error_file:
            import json

            Path(a.error_file).write_text(json.dumps(e.to_dict()))
        print(e.render(), file=sys.stderr)
        return 1
    if (Path(a.run) / "status.json").is_file():  # runs/NAME/summary.md lists the exports (written before them)
        from ftwizard.rundir import RunDir
        from ftwizard.summary import write_summary_quietly

        write_summary_quietly(RunDir(Path(a.run).resolve()))
    return 0 if m["state"] == "completed" else 2


def _threads_for_load() -> None:
    """One torch thread when the machine is loaded past its cores: two threads that wait on each other at
    every op, each scheduled a fraction of the time, ran the checks several times slower than one."""
    try:
        if os.getloadavg()[0] >= (os.cpu_count() or 1):
            import torch

            torch.set_num_threads(1)
    except (OSError, ImportError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
