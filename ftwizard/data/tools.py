"""Tool-calling data: one canonical form for the formats in use, the template check, and the lint rules.

Canonical form (what `formats.to_messages` returns for a row that uses tools) is OpenAI's, as
transformers' `apply_chat_template(messages, tools=tools)` expects it:
- a `Conversation`: a list of messages with the row's tool schemas in `.tools`
  ([{"type": "function", "function": {"name", "description", "parameters"}}]); slices keep them;
- an assistant message may carry `tool_calls`: [{"type": "function", "function": {"name", "arguments"}}]
  (plus "id" when the row has one), arguments parsed to an object (a string that is not JSON is kept
  as it is, for lint to report), and `content` "" when the row had null;
- a tool result is {"role": "tool", "content": str, "tool_call_id"?, "name"?}.

Accepted: OpenAI `messages` with `tools` / `tool_calls` / role "tool" (and the legacy `function_call` /
role "function"); ShareGPT `conversations` in LLaMA-Factory's style (`function_call` and `observation`
turns, `tools` as a JSON string or a list); Glaive's free-text `system` + `chat` rows (format "glaive").

Light: no transformers import here; the template probe takes a tokenizer that is already loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ftwizard.data.formats import ConversionError

# ShareGPT speakers that carry tool traffic (LLaMA-Factory and others) -> canonical role
SHAREGPT_TOOL_ROLES = {"function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool",
                       "ipython": "tool", "tool_response": "tool", "tool_call": "assistant"}
# OpenAI message roles for tool results ("function" is the legacy name)
OPENAI_TOOL_ROLES = ("tool", "function")


class Conversation(list):
    """Canonical messages plus the tool schemas the model is shown (`tools`); slicing and `+` keep them."""

    def __init__(self, messages=(), tools: list[dict] | None = None):
        super().__init__(messages)
        self.tools = list(tools or [])

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return Conversation(out, self.tools) if isinstance(key, slice) else out

    def __add__(self, other):
        return Conversation(list(self) + list(other), self.tools)

    def copy(self):
        return Conversation(self, self.tools)

    def __reduce__(self):
        return (Conversation, (list(self), self.tools))


def tools_of(messages) -> list[dict] | None:
    """The tool schemas attached to a conversation, or None."""
    return getattr(messages, "tools", None) or None


def uses_tools(messages) -> bool:
    """A conversation that shows tools, makes a call or holds a tool result (needs a tool-capable template)."""
    if tools_of(messages):
        return True
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def row_has_tools(row: Any) -> bool:
    """Cheap test on a raw row (no conversion): does it use tools in any accepted form?"""
    if not isinstance(row, dict):
        return False
    if row.get("tools"):
        return True
    turns = row.get("messages") if isinstance(row.get("messages"), list) else row.get("conversations")
    if not isinstance(turns, list):
        return False
    for m in turns:
        if not isinstance(m, dict):
            continue
        if m.get("tool_calls") or m.get("function_call") or m.get("role") in OPENAI_TOOL_ROLES:
            return True
        if str(m.get("from", "")).lower() in SHAREGPT_TOOL_ROLES:
            return True
    return False


# ---------------------------------------------------------------- normalising

def _json_text(value: Any, field: str) -> str:
    """Tool results and the like: text as it is, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise ConversionError("content must be text or JSON", field) from None


def parse_tools(value: Any, field: str = "tools") -> list[dict]:
    """A row's `tools` (a list, or a JSON string of one) as OpenAI function schemas."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ConversionError(f"tools is a string but not JSON ({e})", field) from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ConversionError("tools must be a list of function schemas", field)
    out = []
    for i, t in enumerate(value):
        here = f"{field}[{i}]"
        if not isinstance(t, dict):
            raise ConversionError("each tool must be an object with a name", here)
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConversionError("tool has no name", f"{here}.name")
        entry = {"name": name}
        if fn.get("description") is not None:
            entry["description"] = fn["description"]
        entry["parameters"] = fn.get("parameters") if fn.get("parameters") is not None else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": entry})
    return out


def parse_arguments(value: Any) -> Any:
    """Arguments as an object when they are JSON text; anything unparseable is returned as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            return value
    return {} if value is None else value


