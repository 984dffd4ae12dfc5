"""Held-out rows as (prompt turns, reference answer) pairs, prepared exactly as in training.

Each row goes through the same `to_messages` conversion and system prompt as the
trainer uses; the prompt is every turn before the last assistant turn and the
reference is that turn's text. A few-shot variant puts training rows in front as
earlier user/assistant turns, to score the base model with its best cheap prompt.
Light (no torch): the launcher and tests use it too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ftwizard.data.formats import ConversionError, detect_format, to_messages
from ftwizard.errors import UserError


@dataclass
class EvalSample:
    row: int                      # 1-based row (line) in the file
    prompt: list[dict[str, str]]  # turns before the answer, system prompt applied
    reference: str                # the answer the model should give

    @property
    def input_text(self) -> str:
        """The last user turn: what a person reads as 'the input'."""
        users = [m["content"] for m in self.prompt if m["role"] == "user"]
        return users[-1] if users else ""


def load_samples(path: Path, fmt: str = "auto", system_prompt: str | None = None,
                 max_samples: int | None = None) -> list[EvalSample]:
    from ftwizard.training.dataset import iter_rows

    out: list[EvalSample] = []
    file_fmt = None if fmt == "auto" else fmt
    for row, rec in iter_rows(Path(path)):
        row_fmt = file_fmt or detect_format(rec)
        if row_fmt is None:
            raise UserError(f"{Path(path).name} row {row}: matches no known data format", where=f"{path}:{row}",
                            fix=f"run `ftwizard lint {path}` to see every problem")
        if row_fmt in ("text", "preference"):
            raise UserError(f"{Path(path).name} holds {row_fmt} rows, which have no prompt/answer split to generate from",
                            where=f"{path}:{row}", fix="evaluate with chat-style rows (messages, alpaca, prompt_completion)")
        try:
            msgs = to_messages(rec, row_fmt, system_prompt=system_prompt)
        except ConversionError as e:
            raise UserError(f"{Path(path).name} row {row}, field {e.field or '?'}: {e}", where=f"{path}:{row}",
                            fix=f"run `ftwizard lint {path}` to see every problem") from None
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise UserError(f"{Path(path).name} row {row}: no assistant turn to compare against", where=f"{path}:{row}",
                            fix="every held-out row needs a reference answer")
        ref = msgs[last]["content"] or _calls_text(msgs[last])  # a turn that only calls a tool (ftwizard.data.tools)
        out.append(EvalSample(row=row, prompt=msgs[:last], reference=ref))
        if max_samples and len(out) >= max_samples:
            break
    if not out:
        raise UserError(f"{path} has no rows to evaluate", fix="check the held-out file")
    return out


def _calls_text(turn: dict) -> str:
    """An assistant turn's tool calls as the Hermes/ChatML template writes them."""
    from ftwizard.data.tools import call_text

    return "\n".join(f"<tool_call>\n{call_text(c)}\n</tool_call>" for c in turn.get("tool_calls") or [])


def with_few_shot(samples: list[EvalSample], shots: list[EvalSample]) -> list[EvalSample]:
    """Put each shot's user turn and reference in front of every sample's own turns."""
    prefix: list[dict[str, str]] = []
    for s in shots:
        prefix += [m for m in s.prompt if m["role"] != "system"] + [{"role": "assistant", "content": s.reference}]
    out = []
    for s in samples:
        system = [m for m in s.prompt if m["role"] == "system"]
        rest = [m for m in s.prompt if m["role"] != "system"]
        out.append(EvalSample(row=s.row, prompt=system + prefix + rest, reference=s.reference))
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
