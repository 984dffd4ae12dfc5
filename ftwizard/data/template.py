"""What the model sees: a conversation rendered with the chat template, and which of its
characters and tokens are the assistant's (the ones trained with assistant-only loss).

Assistant spans come from the template itself, not from guessing at its markup: the
prefix rendered up to a turn with `add_generation_prompt=True` ends where the assistant
starts writing; the render that includes the turn ends after it. The span runs to the
end-of-turn token inclusive (the model must learn to emit it, or it never stops) and
excludes what the template adds after it (a newline). Used by lint (the EOS check), by
the preview and by the trainer's assistant-only masking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# End-of-turn markers of common templates, in case the tokenizer's eos_token is a different one.
KNOWN_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>", "<|end_of_text|>")


class TemplateError(ValueError):
    """The chat template cannot render this conversation (or has no template at all)."""


class ToolTemplateError(TemplateError):
    """The chat template drops tools, tool calls or tool results (ftwizard.data.tools.template_tool_problem)."""


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None) -> str:
    """The conversation as the model sees it. `tools` (default: the conversation's own, see
    ftwizard.data.tools.Conversation) go to the template; a template that cannot show them is refused."""
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template")
    from ftwizard.data.tools import TEMPLATE_FIX, template_tool_problem, tools_of, uses_tools

    tools = tools if tools is not None else tools_of(messages)
    if tools or uses_tools(messages):
        problem = template_tool_problem(tokenizer)
        if problem is not None:
            raise ToolTemplateError(f"the chat template cannot render tool calls: {problem}; {TEMPLATE_FIX}")
    try:
        return tokenizer.apply_chat_template(list(messages), tools=tools or None, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja raises TemplateError / exceptions from raise_exception()
        raise TemplateError(f"the chat template cannot render this conversation: {e}") from e


def stop_tokens(tokenizer) -> list[str]:
    """Token strings that end generation: the eos token and any in generation_config.json."""
    out = []
    if getattr(tokenizer, "eos_token", None):
        out.append(tokenizer.eos_token)
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    gen = folder / "generation_config.json"
    if gen.is_file():
        try:
            ids = json.loads(gen.read_text()).get("eos_token_id")
        except (OSError, ValueError):
            ids = None
        for i in [ids] if isinstance(ids, int) else ids or []:
            tok = tokenizer.convert_ids_to_tokens(int(i))
            if tok and tok not in out:
                out.append(tok)
    return out


def end_of_turn_markers(tokenizer) -> list[str]:
    """Markers that can close an assistant turn in this template (stop tokens first)."""
    template = getattr(tokenizer, "chat_template", "") or ""
    out = stop_tokens(tokenizer)
    out += [t for t in KNOWN_END_OF_TURN if t in template and t not in out]
    return out


class Span(NamedTuple):
    """Characters [start, end) of the rendered text that belong to one assistant turn
    (a tuple, so `for start, end, *_ in spans` works where plain (start, end) pairs are expected)."""

    start: int
    end: int
    message_index: int
    closed: bool  # ends with a stop token (eos), so a tuned model learns to stop


def assistant_spans(tokenizer, messages: list[dict]) -> list[Span]:
    """The assistant turns of `messages` as character spans of `render(tokenizer, messages)`."""
    from ftwizard.data.tools import tools_of

    tools = tools_of(messages)  # slices of a Conversation keep them; passed explicitly all the same
    full = render(tokenizer, messages, tools=tools)
    stops = stop_tokens(tokenizer)
    markers = end_of_turn_markers(tokenizer)
    spans: list[Span] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools) if i else ""
        upto = render(tokenizer, messages[: i + 1], tools=tools)
        if i and full.startswith(upto) and upto.startswith(prefix) and len(prefix) >= cursor:
            start, seg = len(prefix), upto[len(prefix):]
        else:  # a template that rewrites earlier turns: find the content itself
            found = full.find(m["content"], cursor)
            if found < 0:
                raise TemplateError(f"cannot locate assistant turn {i} in the rendered text")
            start, seg = found, full[found:]
        content_at = seg.find(m["content"]) if m["content"] else 0
        after = max(content_at, 0) + len(m["content"])
        end, closed = start + len(seg.rstrip()), False
        best = None
        for marker in markers:
            k = seg.find(marker, after)
            if k >= 0 and (best is None or k < best[0]):
                best = (k, marker)
        if best is not None:
            end = start + best[0] + len(best[1])
            closed = best[1] in stops
        spans.append(Span(start, end, i, closed))
        cursor = end
    return spans


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    trained: bool


@dataclass(frozen=True, slots=True)
class Rendered:
    """A conversation as token ids with the assistant-only loss mask, and as text segments."""

    text: str
    input_ids: list[int]
    trained_mask: list[bool]
    segments: list[Segment]
    spans: list[Span]

    @property
    def tokens(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(self.trained_mask)


def assistant_token_mask(tokenizer, messages: list[dict]) -> Rendered:
    """Tokenise the rendered conversation; a token is trained when it starts inside an assistant span."""
    text = render(tokenizer, messages)
    spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = []
    for s, e in offsets:
        mask.append(any(sp.start <= s < sp.end for sp in spans) or (e > s and any(sp.start < e <= sp.end for sp in spans)))
    segments: list[Segment] = []
    pos = 0
    for (s, e), trained in zip(offsets, mask):
        if s > pos and segments:  # characters not covered by a token (rare): attach to the previous segment
            prev = segments[-1]
            segments[-1] = Segment(prev.text + text[pos:s], prev.trained)
        piece = text[max(s, pos):e] if e > pos else ""
        if not piece:
            continue
        if segments and segments[-1].trained == trained:
            segments[-1] = Segment(segments[-1].text + piece, trained)
        else:
            segments.append(Segment(piece, trained))
        pos = max(pos, e)
    if pos < len(text):
        segments.append(Segment(text[pos:], False))
    return Rendered(text, list(ids), mask, segments, spans)