def normalize_call(call: Any, field: str) -> dict:
    """One call, in any of {"type": "function", "function": {...}}, {"name", "arguments"} or
    {"name", "parameters"}, as {"type": "function", "function": {"name", "arguments"}} (+ "id")."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except ValueError:
            raise ConversionError("tool call is not JSON", field) from None
    if not isinstance(call, dict):
        raise ConversionError("tool call must be an object with a name", field)
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConversionError("tool call has no function name", f"{field}.function.name")
    args = fn.get("arguments", fn.get("parameters"))
    out = {"type": "function", "function": {"name": name, "arguments": parse_arguments(args)}}
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out


def openai_message(m: dict, i: int) -> dict | None:
    """A tool-related OpenAI message in canonical form, or None when it is an ordinary one."""
    here = f"messages[{i}]"
    role = m.get("role")
    if role in OPENAI_TOOL_ROLES:
        out = {"role": "tool", "content": _json_text(m.get("content"), f"{here}.content")}
        if m.get("tool_call_id") is not None:
            out["tool_call_id"] = str(m["tool_call_id"])
        if isinstance(m.get("name"), str):
            out["name"] = m["name"]
        return out
    if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
        raw = m.get("tool_calls") or [m["function_call"]]
        key = "tool_calls" if m.get("tool_calls") else "function_call"
        if not isinstance(raw, list):
            raise ConversionError("tool_calls must be a list", f"{here}.{key}")
        calls = [normalize_call(c, f"{here}.{key}[{j}]" if key == "tool_calls" else f"{here}.{key}")
                 for j, c in enumerate(raw)]
        content = m.get("content")
        from ftwizard.data.formats import _content

        return {"role": "assistant", "content": "" if content is None else _content(content, f"{here}.content"),
                "tool_calls": calls}
    return None


def sharegpt_turn(who: str, value: Any, i: int) -> dict:
    """A LLaMA-Factory style `function_call` / `observation` turn in canonical form."""
    here = f"conversations[{i}].value"
    role = SHAREGPT_TOOL_ROLES[who]
    if role == "tool":
        return {"role": "tool", "content": _json_text(value, here)}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConversionError("a function_call turn must hold JSON: {\"name\": ..., \"arguments\": {...}}", here) from None
    calls = value if isinstance(value, list) else [value]
    return {"role": "assistant", "content": "",
            "tool_calls": [normalize_call(c, f"{here}[{j}]" if isinstance(value, list) else here) for j, c in enumerate(calls)]}


def merge_call_turns(msgs: list[dict]) -> list[dict]:
    """ShareGPT writes the assistant's words and its call as two turns (gpt, then function_call):
    one assistant message in the canonical form."""
    out: list[dict] = []
    for m in msgs:
        if (m.get("tool_calls") and out and out[-1]["role"] == "assistant" and not out[-1].get("tool_calls")
                and m.get("content", "") == ""):
            out[-1] = {**out[-1], "tool_calls": m["tool_calls"]}
        else:
            out.append(m)
    return out


def finish(row: dict, msgs: list[dict]) -> list[dict]:
    """Attach the row's tools (a Conversation) when the row uses tools; other rows stay plain lists."""
    has_tools_key = "tools" in row and row["tools"] not in (None, "", [])
    if not has_tools_key and not uses_tools(msgs):
        return msgs
    tools = parse_tools(row.get("tools"), "tools") if has_tools_key else []
    return Conversation(msgs, tools)


# ---------------------------------------------------------------- Glaive

_GLAIVE_TURN = re.compile(r"(USER:|ASSISTANT:|FUNCTION RESPONSE:)")
_GLAIVE_ARGS = re.compile(r'"arguments"\s*:\s*\'(.*)\'\s*}\s*$', re.S)


def is_glaive(row: Any) -> bool:
    """Glaive's function-calling rows: free text `chat` with USER: / ASSISTANT: / FUNCTION RESPONSE: turns."""
    return isinstance(row, dict) and isinstance(row.get("chat"), str) and "USER:" in row["chat"]


