"""Chat-template control markup that should never appear inside message text.

Rows copied from another model's prompts often carry that model's markup (`[INST]`,
`<|start_header_id|>`, ...) inside the text. The trainer's chat template adds the base
model's own markup around each turn, so markup already in the text is trained on as
literal words: the tuned model learns to print control tags. The table lists the
families in common use; the model's own family is recognised by its chat template.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# marker -> family; the markers are literal strings except the Alpaca headers (line starts)
FAMILIES: dict[str, tuple[str, ...]] = {
    "ChatML (Qwen, SmolLM, ...)": ("<|im_start|>", "<|im_end|>"),
    "Llama 2 / Mistral": ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"),
    "Llama 3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "Gemma": ("<start_of_turn>", "<end_of_turn>"),
    "Phi-3 / Zephyr": ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
    "DeepSeek": ("<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"),
    "Alpaca": ("### Instruction:", "### Response:"),
}
FAMILY_OF = {m: fam for fam, ms in FAMILIES.items() for m in ms}
_LITERALS = [m for m in FAMILY_OF if not m.startswith("###")]
_PATTERN = re.compile("|".join([re.escape(m) for m in sorted(_LITERALS, key=len, reverse=True)]
                               + [r"(?m:^### (?:Instruction|Response):)"]))
_FAST = ("<", "[", "#")  # a string without any of these cannot match
MAX_ROWS = 200


def own_family(chat_template: str | None) -> str | None:
    """The family whose markers the model's chat template itself emits."""
    if not chat_template:
        return None
    for fam, markers in FAMILIES.items():
        if fam != "Alpaca" and any(m in chat_template for m in markers):
            return fam
    return None


@dataclass
class MarkupScan:
    """Rows whose text carries control markup: row numbers (first MAX_ROWS), exact count, markers seen."""

    rows: list[int] = field(default_factory=list)
    count: int = 0
    markers: Counter = field(default_factory=Counter)
    first_field: str | None = None

    def scan(self, row: int, value) -> None:
        hits: set[str] = set()
        where = _walk(value, "", hits)
        if hits:
            self.count += 1
            if len(self.rows) < MAX_ROWS:
                self.rows.append(row)
            if self.first_field is None:
                self.first_field = where
            self.markers.update(hits)


def _walk(value, path: str, hits: set[str]) -> str | None:
    """Collect markers in every string of a row; returns the path of the first string that had one."""
    first = None
    if isinstance(value, str):
        if any(c in value for c in _FAST):
            for m in _PATTERN.finditer(value):
                hits.add(m.group(0))
            if hits:
                return path or "text"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("role", "from"):
                continue
            got = _walk(v, f"{path}.{k}" if path else str(k), hits)
            first = first or got
    elif isinstance(value, list):
        for i, v in enumerate(value):
            got = _walk(v, f"{path}[{i}]", hits)
            first = first or got
    return first
