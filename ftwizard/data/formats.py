"""Row formats of fine-tuning data, their detection, and conversion to chat messages.

Canonical form is OpenAI-style `messages`: a list of {"role", "content"} with roles
system / user / assistant. Every SFT format converts to it; preference pairs are
recognised so that they can be reported as "not for SFT" rather than misread.
"""

from __future__ import annotations

from typing import Any

SFT_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")
ALL_FORMATS = SFT_FORMATS + ("preference", "kto")
PREFERENCE_FORMATS = ("preference", "kto")  # paired (DPO, ORPO) and unpaired (KTO); ftwizard.data.preference reads them
KTO_LABELS = {True: True, False: False, "true": True, "false": False}  # CSV cells arrive as text

SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
    "system": "system",
}


def detect_format(row: Any) -> str | None:
    """The format of one row, or None when it matches none."""
    if not isinstance(row, dict):
        return None
    if "messages" in row and isinstance(row["messages"], list):
        return "messages"
    if "conversations" in row and isinstance(row["conversations"], list):
        return "sharegpt"
    if "chosen" in row and "rejected" in row:
        return "preference"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row and "label" in row and _kto_label(row["label"]) is not None:
        return "kto"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row and isinstance(row["text"], str):
        return "text"
    if isinstance(row.get("chat"), str) and "USER:" in row["chat"]:  # Glaive function calling (data.tools)
        return "glaive"
    return None


def _kto_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return KTO_LABELS.get(value.strip().lower()) if isinstance(value, str) else None


def implied_objective(fmt: str | None) -> str:
    """The training objective a data format asks for: "dpo" for pairs (ORPO reads them too), "kto" for
    unpaired prompt/completion/label rows, "sft" otherwise."""
    return {"preference": "dpo", "kto": "kto"}.get(fmt or "", "sft")


class ConversionError(ValueError):
    """A row that cannot become messages; `field` says where (for example messages[2].role)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _content(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": ...}]
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise ConversionError("only text content parts are supported", f"{field}[{i}]")
        return "".join(parts)
    from ftwizard.data.loading import json_kind

    raise ConversionError(f"content must be text, found {json_kind(value)}", field)


def to_messages(row: dict[str, Any], fmt: str | None = None, system_prompt: str | None = None) -> list[dict[str, str]]:
    """Convert one row of an SFT format into canonical messages.

    `system_prompt` is prepended when the row has no system message of its own.
    Raises ConversionError (with the field path) when the row cannot be converted.
    """
    fmt = fmt or detect_format(row)
    if fmt == "messages":
        msgs = []
        for i, m in enumerate(row["messages"]):
            if not isinstance(m, dict):
                raise ConversionError("each message must be an object", f"messages[{i}]")
            role = m.get("role")
            tool_msg = _tools().openai_message(m, i)  # role tool/function, assistant tool_calls (ftwizard.data.tools)
            if tool_msg is not None:
                msgs.append(tool_msg)
                continue
            if role not in ("system", "user", "assistant"):
                raise ConversionError(f"unknown role {role!r}", f"messages[{i}].role")
            msgs.append({"role": role, "content": _content(m.get("content"), f"messages[{i}].content")})
    elif fmt == "sharegpt":
        msgs = []
        for i, m in enumerate(row["conversations"]):
            if not isinstance(m, dict):
                raise ConversionError("each turn must be an object", f"conversations[{i}]")
            who = m.get("from", m.get("role"))
            if who is not None and str(who).lower() in _tools().SHAREGPT_TOOL_ROLES:  # function_call / observation
                msgs.append(_tools().sharegpt_turn(str(who).lower(), m.get("value", m.get("content")), i))
                continue
            role = SHAREGPT_ROLES.get(str(who).lower()) if who is not None else None
            if role is None:
                raise ConversionError(f"unknown speaker {who!r}", f"conversations[{i}].from")
            msgs.append({"role": role, "content": _content(m.get("value", m.get("content")), f"conversations[{i}].value")})
        if isinstance(row.get("system"), str) and row["system"].strip() and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": row["system"]})
        msgs = _tools().merge_call_turns(msgs)
    elif fmt == "alpaca":
        instruction = _content(row.get("instruction"), "instruction")
        extra = row.get("input") or ""
        user = instruction if not extra else f"{instruction}\n\n{_content(extra, 'input')}"
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": _content(row.get("output"), "output")}]
        if isinstance(row.get("system"), str) and row["system"].strip():
            msgs.insert(0, {"role": "system", "content": row["system"]})
    elif fmt == "prompt_completion":
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, list) and isinstance(completion, list):  # conversational prompt/completion
            msgs = to_messages({"messages": prompt + completion, "tools": row.get("tools")}, "messages")
        else:
            msgs = [{"role": "user", "content": _content(prompt, "prompt")},
                    {"role": "assistant", "content": _content(completion, "completion")}]
    elif fmt == "glaive":
        msgs = _tools().glaive_messages(row)
    elif fmt == "text":
        raise ConversionError("raw text rows have no conversation; train them as plain text", "text")
    elif fmt == "preference":
        raise ConversionError("preference pairs (prompt/chosen/rejected) train with a preference objective "
                              "(training.objective: dpo or orpo), not supervised fine-tuning", "chosen")
    elif fmt == "kto":
        raise ConversionError("prompt/completion/label rows are unpaired preference data: train them with "
                              "training.objective: kto", "label")
    else:
        raise ConversionError("row matches no known format (messages, conversations, instruction/output, prompt/completion, text)")
    if fmt in ("messages", "sharegpt"):
        msgs = _tools().finish(row, msgs)  # a Conversation carrying the row's `tools` when it uses tools
    if system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return msgs


def _tools():
    from ftwizard.data import tools

    return tools


def user_field(fmt: str | None, messages: list[dict] | None, i: int) -> str:
    """Where turn `i` of the converted conversation lives in the user's own row, in its own keys.

    An Alpaca row's answer is `output`, not `messages[1].content`; a ShareGPT turn is
    `conversations[i].value`. A system prompt that came from --system-prompt / data.system_prompt
    (not in the row) is named as such. `i` may be negative (-1: the last turn).
    """
    n = len(messages) if messages else None
    role = messages[i]["role"] if messages and -n <= i < n else ("assistant" if i == -1 else "system" if i == 0 else None)
    if fmt in (None, "messages"):
        return f"messages[{i}].content"
    if fmt == "sharegpt":
        return f"conversations[{i}].value"
    if fmt == "alpaca":
        return {"system": "system", "user": "instruction", "assistant": "output"}.get(role, "instruction")
    if fmt == "prompt_completion":
        return "completion" if role == "assistant" else "prompt"
    if fmt == "text":
        return "text"
    if fmt == "glaive":
        return "system" if role == "system" else "chat"
    return f"messages[{i}].content"

