"""Per-row structure checks: one row in, its format, canonical messages and problems out.

`to_messages` stops at the first problem because the trainer only needs a yes or no;
lint wants every problem of a row with its field path, so the structure is checked here
first and `to_messages` runs only on rows that pass. Shared by lint and fix, so that
"invalid" means the same thing to both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftwizard.data.formats import SHAREGPT_ROLES, ConversionError, detect_format, to_messages
from ftwizard.data.loading import json_kind, snippet

ROLES = ("system", "user", "assistant")
# Keys each format reads; anything else in a row is ignored by the trainer (reported once, as info).
FORMAT_KEYS = {
    "messages": {"messages", "tools"},  # tools: ftwizard.data.tools
    "sharegpt": {"conversations", "system", "tools"},
    "alpaca": {"instruction", "input", "output", "system"},
    "prompt_completion": {"prompt", "completion"},
    "text": {"text"},
    "glaive": {"system", "chat"},  # Glaive function calling (ftwizard.data.tools)
    "preference": {"prompt", "chosen", "rejected", "system"},
    "kto": {"prompt", "completion", "label", "system"},  # ftwizard.data.preference checks both (h14b)
}
MESSAGE_KEYS = {"role", "content"}
# Keys seen in chat exports that are harmless to ignore (not worth an info line per key).
MESSAGE_EXTRA_OK = {"name", "weight", "tool_calls", "tool_call_id", "function_call"}
# Near-miss key sets, to say "this looks like Alpaca but lacks `output`".
_NEAR = (
    ("alpaca", {"instruction", "output"}, ("response", "answer", "completion")),
    ("prompt_completion", {"prompt", "completion"}, ("response", "answer", "output")),
    ("messages", {"messages"}, ("conversation", "dialog", "chat", "turns")),
    ("sharegpt", {"conversations"}, ("conversation",)),
    ("preference", {"chosen", "rejected"}, ()),
)


@dataclass(slots=True)
class RowProblem:
    rule: str
    message: str
    field: str | None = None
    snippet: str | None = None


@dataclass(slots=True)
class RowResult:
    fmt: str | None
    messages: list[dict[str, str]] | None
    problems: list[RowProblem] = field(default_factory=list)
    extra_keys: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.messages is not None


def check_row(value: Any, system_prompt: str | None = None) -> RowResult:
    """Structure of one parsed row; `messages` is set only when the row can be trained on."""
    if not isinstance(value, dict):
        kind = json_kind(value)
        return RowResult(None, None, [RowProblem(
            "row.not_object", f"each row must be a JSON object, found {kind}", snippet=snippet(repr(value)),
        )])
    fmt = detect_format(value)
    if fmt is None:
        return RowResult(None, None, [_unknown_format(value)])
    extra = tuple(k for k in value if k not in FORMAT_KEYS[fmt])
    if fmt in ("preference", "kto", "text"):
        return RowResult(fmt, None, [], extra)
    problems: list[RowProblem] = []
    if fmt == "messages":
        _check_turns(value["messages"], "messages", "role", "content", problems)
    elif fmt == "sharegpt":
        _check_turns(value["conversations"], "conversations", "from", "value", problems)
    elif fmt == "alpaca":
        _check_text(value.get("instruction"), "instruction", problems)
        if value.get("input") not in (None, ""):
            _check_text(value.get("input"), "input", problems)
        _check_text(value.get("output"), "output", problems)
    elif fmt == "prompt_completion":
        p, c = value.get("prompt"), value.get("completion")
        if isinstance(p, list) and isinstance(c, list):
            _check_turns(p + c, "prompt+completion", "role", "content", problems)
        else:
            _check_text(p, "prompt", problems)
            _check_text(c, "completion", problems)
    if any(p.rule in ERROR_RULES for p in problems):
        return RowResult(fmt, None, problems, extra)
    try:
        messages = to_messages(value, fmt, system_prompt=system_prompt)
    except ConversionError as e:
        problems.append(RowProblem("format.unknown", str(e), e.field))
        return RowResult(fmt, None, problems, extra)
    if fmt != "messages" and fmt != "sharegpt":
        _check_order(messages, "messages", problems)
    return RowResult(fmt, messages, problems, extra)


ERROR_RULES = {"keys.missing", "roles.unknown", "roles.order", "content.empty", "content.not_string", "format.unknown"}


def _unknown_format(value: dict) -> RowProblem:
    keys = set(value)
    shown = ", ".join(sorted(keys)[:8]) or "(none)"
    for key in ("messages", "conversations"):
        if key in value:  # the right key with the wrong kind of value (often a JSON string in a CSV cell)
            found = json_kind(value[key])
            extra = "; if it is JSON text, check that it parses" if isinstance(value[key], str) else ""
            return RowProblem("content.not_string", f"{key!r} must be a list of turns, found {found}{extra}", key,
                              snippet(repr(value[key])))
    for fmt, needed, aliases in _NEAR:
        have = keys & needed
        alias = next((a for a in aliases if a in keys), None)
        if have or alias:
            missing = sorted(needed - keys)
            msg = f"row looks like {fmt} but lacks key {', '.join(repr(m) for m in missing)}"
            if alias:
                msg += f" (found {alias!r}: rename it?)"
            return RowProblem("keys.missing", msg + f"; keys: {shown}", field=missing[0] if missing else None)
    return RowProblem(
        "format.unknown",
        f"row matches no known format; keys: {shown}",
    )


def _content_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return None


def _check_text(value: Any, path: str, problems: list[RowProblem]) -> None:
    if value is None:
        problems.append(RowProblem("keys.missing", f"missing {path!r}", path))
        return
    text = _content_text(value)
    if text is None:
        problems.append(RowProblem(
            "content.not_string", f"{path} must be text, found {json_kind(value)}", path, snippet(repr(value)),
        ))
    elif not text.strip():
        problems.append(RowProblem("content.empty", f"{path} is empty" if not text else f"{path} is only whitespace", path))


def _check_turns(turns: list, path: str, role_key: str, content_key: str, problems: list[RowProblem]) -> None:
    if not turns:
        problems.append(RowProblem("content.empty", f"{path} is an empty list", path))
        return
    roles: list[str | None] = []
    for i, m in enumerate(turns):
        here = f"{path}[{i}]"
        if not isinstance(m, dict):
            problems.append(RowProblem("content.not_string", f"{here} must be an object, found {json_kind(m)}", here))
            roles.append(None)
            continue
        # ShareGPT exports sometimes use role/content; to_messages accepts both there.
        alt_role, alt_content = ("role", "content") if role_key == "from" else (role_key, content_key)
        rk = role_key if role_key in m else alt_role if alt_role in m else None
        ck = content_key if content_key in m else alt_content if alt_content in m else None
        role = None
        if rk is None:
            problems.append(RowProblem("keys.missing", f"{here} has no {role_key!r}", f"{here}.{role_key}"))
            roles.append(None)
        else:
            raw_role = m[rk]
            role = raw_role if role_key == "role" and raw_role in ROLES else (
                SHAREGPT_ROLES.get(str(raw_role).lower()) if role_key == "from" else None)
            if role is None:  # tool traffic (ftwizard.data.tools): role tool/function, function_call/observation
                role = _tool_role(raw_role, role_key)
            if role is None:
                hint = " (tool and function turns are not supported for training yet)" if raw_role in ("tool", "function", "ipython") else ""
                problems.append(RowProblem(
                    "roles.unknown", f"unknown role {raw_role!r} at {here}; use system, user or assistant{hint}", f"{here}.{rk}",
                ))
            roles.append(role)
        calls = role == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))
        if role in ("tool", "assistant_call") or (calls and (ck is None or m[ck] in (None, ""))):
            pass  # tool results may be any JSON, and a call may come without text; tools.py checks them
        elif ck is None:
            problems.append(RowProblem("keys.missing", f"{here} has no {content_key!r}", f"{here}.{content_key}"))
        else:
            _check_text(m[ck], f"{here}.{ck}", problems)
    if all(r is not None for r in roles):
        _check_order([{"role": r} for r in roles], path, problems)


def _check_order(messages: list[dict], path: str, problems: list[RowProblem]) -> None:
    """System only first; then user and assistant alternate, starting with user, ending with assistant."""
    roles = _fold_tool_turns([m["role"] for m in messages])
    start = 1 if roles and roles[0] == "system" else 0
    for i, r in enumerate(roles):
        if r == "system" and i != 0:
            problems.append(RowProblem("roles.order", f"system message at {path}[{i}]; only the first message may be system", f"{path}[{i}].role"))
            return
    body = roles[start:]
    if not body:
        problems.append(RowProblem("roles.order", "only a system message; nothing to train on", path))
        return
    if body[0] != "user":
        problems.append(RowProblem("roles.order", f"conversation starts with {body[0]} at {path}[{start}]; it must start with user", f"{path}[{start}].role"))
        return
    for j in range(1, len(body)):
        if body[j] == body[j - 1]:
            problems.append(RowProblem(
                "roles.order", f"two {body[j]} turns in a row at {path}[{start + j - 1}] and {path}[{start + j}]; user and assistant must alternate",
                f"{path}[{start + j}].role",
            ))
            return
    if body[-1] != "assistant":
        problems.append(RowProblem(
            "roles.order", f"conversation ends with {body[-1]} at {path}[{len(roles) - 1}]; it must end with an assistant turn to train on",
            f"{path}[{len(roles) - 1}].role",
        ))


def _tool_role(raw_role: Any, role_key: str) -> str | None:
    """Tool turns: "tool" for results, "assistant_call" for a ShareGPT function_call turn."""
    from ftwizard.data.tools import OPENAI_TOOL_ROLES, SHAREGPT_TOOL_ROLES

    if role_key == "role" and raw_role in OPENAI_TOOL_ROLES:
        return "tool"
    if role_key == "from":
        role = SHAREGPT_TOOL_ROLES.get(str(raw_role).lower())
        return "assistant_call" if role == "assistant" else role
    return None


def _fold_tool_turns(roles: list) -> list:
    """Tool traffic as the alternation sees it: a function_call turn right after the assistant's words is
    part of that turn; a run of tool results after an assistant call answers it (it stands where the user
    would); a result with no call before it is left to the tool rules (tools.result_orphan)."""
    out: list = []
    for r in roles:
        if r == "assistant_call":
            if out and out[-1] == "assistant":
                continue
            out.append("assistant")
        elif r == "tool":
            if out and out[-1] == "assistant":
                out.append("tool")
            # after another tool result it joins that run; anywhere else the tool rules report it
        else:
            out.append(r)
    return out
