"""`ftwizard export RUN`: write the adapter, merged model, GGUF, Ollama Modelfile and
model card, each loaded back and checked. Only argparse at import time; the work runs
in the export worker process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ftwizard.commands.argtypes import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a finished run: adapter, merged, GGUF, Ollama (each checked by loading it back)",
        description="Export a finished run into runs/<name>/export/ (or --out). Every file is loaded back and "
                    "checked against the fine-tuned model; the manifest.json there records sizes, checks and "
                    "failures. GGUF quantisations: f16, bf16, q8_0 (llama.cpp's converter from PyPI); q4_k_m and "
                    "other k-quants only where llama.cpp's llama-quantize is installed.")
    p.add_argument("run", help="run name (in --runs-dir) or run folder")
    p.add_argument("--format", default="adapter,merged,gguf,ollama",
                   help="comma list of adapter, merged, gguf, lora-gguf, ollama, or all (default: adapter, merged, "
                        "gguf, ollama); ollama implies gguf, gguf implies merged; a model card and a cross-format "
                        "consistency report are always written")
    p.add_argument("--quant", default="q8_0", help="GGUF quantisation(s), comma list: f16, bf16, q8_0, q4_k_m, q5_k_m, "
                                                   "q6_k (default q8_0; k-quants need the llama.cpp runtime)")
    p.add_argument("--out", help="export folder (default runs/<name>/export)")
    p.add_argument("--force", action="store_true", help="replace an existing export in that folder")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"],
                   help="dtype of the merged weights (default: fp32 on a CPU, the precision it computes in; on a GPU "
                        "the base's 16-bit dtype, fp16 for fp32 bases)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="token limit for the check generations (default: sized from the data's answers, as eval does)")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the export to this hub repo (token from HF_TOKEN)")
    p.add_argument("--runs-dir", default=None, help="runs folder (default ./runs)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON (progress goes to stderr)")
    p.set_defaults(handler=cmd_export)


def _runs_dir(args: argparse.Namespace) -> Path:
    from ftwizard.paths import default_runs_dir

    return Path(args.runs_dir) if args.runs_dir else default_runs_dir()


def cmd_export(args: argparse.Namespace) -> int:
    from ftwizard.export.launch import ExportRequest, outcome, start
    from ftwizard.export.pipeline import parse_formats, parse_quants, prepare_check
    from ftwizard.export.source import open_run
    from ftwizard.rundir import find_run

    run = find_run(args.run, _runs_dir(args))
    open_run(run.path)  # finished, with a result: checked before a process starts
    parse_formats(args.format)  # fail fast, before a process starts
    parse_quants(args.quant)
    req = ExportRequest(Path(run.path).resolve(), args.format, args.quant, Path(args.out) if args.out else None, args.force,
                        args.dtype, args.max_new_tokens, args.push_to_hub)
    prepare_check(req.out_dir(), args.force)
    if args.push_to_hub:
        from ftwizard.export.hub import check_push

        check_push(args.push_to_hub)
    proc, err = start(req, stdout=sys.stderr if args.json else None)
    m = outcome(proc, err, req)
    if args.json:
        import json

        print(json.dumps(m, indent=2))
    else:
        print(summary_text(m, req.out_dir()))
    return 0 if m["state"] == "completed" else 1  # 2 is for usage errors (README: exit codes)


def summary_text(m: dict, out: Path) -> str:
    lines = [f"export of {m['run']}: {m['state']} ({m.get('seconds', '?')} s) -> {out}"]
    for key, e in m.get("exports", {}).items():
        b = e.get("bytes") or 0
        size = f"{b / 1e6:8.1f} MB" if b >= 100_000 else f"{b / 1e3:8.1f} kB" if b else " " * 11
        why = f"  {e['reason']}" if e.get("state") != "ok" and e.get("reason") else ""
        lines.append(f"  {key:10} {e['state']:7} {size}  {e.get('path', '')}{why}")
    cons = m.get("consistency")
    if cons:
        lines.append(f"consistency ({out / cons.get('path', 'consistency.json')}): {cons.get('summary', '')}")
    olla = m.get("exports", {}).get("ollama", {})
    if olla.get("command") and olla.get("state") == "ok":
        lines.append(f"Ollama: {olla['command']}")
    for w in m.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