def glaive_messages(row: dict) -> list[dict]:
    """A Glaive row (glaive-function-calling-v2: `system` lists the functions as JSON after ' -', `chat` holds
    the turns, calls as `<functioncall> {"name": ..., "arguments": '{...}'}`) in canonical form."""
    system = row.get("system") if isinstance(row.get("system"), str) else ""
    system = system.strip().removeprefix("SYSTEM:").strip()
    tools: list[dict] = []
    brace = system.find("{")
    if brace >= 0:
        prose, rest = system[:brace].rstrip().rstrip("-").rstrip(), system[brace:]
        dec, pos = json.JSONDecoder(), 0
        while pos < len(rest):
            while pos < len(rest) and rest[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(rest):
                break
            try:
                obj, pos = dec.raw_decode(rest, pos)
            except ValueError:
                raise ConversionError("the function list in `system` is not JSON", "system") from None
            tools.append(obj)
        system = prose
    msgs: list[dict] = [{"role": "system", "content": system}] if system else []
    parts = _GLAIVE_TURN.split(row["chat"])
    for marker, text in zip(parts[1::2], parts[2::2]):
        text = text.replace("<|endoftext|>", "").strip()
        if marker == "USER:":
            msgs.append({"role": "user", "content": text})
        elif marker == "FUNCTION RESPONSE:":
            msgs.append({"role": "tool", "content": text})
        elif "<functioncall>" in text:
            words, call = text.split("<functioncall>", 1)
            call = call.strip()
            m = _GLAIVE_ARGS.search(call)
            if m:  # arguments in single quotes: a JSON string written without escaping
                head = call[: m.start()] + '"arguments": {}}'
                try:
                    obj = json.loads(head)
                except ValueError:
                    raise ConversionError("a <functioncall> is not JSON", "chat") from None
                obj["arguments"] = m.group(1)
            else:
                try:
                    obj = json.loads(call)
                except ValueError:
                    raise ConversionError("a <functioncall> is not JSON", "chat") from None
            msgs.append({"role": "assistant", "content": words.strip(), "tool_calls": [normalize_call(obj, "chat")]})
        else:
            msgs.append({"role": "assistant", "content": text})
    return Conversation(msgs, parse_tools(tools, "system"))


# ---------------------------------------------------------------- the template

PROBE_TOOL = "zq_probe_lookup"
PROBE_PARAM = "zq_probe_city"
PROBE_VALUE = "zq_probe_value_42"
PROBE_RESULT = "zq_probe_result_17"
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": PROBE_TOOL, "description": "Probe tool.",
    "parameters": {"type": "object", "properties": {PROBE_PARAM: {"type": "string", "description": "a city"}},
                   "required": [PROBE_PARAM]}}}]
_PROBE = [
    {"role": "user", "content": "Probe question?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": "call_zq1", "function": {"name": PROBE_TOOL, "arguments": {PROBE_PARAM: PROBE_VALUE}}}]},
    {"role": "tool", "tool_call_id": "call_zq1", "name": PROBE_TOOL, "content": PROBE_RESULT},
    {"role": "assistant", "content": "Probe answer."},
]
_probe_cache: dict[str, str | None] = {}


def template_tool_problem(tokenizer) -> str | None:
    """Why this tokenizer's chat template cannot render tool calls, or None when it can.

    Rendered once per template on a probe conversation: the prompt up to the assistant's call
    must show the tool's name and schema, the call must show its name and arguments, and the
    tool result must appear. Templates that ignore `tools` / `tool_calls` (SmolLM2's, many
    older ones) drop them silently, so the check looks at the text, not at errors."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return "the tokenizer has no chat template"
    if not isinstance(template, str):
        template = json.dumps(template, sort_keys=True, default=str)
    if template in _probe_cache:
        return _probe_cache[template]
    problem = None
    try:
        prefix = tokenizer.apply_chat_template(_PROBE[:1], tools=_PROBE_TOOLS, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(_PROBE, tools=_PROBE_TOOLS, tokenize=False)
    except Exception as e:  # jinja errors, raise_exception() in the template
        problem = f"rendering a tool call fails: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    else:
        missing = []
        if PROBE_TOOL not in prefix or PROBE_PARAM not in prefix:
            missing.append("the tool list (`tools`) is not shown to the model")
        call = full[len(prefix):] if full.startswith(prefix) else full
        if PROBE_VALUE not in call or PROBE_TOOL not in call:
            missing.append("the assistant's tool call (`tool_calls`) is dropped")
        if PROBE_RESULT not in full:
            missing.append("tool results (role `tool`) are dropped")
        problem = "; ".join(missing) or None
    _probe_cache[template] = problem
    return problem


def template_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "the model") or "the model"


TEMPLATE_FIX = ("set `data.chat_template: chatml` (a built-in template that renders tools Hermes/Qwen-style), or a "
                ".jinja file that handles `tools`, `tool_calls` and role `tool`; or choose a base model whose own "
                "template supports tools (Qwen2.5, Llama-3.1 Instruct, ...)")


def require_tool_template(tokenizer, where: str, row: int | None = None) -> None:
    """Stop with a clear message when the tokenizer's template cannot render the tool rows."""
    problem = template_tool_problem(tokenizer)
    if problem is None:
        return
    from ftwizard.errors import UserError

    at = f" (first tool row: {row})" if row is not None else ""
    raise UserError(f"the chat template of {template_name(tokenizer)} cannot render tool calls{at}: {problem}",
                    where=where, fix=TEMPLATE_FIX)


