"""lint, data fix/split/show/stats/rules: the data step, headless.

Exit codes: 0 no error, 1 errors found (or a failure the user can fix), 2 usage errors.
Only the standard library is imported here; handlers import the data package when run.
"""

from __future__ import annotations

import argparse
import sys

from ftwizard.commands.argtypes import nonneg_int, positive_int, unit_fraction

TASK_TYPES = ["classification", "extraction", "style", "domain", "code", "math", "other"]


def _model_args(p: argparse.ArgumentParser, tokens_optional: bool = True, chat_template: bool = True) -> None:
    p.add_argument("--model", default="embedded", metavar="M",
                   help="base model whose tokenizer and chat template count tokens: 'embedded' (default), a local folder, "
                        "or a hub id already in the cache")
    if tokens_optional:
        p.add_argument("--no-tokens", action="store_true", help="skip token counts (no tokenizer is loaded)")
    p.add_argument("--system-prompt", metavar="TEXT", help="system prompt the trainer adds to rows without one")
    if chat_template:  # lint declares its own (h14e)
        p.add_argument("--chat-template", default="auto", metavar="T",
                       help="chat template as data.chat_template: auto (the model's own; ChatML for a base without "
                            "one), chatml, llama3, gemma, mistral, alpaca or a .jinja file")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lint", help="check a data file: format, structure, lengths, duplicates, PII, leakage",
                       description="Check a fine-tuning data file and report every problem with its row. "
                                   "Exit 0: no errors; 1: errors; 2: usage error.")
    p.add_argument("file", help="JSONL, JSON, CSV or Parquet")
    _model_args(p, chat_template=False)
    p.add_argument("--max-length", type=positive_int, default=512, metavar="N", help="max tokens per example (default 512)")
    p.add_argument("--eval", metavar="FILE", help="held-out file to check for overlap with the training file")
    p.add_argument("--task-type", choices=TASK_TYPES, help="what the data teaches (sets the example-count guidance)")
    p.add_argument("--objective", choices=["sft", "dpo", "orpo", "kto"],
                   help="training.objective the data is for: preference pairs are an error under sft, KTO rows under "
                        "dpo/orpo (default: not known, a note)")
    p.add_argument("--chat-template", default="auto", metavar="T",
                   help="data.chat_template to render rows with: auto (the model's own; ChatML when it has none), "
                        "chatml, llama3, gemma, mistral, alpaca or a .jinja file")
    p.add_argument("--as-eval", action="store_true", help="check the file as a held-out set: no 'too few to "
                   "fine-tune' warning; says how small a difference between models it can resolve")
    p.add_argument("--no-pii", action="store_true", help="skip the PII and secrets scan")
    p.add_argument("--no-dedup", action="store_true", help="skip duplicate detection")
    p.add_argument("--show", type=nonneg_int, default=5, metavar="N", help="rows shown per rule (default 5)")
    p.add_argument("--json", action="store_true", help="print the JSON report (docs/lint-report.md)")
    p.set_defaults(handler=cmd_lint)

    data = sub.add_parser("data", help="fix, split, show or describe a data file (writes new files only)")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("fix", help="write a fixed copy: dedup, drop invalid rows, redact PII, convert to messages")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="new .jsonl file (a report goes to OUT.report.json)")
    p.add_argument("--dedup", nargs="?", const="near", choices=["exact", "near"],
                   help="drop duplicates, keeping the first: exact, or near (exact and near; the default with no value)")
    p.add_argument("--drop-invalid", action="store_true", help="leave out rows that cannot be trained on")
    p.add_argument("--redact-pii", action="store_true", help="replace e-mails, phones, cards, IBANs, SSNs, IPs, keys with placeholders")
    p.add_argument("--to", choices=["messages"], help="convert every row to OpenAI messages")
    p.add_argument("--system-prompt", metavar="TEXT", help="with --to messages: add this system prompt to rows without one")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (never the input)")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing: show each change (before -> after) and the counts per rule")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_fix)

    p = dsub.add_parser("split", help="write train and eval files (duplicates stay on one side)")
    p.add_argument("file")
    p.add_argument("--eval-fraction", type=unit_fraction, default=0.1, metavar="F", help="share held out (default 0.1; guidance 0.1-0.2)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--stratify", action="store_true", help="keep class-label proportions the same on both sides")
    p.add_argument("-o", "--output-dir", metavar="DIR", help="where to write STEM.train.jsonl and STEM.eval.jsonl (default: beside the file)")
    p.add_argument("--drop-invalid", action="store_true", help="leave out rows that cannot be trained on")
    p.add_argument("--force", action="store_true", help="replace existing outputs (never the input)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_split)

    p = dsub.add_parser("show", help="render one row as the model sees it, trained tokens highlighted")
    p.add_argument("file")
    p.add_argument("--row", type=positive_int, required=True, metavar="N", help="row number (the line for JSONL)")
    _model_args(p, tokens_optional=False)
    p.add_argument("--json", action="store_true", help="segments as JSON: [{text, trained}]")
    p.set_defaults(handler=cmd_show)

    p = dsub.add_parser("stats", help="rows, formats, turns, roles, token-length histogram, tokens per epoch")
    p.add_argument("file")
    _model_args(p)
    p.add_argument("--max-length", type=positive_int, default=512, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = dsub.add_parser("rules", help="list the lint rules with their ids and severities")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_rules)


def _tokenizer(args):
    if getattr(args, "no_tokens", False):
        return None
    from ftwizard.data.chat_templates import apply_template
    from ftwizard.data.tokens import load_tokenizer

    tok = load_tokenizer(args.model)
    apply_template(tok, getattr(args, "chat_template", None) or "auto")  # the template the trainer would use
    return tok


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _print_json(obj) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _check_max_length(n: int) -> None:
    from ftwizard.errors import UserError

    if n < 1:
        raise UserError(f"--max-length must be positive, got {n}", code=2)


def cmd_lint(args) -> int:
    from pathlib import Path

    from ftwizard.data.lint import LintOptions
    from ftwizard.data.loading import check_readable

    _check_max_length(args.max_length)
    check_readable(Path(args.file))
    if args.eval:
        check_readable(Path(args.eval))
    from ftwizard.data.chat_templates import check_choice
    from ftwizard.errors import UserError

    try:
        check_choice(args.chat_template)
    except ValueError as e:
        raise UserError(str(e).replace("data.chat_template", "--chat-template"), code=2) from None
    tok = _tokenizer(args)  # applies --chat-template as the trainer will
    opts = LintOptions(tokenizer=tok, model=None if tok is None else args.model, max_length=args.max_length,
                       task_type=args.task_type, eval_path=Path(args.eval) if args.eval else None,
                       system_prompt=args.system_prompt, pii=not args.no_pii, dedup=not args.no_dedup,
                       as_eval=args.as_eval, objective=args.objective)
    report = _lint_with_progress(args.file, opts, quiet=args.json)
    if args.json:
        _print_json(report.to_dict())
    else:
        from ftwizard.data.render import lint_report

        _console().print(lint_report(report, per_rule=max(1, args.show)))
    return report.exit_code


def _lint_with_progress(path, opts, quiet: bool):
    """Lint, showing a row counter on a terminal (stderr) for files that take a while."""
    from ftwizard.data.lint import lint_file

    if quiet or not sys.stderr.isatty():
        return lint_file(path, opts)
    from rich.console import Console

    with Console(stderr=True).status("linting...") as status:
        return lint_file(path, opts, progress=lambda n: status.update(f"linting... {n:,} rows"))


def cmd_fix(args) -> int:
    from ftwizard.data.fix import fix_file

    rep = fix_file(args.file, args.output, dedup=args.dedup, drop_invalid=args.drop_invalid, redact_pii=args.redact_pii,
                   to_messages=args.to == "messages", force=args.force, system_prompt=args.system_prompt,
                   dry_run=args.dry_run)
    if args.json:
        _print_json({"output": None if args.dry_run else args.output, "dry_run": args.dry_run,
                     "report": rep.report_path, "rows_in": rep.rows_in,
                     "rows_out": rep.rows_out["output"], "dropped": len(rep.dropped), "changed": len(rep.changed),
                     "counts": dict(sorted(rep.counts.items())), "diffs": rep.diffs if args.dry_run else None})
        return 0
    if args.dry_run:
        _show_dry_run(rep)
        return 0
    _summarise_fix(rep, "output")
    return 0


def _show_dry_run(rep, shown: int = 20) -> None:
    """What a fix would change, row by row (before -> after), then the counts per rule."""
    from rich.markup import escape

    from ftwizard.data.loading import snippet

    c = _console()
    c.print(f"dry run: nothing written; {rep.rows_in:,} rows in, {rep.rows_out['output']:,} would be written")
    for d in rep.dropped[:shown]:
        c.print(f"  row {d['row']}: drop ({escape(d['reason'])})")
    for d in rep.diffs[:shown]:
        c.print(f"  row {d['row']} {escape(d['field'])}:")
        c.print(f"    - {escape(snippet(d['before'], width=120))}", style="red")
        c.print(f"    + {escape(snippet(d['after'], width=120))}", style="green")
    more = max(0, len(rep.diffs) - shown) + max(0, len(rep.dropped) - shown)
    if more:
        c.print(f"  ... and {more:,} more (--json lists them)")
    _print_counts(rep)


def _print_counts(rep) -> None:
    if rep.counts:
        _console().print("per rule: " + ", ".join(f"{k} {n:,}" for k, n in sorted(rep.counts.items())))
    else:
        _console().print("per rule: nothing to change")


def _summarise_fix(rep, *sides: str) -> None:
    from collections import Counter

    c = _console()
    outs = ", ".join(f"{rep.outputs[s]} ({rep.rows_out[s]:,} rows)" for s in sides)
    c.print(f"wrote {outs} from {rep.source} ({rep.rows_in:,} rows; the input is unchanged)")
    if rep.dropped:
        kinds = Counter(d["reason"].split(":")[0].split(" of row")[0] for d in rep.dropped)
        c.print(f"dropped {len(rep.dropped):,}: " + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common()))
    if rep.changed:
        c.print(f"changed {len(rep.changed):,} row(s)")
    if rep.counts:
        _print_counts(rep)
    c.print(f"report (every output row mapped to its input row): {rep.report_path}", style="dim")


