"""Ollama Modelfile: FROM the GGUF, the chat template translated into Ollama's Go
TEMPLATE, stop tokens, and the system prompt the model was trained with.

The translation is derived, not looked up: we render the tokenizer's own chat template
on sentinel conversations and read off the pieces around each message (the role
header before it, the end-of-turn after it, the generation prompt at the end). That
covers ChatML, Llama-3, Phi-3 and other "header + content + end-of-turn" templates with
one code path. The result is then checked by rendering fresh conversations both ways
(Jinja through the tokenizer, Go through `gotemplate`) and comparing the strings; a
template that cannot be translated falls back to a generic one, with a warning.

Ollama's side, mirrored in `ollama_values`: system messages are collected into
`.System` (joined by blank lines), consecutive messages of one role are merged, and
the Modelfile's SYSTEM is used when a request brings no system message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftwizard.export.gotemplate import render as render_go

_S, _U1, _A1, _U2 = "SYSxq7Z", "USRxq1Z", "ASTxq1Z", "USRxq2Z"
GENERIC_TEMPLATE = ('{{ if .System }}{{ .System }}\n\n{{ end }}{{ range .Messages }}{{ .Role }}: {{ .Content }}\n'
                    '{{ end }}assistant: ')


@dataclass
class TurnFormat:
    """A chat template as pieces: BOS + [A role B content POST]... + GEN."""

    a: str
    b: str
    post: str
    gen: str
    bos: str = ""
    default_system: str | None = None
    system_role: bool = True
    family: str = "turn-tags"

    def go_template(self) -> str:
        def turn(role: str, var: str) -> str:
            return f"{self.a}{role}{self.b}{{{{ {var} }}}}{self.post}"

        sys_part = f"{{{{ if .System }}}}{turn('system', '.System')}{{{{ end }}}}" if self.system_role else ""
        return (sys_part + "{{ range .Messages }}"
                f'{{{{ if eq .Role "user" }}}}{turn("user", ".Content")}'
                f'{{{{ else if eq .Role "assistant" }}}}{turn("assistant", ".Content")}'
                "{{ end }}{{ end }}" + self.gen)


@dataclass
class Translation:
    template: str
    family: str                      # chatml, llama3, turn-tags, generic
    stops: list[str]
    default_system: str | None
    bos: str = ""                    # added by llama.cpp itself, so not in TEMPLATE
    warnings: list[str] = field(default_factory=list)


def _render(tok, messages: list[dict], gen: bool = True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def _common_suffix(x: str, y: str) -> str:
    n = 0
    while n < min(len(x), len(y)) and x[-1 - n] == y[-1 - n]:
        n += 1
    return x[len(x) - n:] if n else ""


def _turn_start(tok, common: str) -> str:
    """The turn-start marker: the common suffix cut to begin at a special token ('|><|start_header_id|>'
    shares '|>' with the end of '<|eot_id|>' and '<|begin_of_text|>', but the marker is '<|start_header_id|>')."""
    specials = [t for t in getattr(tok, "get_added_vocab", lambda: {})() if t]
    for i in range(len(common)):
        if any(common.startswith(t, i) for t in specials):
            return common[i:]
    i = common.find("<")  # no added-token list: tag-style markers start with '<'
    return common[i:] if i > 0 else common


def derive_turn_format(tok) -> TurnFormat:
    """Read the turn pieces off the tokenizer's template; raises ValueError when it has another shape."""
    system_role = True
    try:
        full = _render(tok, [{"role": "system", "content": _S}, {"role": "user", "content": _U1},
                             {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}])
    except Exception:
        system_role = False
        full = _render(tok, [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                             {"role": "user", "content": _U2}])
    marks = ([_S] if system_role else []) + [_U1, _A1, _U2]
    pos = [full.find(m) for m in marks]
    if any(p < 0 for p in pos) or pos != sorted(pos) or any(full.count(m) != 1 for m in marks):
        raise ValueError("the template does not place each message's text once, in order")
    segs = [full[:pos[0]]] + [full[pos[k] + len(marks[k]):pos[k + 1]] for k in range(len(marks) - 1)]
    tail = full[pos[-1] + len(marks[-1]):]
    if system_role:
        head, sys_user, user_asst, asst_user = segs
    else:
        head, user_asst, asst_user = segs
        sys_user = None
    # user_asst = POST + A + "assistant" + B ; asst_user = POST + A + "user" + B
    ia, iu = user_asst.rfind("assistant"), asst_user.rfind("user")
    if ia < 0 or iu < 0:
        raise ValueError("the role names do not appear in the template's turn headers")
    post_a, b = user_asst[:ia], user_asst[ia + len("assistant"):]
    if asst_user[:iu] != post_a or asst_user[iu + len("user"):] != b:
        raise ValueError("user and assistant turns are formatted differently")
    role_head = "system" if system_role else "user"
    ih = head.rfind(role_head)
    if ih < 0 or head[ih + len(role_head):] != b:
        raise ValueError("the first turn's header differs from the others")
    x = head[:ih]                                   # BOS + A
    a = _turn_start(tok, _common_suffix(post_a, x))
    if not a:
        raise ValueError("no common turn-start marker")
    post, bos = post_a[:len(post_a) - len(a)], x[:len(x) - len(a)]
    if system_role and sys_user != post + a + "user" + b:
        raise ValueError("the system turn is formatted differently from the others")
    if not tail.startswith(post):
        raise ValueError("the last user turn does not end like the others")
    gen = tail[len(post):]
    fmt = TurnFormat(a=a, b=b, post=post, gen=gen, bos=bos, system_role=system_role)
    fmt.default_system = _default_system(tok, fmt)
    fmt.family = ("chatml" if a == "<|im_start|>" else "llama3" if a == "<|start_header_id|>" else "turn-tags")
    return fmt