# ---------------------------------------------------------------- schema check

_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
               "array": list, "null": type(None)}


def schema_errors(args: Any, schema: Any) -> list[str]:
    """How `args` fails the tool's JSON schema (empty when it passes). jsonschema when installed;
    a required/type/enum check otherwise."""
    if not isinstance(schema, dict) or not schema:
        return []
    try:
        import jsonschema
    except ImportError:
        return _minimal_schema_errors(args, schema, "arguments")
    try:
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(schema)
        errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    except jsonschema.exceptions.SchemaError as e:
        return [f"the tool's schema itself is invalid: {e.message}"]
    out = []
    for e in errors[:3]:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        out.append(f"arguments{path}: {e.message}")
    return out


def _minimal_schema_errors(value: Any, schema: dict, path: str) -> list[str]:
    out: list[str] = []
    want = schema.get("type")
    types = want if isinstance(want, list) else [want] if want else []
    if types:
        ok = any(isinstance(value, _JSON_TYPES.get(t, object)) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        if not ok:
            return [f"{path}: {json.dumps(value)[:40]} is not of type {', '.join(map(repr, types))}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {json.dumps(value)[:40]} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for req in schema.get("required", []) or []:
            if req not in value:
                out.append(f"{path}: {req!r} is a required property")
        props = schema.get("properties") or {}
        for k, v in value.items():
            if isinstance(props.get(k), dict):
                out += _minimal_schema_errors(v, props[k], f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: additional property {k!r} is not allowed")
    return out


# ---------------------------------------------------------------- lint

@dataclass(slots=True)
class ToolProblem:
    rule: str
    message: str
    field: str | None = None


def _field(fmt: str | None, i: int, offset: int, sub: str = "") -> str:
    j = i - offset
    if fmt == "glaive":  # free text: the turn has no path of its own
        return "chat"
    if fmt == "sharegpt":
        return f"conversations[{j}].value"
    return f"messages[{j}]{sub}"


def lint_conversation(messages: list[dict], fmt: str | None = None, offset: int = 0) -> list[ToolProblem]:
    """Tool rules for one canonical conversation. `offset`: messages added in front by conversion (a system
    prompt not in the row), so that fields name the row's own turns."""
    problems: list[ToolProblem] = []
    tools = tools_of(messages) or []
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    for name, fn in by_name.items():
        params = fn.get("parameters")
        if not isinstance(params, dict):
            problems.append(ToolProblem("tools.schema_invalid", f"tool {name!r}: parameters must be a JSON schema object", "tools"))
            continue
        try:
            import jsonschema

            jsonschema.validators.validator_for(params).check_schema(params)
        except ImportError:
            pass
        except jsonschema.exceptions.SchemaError as e:
            problems.append(ToolProblem("tools.schema_invalid", f"tool {name!r}: its parameters schema is invalid: {e.message}", "tools"))
            by_name[name] = {**fn, "parameters": None}
    open_calls: list[tuple[int, str | None, str]] = []  # (message index, id, name) not yet answered
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "assistant" and open_calls:
            _unanswered(open_calls, fmt, offset, problems)
            open_calls = []
        if role == "assistant":
            for j, c in enumerate(m.get("tool_calls") or []):
                fn = c["function"]
                name, args = fn["name"], fn["arguments"]
                where = _field(fmt, i, offset, f".tool_calls[{j}].function")
                if name not in by_name:
                    known = ", ".join(sorted(by_name)) or "none: the row has no `tools`"
                    problems.append(ToolProblem("tools.unknown_name", f"call to {name!r}, a tool not in the row's tools "
                                                f"(known: {known})", where + ".name" if fmt != "sharegpt" else where))
                if isinstance(args, str):
                    problems.append(ToolProblem("tools.args_invalid_json", f"arguments of the call to {name!r} are not "
                                                f"valid JSON: {args[:60]!r}", where + ".arguments" if fmt != "sharegpt" else where))
                elif not isinstance(args, dict):
                    problems.append(ToolProblem("tools.args_invalid_json", f"arguments of the call to {name!r} must be a "
                                                f"JSON object, found {type(args).__name__}",
                                                where + ".arguments" if fmt != "sharegpt" else where))
                elif name in by_name:
                    errs = schema_errors(args, by_name[name].get("parameters"))
                    if errs:
                        problems.append(ToolProblem("tools.args_schema", f"arguments of the call to {name!r} do not match "
                                                    f"its schema: {'; '.join(errs)}",
                                                    where + ".arguments" if fmt != "sharegpt" else where))
                open_calls.append((i, c.get("id"), name))
        elif role == "tool":
            where = _field(fmt, i, offset, ".tool_call_id" if m.get("tool_call_id") else ".content")
            if not open_calls:
                problems.append(ToolProblem("tools.result_orphan", "a tool result with no preceding call to answer", where))
                continue
            tid = m.get("tool_call_id")
            k = None
            if tid is not None and any(c[1] is not None for c in open_calls):
                k = next((x for x, c in enumerate(open_calls) if c[1] == tid), None)
                if k is None:
                    ids = ", ".join(repr(c[1]) for c in open_calls if c[1] is not None)
                    problems.append(ToolProblem("tools.result_orphan", f"tool result for call id {tid!r}, which matches no "
                                                f"open call (open: {ids})", where))
                    continue
            elif m.get("name") and any(c[2] == m["name"] for c in open_calls):
                k = next(x for x, c in enumerate(open_calls) if c[2] == m["name"])
            else:
                k = 0
            open_calls.pop(k)
        elif role == "user" and open_calls:
            _unanswered(open_calls, fmt, offset, problems)
            open_calls = []
    # calls left open at the end of the row are fine: the row teaches the call itself
    return problems


def _unanswered(open_calls, fmt, offset, problems) -> None:
    for i, _cid, name in open_calls:
        problems.append(ToolProblem("tools.call_unanswered", f"the call to {name!r} gets no tool result before the "
                                    "conversation goes on", _field(fmt, i, offset, ".tool_calls")))


def conversion_offset(row: dict, fmt: str | None, messages: list[dict]) -> int:
    """Messages that conversion put in front of the row's own turns (a system prompt)."""
    own = row.get("messages") if fmt == "messages" else row.get("conversations") if fmt == "sharegpt" else None
    if not isinstance(own, list) or not messages:
        return 0
    first = own[0] if own else None
    own_system = isinstance(first, dict) and (first.get("role") == "system" or str(first.get("from", "")).lower() == "system")
    return 1 if messages[0].get("role") == "system" and not own_system else 0


@dataclass
class ToolStats:
    """File-level tool counts for the lint report's stats["tools"]."""

    rows: int = 0
    calls: int = 0
    results: int = 0
    names: dict[str, int] = field(default_factory=dict)  # calls per tool name (the first 50 names)

    def add(self, messages: list[dict]) -> None:
        if not uses_tools(messages):
            return
        self.rows += 1
        for m in messages:
            for c in m.get("tool_calls") or []:
                self.calls += 1
                nm = c["function"]["name"]
                if nm in self.names or len(self.names) < 50:
                    self.names[nm] = self.names.get(nm, 0) + 1
            if m.get("role") == "tool":
                self.results += 1

    def to_dict(self) -> dict:
        return {"rows": self.rows, "calls": self.calls, "results": self.results,
                "names": dict(sorted(self.names.items(), key=lambda kv: -kv[1]))}


def call_text(call: dict) -> str:
    """One call as the JSON a Hermes-style template writes: {"name": ..., "arguments": {...}}."""
    fn = call["function"]
    return json.dumps({"name": fn["name"], "arguments": fn["arguments"]}, ensure_ascii=False)


__all__ = ["Conversation", "ToolProblem", "ToolStats", "conversion_offset", "finish", "lint_conversation",
           "normalize_call", "parse_tools", "require_tool_template", "row_has_tools", "schema_errors",
           "template_tool_problem", "tools_of", "uses_tools"]