def cmd_split(args) -> int:
    from ftwizard.data.fix import split_file

    rep = split_file(args.file, args.output_dir, eval_fraction=args.eval_fraction, seed=args.seed, stratify=args.stratify,
                     force=args.force, drop_invalid=args.drop_invalid)
    if args.json:
        _print_json({"train": rep.outputs["train"], "eval": rep.outputs["eval"], "report": rep.report_path,
                     "rows_in": rep.rows_in, "rows_out": rep.rows_out, "dropped": len(rep.dropped)})
        return 0
    _summarise_fix(rep, "train", "eval")
    return 0


def cmd_show(args) -> int:
    from ftwizard.data.preview import preview_row

    tok = _tokenizer(args)
    pv = preview_row(args.file, args.row, tok, system_prompt=args.system_prompt)
    if args.json:
        r = pv.rendered
        _print_json({
            "row": pv.row, "format": pv.fmt, "problems": pv.problems,
            "tokens": r.tokens if r else None, "trained_tokens": r.trained_tokens if r else None,
            "segments": [{"text": s.text, "trained": s.trained} for s in r.segments] if r else None,
            **({"rejected_segments": [{"text": s.text, "trained": s.trained} for s in pv.rejected.segments]}
               if pv.rejected is not None else {}),  # a preference pair: segments are prompt + chosen
        })
    else:
        from ftwizard.data.render import preview_view

        _console().print(preview_view(pv))
    return 0 if pv.rendered is not None else 1


