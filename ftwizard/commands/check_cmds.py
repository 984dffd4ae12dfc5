"""`ftwizard check CONFIG`: the pre-flight check, headless.

Argument definitions only at import time (stdlib); the handler imports the domain code.
Exit code 1 when the report has errors (a run like this cannot work), else 0.
"""

from __future__ import annotations

import argparse

from ftwizard.commands.argtypes import positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="pre-flight: catch a doomed run before training (data, memory, time, guardrails)",
        description="Check a run config without loading model weights: the data lint of the train and eval files with "
        "the model's tokenizer, the memory, time and cost estimate against the detected or named GPU, and the "
        "guardrails from the fine-tuning guidance. Findings are ranked by severity; each says what is wrong, why it "
        "matters and what to change. Exit code 1 when there are errors.",
    )
    p.add_argument("config", nargs="?", help="run config YAML (`ftwizard init` writes one)")
    p.add_argument("--gpu", metavar="NAME", help="judge against this GPU from the table (planning) instead of the detected one")
    p.add_argument("--budget-hours", type=positive_float, metavar="H", help="error when the estimated training time is over H hours")
    p.add_argument("--budget-usd", type=positive_float, metavar="USD", help="error when the estimated cost is over USD")
    p.add_argument("--fix", action="store_true", help="write a corrected copy of the config (needs -o); never the original")
    p.add_argument("-o", "--output", metavar="NEW.yaml", help="where --fix writes the corrected config")
    p.add_argument("--force", action="store_true", help="with --fix: replace NEW.yaml if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="hide info notes")
    p.add_argument("--rules", action="store_true", help="print the rule table (id, severity, threshold, source) and exit")
    p.add_argument("--json", action="store_true", help="machine-readable report (schema ftwizard.preflight/1)")
    p.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ftwizard.errors import UsageError, UserError

    if args.rules:
        return _print_rules(args)
    if not args.config:
        raise UsageError("which config? `ftwizard check CONFIG`", fix="`ftwizard init -o config.yaml` writes one")
    if args.fix and not args.output:
        raise UsageError("--fix needs -o NEW.yaml (the original config is never changed)",
                        fix=f"ftwizard check {args.config} --fix -o fixed.yaml")
    if args.output and not args.fix:
        raise UsageError("-o is only used with --fix", fix=f"ftwizard check {args.config} --fix -o {args.output}")
    out = None
    if args.fix:
        out = Path(args.output)
        if out.resolve() == Path(args.config).resolve():
            raise UserError("--fix never overwrites the original config", where=str(out), fix="choose another -o path")
        if out.exists() and not args.force:
            raise UserError(f"{out} already exists", fix="choose another -o path, or pass --force to replace it")

    from ftwizard.config import commented_yaml, load_config
    from ftwizard.fileio import atomic_write_text
    from ftwizard.preflight import fix_config, planned_edits, run_check
    from ftwizard.preflight.render import render

    cfg = load_config(args.config)
    report = run_check(cfg, gpu=args.gpu, budget_hours=args.budget_hours, budget_usd=args.budget_usd)
    result = report.to_dict()
    result["config"] = str(Path(args.config).resolve())
    if out is not None:
        edits = planned_edits(report)
        fixed = fix_config(cfg, report)
        atomic_write_text(out, commented_yaml(fixed))
        result["fixed"] = {"path": str(out), "edits": [{"field": f, "value": v, "rule": r} for f, v, r in edits]}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render(report, infos=not args.quiet))
        if out is not None:
            edits = result["fixed"]["edits"]
            print(f"wrote {out} with {len(edits)} change(s)" + (":" if edits else " (nothing to change in the config)"))
            for e in edits:
                print(f"  {e['field']}: {e['value']}   ({e['rule']})")
            print(f"  check it: ftwizard check {out}")
    return 0 if report.ok else 1


def _print_rules(args) -> int:
    import json

    from ftwizard.preflight.rules import RULES

    if args.json:
        print(json.dumps([r.to_dict() for r in RULES.values()], indent=2))
        return 0
    for r in RULES.values():
        src = r.source + (f" ({r.section})" if r.section else "")
        print(f"{r.id:28} {r.severity:8} {r.title}\n{'':37}threshold: {r.threshold}\n{'':37}source: {src}")
    return 0
