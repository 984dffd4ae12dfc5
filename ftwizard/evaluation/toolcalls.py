"""Tool-calling eval: does the model call the right tool with the right arguments, in valid JSON?

On each held-out row that uses tools, the prompt is every turn before the row's first assistant
turn (the tool list shown through the chat template, as in training) and the reference is that
turn: its calls, or no call at all (a plain answer, where the model should not reach for a tool).
The model's greedy output is parsed for calls in the Hermes/Qwen form (`<tool_call>{json}</tool_call>`,
what the ChatML template trains), or a bare {"name": ..., "arguments": ...} object. Metrics (0..1):

- tool_name_accuracy: rows that should call, where the called tool names match the reference's
  (as a multiset: parallel calls in any order);
- tool_args_exact: rows that should call, where every call matches by name and parsed-JSON-equal arguments;
- tool_json_valid: rows that should call, where the output holds a call and every call block parses as
  a JSON object with a name;
- tool_no_call_accuracy: rows that should answer plainly, where the output makes no call.

Light (no torch): the parsing and scoring are plain Python; generation goes through an
evaluation.generate.Engine passed in.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftwizard.data.formats import ConversionError, detect_format, to_messages
from ftwizard.data.tools import uses_tools
from ftwizard.errors import UserError

METRICS = ("tool_name_accuracy", "tool_args_exact", "tool_json_valid", "tool_no_call_accuracy")
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass
class ToolSample:
    row: int
    prompt: list[dict]                 # a data.tools.Conversation: the turns before the assistant's, with .tools
    expected: list[dict] | None        # [{"name", "arguments"}] the reference calls; None: a plain answer
    reference: str                     # the reference turn as text (the calls as JSON lines, or the answer)


def load_tool_samples(path: Path, fmt: str = "auto", system_prompt: str | None = None,
                      max_samples: int | None = None) -> list[ToolSample]:
    """The held-out rows that use tools, cut at their first assistant turn ([] when none use tools)."""
    from ftwizard.training.dataset import iter_rows

    out: list[ToolSample] = []
    file_fmt = None if fmt == "auto" else fmt
    for row, rec in iter_rows(Path(path)):
        row_fmt = file_fmt or detect_format(rec)
        if row_fmt not in ("messages", "sharegpt", "glaive"):
            continue
        try:
            msgs = to_messages(rec, row_fmt, system_prompt=system_prompt)
        except ConversionError as e:
            raise UserError(f"{Path(path).name} row {row}, field {e.field or '?'}: {e}", where=f"{path}:{row}",
                            fix=f"run `ftwizard lint {path}` to see every problem") from None
        if not uses_tools(msgs):
            continue
        first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant"), None)
        if first is None:
            continue
        turn = msgs[first]
        calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in turn.get("tool_calls") or []]
        ref = "\n".join(json.dumps(c, ensure_ascii=False) for c in calls) if calls else turn["content"]
        out.append(ToolSample(row, msgs[:first], calls or None, ref))
        if max_samples and len(out) >= max_samples:
            break
    return out


def parse_calls(text: str) -> tuple[list[dict], bool]:
    """(calls found in a model's output, whether every call block was valid JSON with a name).

    No call block and no bare call object: ([], True) — a plain answer."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        body = text.strip()
        if body.startswith("```"):
            body = body.strip("`").removeprefix("json").strip()
        if body.startswith("{") and '"name"' in body:
            blocks = [body]
        else:
            return [], True
    calls, valid = [], True
    decoder = json.JSONDecoder()
    for b in blocks:
        try:
            obj, _ = decoder.raw_decode(b.strip())
        except ValueError:
            valid = False
            calls.append({"name": None, "arguments": None})
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            valid = False
            calls.append({"name": None, "arguments": None})
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                valid = False
        calls.append({"name": obj["name"], "arguments": args})
    return calls, valid


def _key(call: dict) -> str:
    return json.dumps([call["name"], call["arguments"]], sort_keys=True, ensure_ascii=False, default=str)


def score_row(sample: ToolSample, output: str) -> dict[str, Any]:
    calls, valid = parse_calls(output)
    if sample.expected is None:
        return {"expects_call": False, "no_call": not calls, "calls": calls}
    names_ok = Counter(c["name"] for c in calls) == Counter(c["name"] for c in sample.expected)
    args_ok = Counter(map(_key, calls)) == Counter(map(_key, sample.expected))
    return {"expects_call": True, "name": names_ok, "args": args_ok, "json": bool(calls) and valid, "calls": calls}


def score(samples: list[ToolSample], outputs: list[str]) -> dict[str, Any]:
    """Headline metrics (None where no row of that kind), per-row values and per-row detail."""
    rows = [score_row(s, o) for s, o in zip(samples, outputs)]
    call_rows = [r for r in rows if r["expects_call"]]
    plain_rows = [r for r in rows if not r["expects_call"]]

    def mean(vals):
        return round(sum(vals) / len(vals), 4) if vals else None

    metrics = {
        "tool_name_accuracy": mean([float(r["name"]) for r in call_rows]),
        "tool_args_exact": mean([float(r["args"]) for r in call_rows]),
        "tool_json_valid": mean([float(r["json"]) for r in call_rows]),
        "tool_no_call_accuracy": mean([float(r["no_call"]) for r in plain_rows]),
    }
    per_row = {
        "tool_name_accuracy": [float(r["name"]) if r["expects_call"] else None for r in rows],
        "tool_args_exact": [float(r["args"]) if r["expects_call"] else None for r in rows],
        "tool_json_valid": [float(r["json"]) if r["expects_call"] else None for r in rows],
        "tool_no_call_accuracy": [float(r["no_call"]) if not r["expects_call"] else None for r in rows],
    }
    return {"metrics": metrics, "rows": per_row, "counts": {"call_rows": len(call_rows), "plain_rows": len(plain_rows)},
            "samples": [{"row": s.row, "reference": s.reference, "output": o, "calls": r["calls"],
                         "correct": bool(r["args"]) if r["expects_call"] else bool(r["no_call"])}
                        for s, o, r in zip(samples, outputs, rows)]}


def max_new_tokens(engine, samples: list[ToolSample]) -> int:
    """Room for the longest reference call (with its tags) plus a margin."""
    longest = max(engine.token_count(f"<tool_call>\n{s.reference}\n</tool_call>") for s in samples)
    return min(512, int(longest * 1.5) + 16)


def evaluate(engine, samples: list[ToolSample], batch_size: int = 8, progress=None) -> dict[str, Any]:
    """Generate each sample's assistant turn with the engine's active model and score the calls (a template
    whose <tool_call> is a special token loses the tags in decoding: the bare JSON object still parses)."""
    from ftwizard.data.tools import require_tool_template

    require_tool_template(engine.tokenizer, where="the eval file")
    outputs = engine.generate([s.prompt for s in samples], max_new_tokens(engine, samples), batch_size, progress)
    return score(samples, outputs)


__all__ = ["METRICS", "ToolSample", "evaluate", "load_tool_samples", "parse_calls", "score", "score_row"]
