"""A tiny renderer for the subset of Go's text/template that our Modelfile TEMPLATEs use.

Why hand-written: Ollama renders TEMPLATE with Go's text/template, and there is no Go
toolchain or Go-template library on PyPI we could rely on. To check that a Modelfile
formats a conversation exactly as the tokenizer's chat template does, we render it
here, with Go's semantics for the constructs we emit and nothing more:

    text, {{ .Field }}, {{ if P }}...{{ else if P }}...{{ else }}...{{ end }},
    {{ range .Messages }}...{{ end }}, pipelines `.Field`, `"lit"`, `eq A B`, `ne A B`,
    `and A B`, `or A B`, `not A`, and the `{{-` / `-}}` whitespace trims.

Anything else raises `TemplateError`, so a template outside the subset cannot pass a
check by accident.
"""

from __future__ import annotations

import re
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\$?\.[A-Za-z_][A-Za-z0-9_.]*|\.)|([A-Za-z_]+)|(\()|(\)))')


class TemplateError(ValueError):
    pass


def _lex(src: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", body) items, applying trim markers."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            items.append(("text", text))
        items.append(("action", m.group(2).strip()))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if text:
        items.append(("text", text))
    if "{{" in "".join(t for k, t in items if k == "text"):
        raise TemplateError("unbalanced '{{' in template")
    return items


def _parse(items: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
    """Parse nodes until an action whose keyword is in `stop`; return (nodes, next index, stop action)."""
    nodes: list = []
    while i < len(items):
        kind, body = items[i]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop or body in stop:
            return nodes, i, body
        if word == "if":
            branches, i = _parse_if(items, i)
            nodes.append(("if", branches))
        elif word == "range":
            expr = body[len("range"):].strip()
            inner, i, end = _parse(items, i + 1, ("end", "else"))
            if end != "end":
                raise TemplateError("{{ range }} with {{ else }} is not supported")
            nodes.append(("range", expr, inner))
            i += 1
        elif word in ("end", "else"):
            raise TemplateError(f"unexpected {{{{ {body} }}}}")
        elif word.startswith("/*"):
            i += 1
        else:
            nodes.append(("expr", body))
            i += 1
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, i, ""


def _parse_if(items, i):
    cond = items[i][1][len("if"):].strip()
    branches = []
    i += 1
    while True:
        body, i, stop = _parse(items, i, ("end", "else"))
        branches.append((cond, body))
        if stop == "end":
            return branches, i + 1
        rest = stop[len("else"):].strip()
        if rest.startswith("if "):
            cond = rest[3:].strip()
        elif rest == "":
            cond = None
        else:
            raise TemplateError(f"unsupported {{{{ {stop} }}}}")
        i += 1


def _tokens(expr: str) -> list:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {expr!r} at {pos}")
        s, field, ident, lp, rp = m.groups()
        if s is not None:
            out.append(("str", bytes(s, "utf-8").decode("unicode_escape")))
        elif field is not None:
            out.append(("field", field))
        elif ident is not None:
            out.append(("ident", ident))
        elif lp:
            out.append(("(", "("))
        else:
            out.append((")", ")"))
        pos = m.end()
    return out


def _lookup(field: str, dot: Any, root: Any) -> Any:
    if field == ".":
        return dot
    base, path = (root, field[2:]) if field.startswith("$.") else (dot, field[1:])
    cur = base
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise TemplateError(f"can't evaluate field {part} (in {field})")
    return cur


def _truth(v: Any) -> bool:
    return bool(v)


_FUNCS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not _truth(a),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
}


def _eval(expr: str, dot: Any, root: Any) -> Any:
    toks = _tokens(expr)
    val, pos = _eval_cmd(toks, 0, dot, root)
    if pos != len(toks):
        raise TemplateError(f"unexpected tokens in {expr!r}")
    return val


def _eval_arg(toks, pos, dot, root):
    kind, v = toks[pos]
    if kind == "str":
        return v, pos + 1
    if kind == "field":
        return _lookup(v, dot, root), pos + 1
    if kind == "(":
        val, pos = _eval_cmd(toks, pos + 1, dot, root)
        if pos >= len(toks) or toks[pos][0] != ")":
            raise TemplateError("missing ')'")
        return val, pos + 1
    if kind == "ident" and v in ("true", "false"):
        return v == "true", pos + 1
    raise TemplateError(f"unsupported argument {v!r}")


def _eval_cmd(toks, pos, dot, root):
    if pos >= len(toks):
        raise TemplateError("empty pipeline")
    kind, v = toks[pos]
    if kind == "ident" and v not in ("true", "false"):
        if v not in _FUNCS:
            raise TemplateError(f"function {v!r} is not in the supported subset")
        args, pos = [], pos + 1
        while pos < len(toks) and toks[pos][0] != ")":
            a, pos = _eval_arg(toks, pos, dot, root)
            args.append(a)
        return _FUNCS[v](*args), pos
    return _eval_arg(toks, pos, dot, root)


def _exec(nodes, dot, root, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            v = _eval(node[1], dot, root)
            out.append("" if v is None else str(v))
        elif node[0] == "if":
            for cond, body in node[1]:
                if cond is None or _truth(_eval(cond, dot, root)):
                    _exec(body, dot, root, out)
                    break
        elif node[0] == "range":
            seq = _eval(node[1], dot, root)
            for item in seq or []:
                _exec(node[2], item, root, out)


def render(template: str, values: dict[str, Any]) -> str:
    """Render `template` with `values` (e.g. {"System": ..., "Messages": [{"Role", "Content"}]})."""
    nodes, _, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _exec(nodes, values, values, out)
    return "".join(out)