def _default_system(tok, fmt: TurnFormat) -> str | None:
    """The system prompt the template inserts when a conversation has none (SmolLM, Qwen do)."""
    if not fmt.system_role:
        return None
    out = _render(tok, [{"role": "user", "content": _U1}])
    start = fmt.bos + fmt.a + "system" + fmt.b
    if not out.startswith(start):
        return None
    end = out.find(fmt.post + fmt.a + "user" + fmt.b)
    return out[len(start):end] if end > 0 else None


def ollama_values(messages: list[dict], modelfile_system: str | None) -> dict[str, Any]:
    """What Ollama passes to TEMPLATE for a chat request (its `collate`, plus the Modelfile SYSTEM)."""
    msgs = [dict(m) for m in messages]
    if modelfile_system and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": modelfile_system})
    system, collated = [], []
    for m in msgs:
        if m["role"] == "system":
            system.append(m["content"])
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    return {"System": "\n\n".join(system), "Messages": collated, "Prompt": "", "Response": ""}


def translate(tok, eos_tokens: list[str] | None = None) -> Translation:
    """The chat template as an Ollama TEMPLATE, with stop tokens and the template's default system prompt."""
    warnings: list[str] = []
    if not getattr(tok, "chat_template", None):
        fmt = None
        warnings.append("the tokenizer has no chat template; the Modelfile uses a generic one")
    else:
        try:
            fmt = derive_turn_format(tok)
        except Exception as e:
            fmt = None
            warnings.append(f"could not translate the chat template into Ollama's format ({e}); the Modelfile "
                            "uses a generic template that does NOT match training; write TEMPLATE by hand from "
                            "chat_template.jinja")
    stops = [t for t in (eos_tokens or []) if t]
    if fmt is None:
        return Translation(GENERIC_TEMPLATE, "generic", _dedupe(stops + ["user:"]), None, "", warnings)
    for piece in (fmt.post, fmt.a):
        s = piece.strip()
        if s:
            stops.append(s)
    if not fmt.system_role:
        warnings.append("the chat template has no system role; the Modelfile sends no SYSTEM")
    return Translation(fmt.go_template(), fmt.family, _dedupe(stops), fmt.default_system, fmt.bos, warnings)


def _dedupe(xs: list[str]) -> list[str]:
    out: list[str] = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def check_rendering(tok, tr: Translation, system: str | None, conversations: list[list[dict]]) -> list[str]:
    """Render each conversation through the tokenizer and through TEMPLATE; return the mismatches."""
    problems = []
    for conv in conversations:
        # training put the system prompt into rows without one; Ollama's SYSTEM does the same
        trained = conv if not system or any(m["role"] == "system" for m in conv) else \
            [{"role": "system", "content": system}] + conv
        hf = _render(tok, trained)
        if tr.bos and hf.startswith(tr.bos):
            hf = hf[len(tr.bos):]
        go = render_go(tr.template, ollama_values(conv, system))
        if hf != go:
            problems.append(f"conversation {conversations.index(conv) + 1}: chat template gives {hf[:160]!r}, "
                            f"Modelfile TEMPLATE gives {go[:160]!r}")
    return problems


def probe_conversations(system: str | None) -> list[list[dict]]:
    """Conversations that exercise the template: with and without a system turn, multi-turn."""
    u = {"role": "user", "content": "What colour is the sky?\nAnswer in one word."}
    a = {"role": "assistant", "content": "Blue."}
    u2 = {"role": "user", "content": "And grass?"}
    convs = [[u], [u, a, u2]]
    convs.append([{"role": "system", "content": system or "You are terse."}, u, a, u2])
    return convs


def modelfile_text(gguf_name: str, tr: Translation, system: str | None, params: dict[str, Any] | None = None) -> str:
    """The Modelfile. Triple-quoted blocks cannot hold '\"\"\"', which no chat template uses."""
    for label, text in (("TEMPLATE", tr.template), ("SYSTEM", system or "")):
        if '"""' in text:
            raise ValueError(f'the {label} contains """ which a Modelfile cannot quote')
    lines = [f"# Made by ftwizard. Create the model with: ollama create NAME -f Modelfile",
             f"FROM ./{gguf_name}", "", f'TEMPLATE """{tr.template}"""', ""]
    for s in tr.stops:
        lines.append(f"PARAMETER stop {_quote(s)}")
    for k, v in (params or {}).items():
        lines.append(f"PARAMETER {k} {v}")
    if system:
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