def cmd_stats(args) -> int:
    from pathlib import Path

    from ftwizard.data.lint import LintOptions, lint_file
    from ftwizard.data.loading import check_readable

    _check_max_length(args.max_length)
    check_readable(Path(args.file))
    tok = _tokenizer(args)
    report = lint_file(args.file, LintOptions(tokenizer=tok, model=None if tok is None else args.model,
                                              max_length=args.max_length, system_prompt=args.system_prompt,
                                              pii=False, dedup=False))
    if report.rows == 0:
        from ftwizard.errors import UserError

        raise UserError("the file has no rows", where=str(args.file), fix="add examples (one JSON object a line for JSONL)")
    stats = dict(report.stats, format=report.format, model=report.model)
    if args.json:
        _print_json(stats)
    else:
        from ftwizard.data.render import stats_view

        _console().print(stats_view(stats))
    return 0


def cmd_rules(args) -> int:
    from ftwizard.data.rules import RULES

    if args.json:
        _print_json([{"id": r.id, "severity": r.severity, "title": r.title, "hint": r.hint} for r in RULES.values()])
        return 0
    from rich.table import Table

    t = Table("rule", "severity", "what", "fix")
    for r in RULES.values():
        t.add_row(r.id, r.severity, r.title, r.hint)
    _console().print(t)
    return 0
