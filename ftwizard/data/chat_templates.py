"""Chat templates for base models that have none, and the one place that decides which template a run uses.

`data.chat_template` is "auto" (the model's own; ChatML when it has none), a built-in name, or a path to a
.jinja file. `apply_template(tokenizer, choice)` is the one function that acts on it: the trainer, the
pre-flight check, lint / `data show` / `data stats` and eval all call it, so they render every row the same
way. Plain `text` rows need no template (`needs_template` says when a data file has chat rows).

A built-in template declares the special tokens it needs and its end-of-turn token. Tokens missing from the
vocabulary are added as special tokens (their embedding rows are then created and trained, see
ftwizard.models.vocab); the end-of-turn token becomes the tokenizer's eos, so generation, the assistant-only
loss spans (ftwizard.data.template), eval, the server and export all stop where an answer ends. The
template is saved with the tokenizer into the run's adapter/ or model/ folder, which every later step reads.

The built-ins, and why each:
- chatml: `<|im_start|>role ... <|im_end|>`. The most common open format (Qwen, SmolLM, Hermes, Yi,
  OpenHermes data), understood by llama.cpp, Ollama and vLLM; two tokens. It renders tools Hermes/Qwen-style
  (the tool list inside <tools></tools> in the system turn, calls as <tool_call>{json}</tool_call>, results as
  <tool_response> in a user turn), the format most tool-calling data and parsers expect. The default.
- llama3: Meta's Llama 3 header format. A Llama-3.x base already has its tokens in the vocabulary (never
  trained in the base), so a Llama-3 base tuned this way is compatible with the Llama-3 instruct ecosystem.
- gemma: `<start_of_turn>user ... <end_of_turn>` (assistant turns are "model"); Gemma bases carry these tokens.
- mistral: `[INST] ... [/INST]` closed by the tokenizer's own eos (Mistral v0.1-v0.3 and Llama 2 style).
  Needs no new token at all: [INST] is plain text.
- alpaca: `### Instruction:` / `### Response:` plain text, closed by the eos. No new token and no embedding
  change: the choice when the vocabulary must stay as it is (a merged model for a tool that cannot take new
  tokens), and the format of much older instruction data.
Only chatml renders tools; the others refuse a conversation with tools or tool turns (clear message).

Light: no transformers import; the functions take a tokenizer object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ftwizard.errors import UserError

AUTO = "auto"
# A template starts with the bos token only when the base's tokenizer starts every text with it (as the base
# was pre-trained); apply_template removes this opening otherwise (GPT-2-style tokenizers, Qwen).
BOS = "{{- bos_token }}"

_CHATML = BOS + r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' and loop.first %}
    {%- elif message['role'] == 'assistant' and message.get('tool_calls') %}
        {{- '<|im_start|>assistant' }}
        {%- if message['content'] %}
            {{- '\n' + message['content'] }}
        {%- endif %}
        {%- for tool_call in message['tool_calls'] %}
            {%- if tool_call['function'] is defined %}
                {%- set tool_call = tool_call['function'] %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' + tool_call['name'] + '", "arguments": ' }}
            {%- if tool_call['arguments'] is string %}
                {{- tool_call['arguments'] }}
            {%- else %}
                {{- tool_call['arguments'] | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message['role'] == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message['content'] + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

_NO_TOOLS = r"""
{%- if tools or messages | selectattr('role', 'equalto', 'tool') | list %}
    {{- raise_exception('the ' + template_name + ' template cannot render tools or tool turns; use data.chat_template: chatml') }}
{%- endif %}"""

# Templates without a system role of their own prepend it to the first user turn.
_SYSTEM_FIRST = r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] + '\n\n' %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system = '' %}
{%- endif %}
"""

_LLAMA3 = BOS + _NO_TOOLS.replace("template_name", "'llama3'") + r"""
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

_GEMMA = BOS + _NO_TOOLS.replace("template_name", "'gemma'") + _SYSTEM_FIRST + r"""
{%- for message in messages %}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
    {{- '<start_of_turn>' + role + '\n' + (system if loop.first else '') + message['content'] + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<start_of_turn>model\n' }}
{%- endif %}
"""

_MISTRAL = BOS + _NO_TOOLS.replace("template_name", "'mistral'") + _SYSTEM_FIRST + r"""
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
        {{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {{- message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('the mistral template has only user and assistant turns (and a leading system prompt)') }}
    {%- endif %}
{%- endfor %}
"""

_ALPACA = BOS + _NO_TOOLS.replace("template_name", "'alpaca'") + r"""
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {{- message['content'] + '\n\n' }}
    {%- elif message['role'] == 'user' %}
        {{- '### Instruction:\n' + message['content'] + '\n\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- '### Response:\n' + message['content'] + eos_token + '\n\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '### Response:\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class ChatTemplate:
    """A built-in (or file) template: its Jinja text, the special tokens it needs, its end-of-turn token."""

    name: str
    title: str
    jinja: str
    special_tokens: tuple[str, ...]   # must be single tokens (added as special tokens when missing)
    end_of_turn: str | None           # closes an assistant turn; None: the tokenizer's own eos
    tools: bool = False               # renders `tools` and tool_calls / tool turns
    why: str = ""


BUILTIN: dict[str, ChatTemplate] = {t.name: t for t in (
    ChatTemplate("chatml", "ChatML", _CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>", tools=True,
                 why="the most common open format (Qwen, SmolLM, Hermes); renders tools; 2 tokens"),
    ChatTemplate("llama3", "Llama 3", _LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                 "<|eot_id|>", why="Meta's Llama 3 format; a Llama-3 base already has its tokens"),
    ChatTemplate("gemma", "Gemma", _GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>",
                 why="Gemma's format; a Gemma base already has its tokens"),
    ChatTemplate("mistral", "Mistral [INST]", _MISTRAL, (), None,
                 why="Mistral / Llama 2 [INST] format, closed by the eos; no new tokens"),
    ChatTemplate("alpaca", "Alpaca (plain text)", _ALPACA, (), None,
                 why="plain-text ### Instruction / ### Response, closed by the eos; no new tokens"),
)}
DEFAULT = "chatml"
NAMES = tuple(BUILTIN)


def check_choice(value: str) -> str:
    """Config validation of data.chat_template (the config model calls it): auto, a built-in, or a .jinja path."""
    v = (value or "").strip()
    if v == AUTO or v in BUILTIN:
        return v
    if v.lower().endswith((".jinja", ".j2", ".jinja2")):
        return v
    raise ValueError(f"data.chat_template must be auto, one of {', '.join(NAMES)}, or a path to a .jinja file")


def is_path_choice(choice: str) -> bool:
    return choice not in BUILTIN and choice != AUTO


# ---- what a choice means for one tokenizer ------------------------------------------------------------
@dataclass
class Applied:
    """What apply_template did to a tokenizer."""

    source: str                        # "model" (its own template), a built-in name, or the .jinja path
    title: str
    added_tokens: list[str] = field(default_factory=list)     # new to the vocabulary: new embedding rows
    trained_tokens: list[str] = field(default_factory=list)   # the template's tokens whose rows train
    end_of_turn: str | None = None
    eos_changed_from: str | None = None

    @property
    def changed(self) -> bool:
        return self.source != "model"

    def token_ids(self, tokenizer) -> list[int]:
        return sorted({int(tokenizer.convert_tokens_to_ids(t)) for t in self.trained_tokens})

    def describe(self) -> str:
        if not self.changed:
            return "the model's own chat template"
        out = f"the {self.title} chat template"
        if self.added_tokens:
            out += f", adding {len(self.added_tokens)} special token(s) ({', '.join(self.added_tokens)})"
        if self.trained_tokens:
            out += f"; the embedding rows of {', '.join(self.trained_tokens)} train"
        return out


def has_own_template(tokenizer) -> bool:
    t = getattr(tokenizer, "chat_template", None)
    return bool(t) and isinstance(t, str)


def resolve(choice: str, tokenizer=None, *, where: str = "data.chat_template") -> ChatTemplate | None:
    """The template a choice stands for; None when it is the model's own (auto on a model that has one)."""
    choice = (choice or AUTO).strip()
    if choice == AUTO:
        return None if tokenizer is not None and has_own_template(tokenizer) else BUILTIN[DEFAULT]
    if choice in BUILTIN:
        return BUILTIN[choice]
    return load_file(Path(choice), where=where)


def load_file(path: Path, *, where: str = "data.chat_template") -> ChatTemplate:
    """A user's .jinja template. Its special tokens are the `<|...|>` markers and the known end-of-turn
    markers it writes; its end of turn is the first known end-of-turn marker in it (else the eos)."""
    from ftwizard.data.template import KNOWN_END_OF_TURN

    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"chat template file not found: {path}", where=where,
                        fix=f"check the path (relative to the config file), or use auto or one of {', '.join(NAMES)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the chat template file {path}: {e}", where=where,
                        fix="save it as UTF-8 text") from None
    try:
        import jinja2

        jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except Exception as e:  # jinja2.TemplateSyntaxError and friends
        line = getattr(e, "lineno", None)
        raise UserError(f"the chat template file is not valid Jinja: {getattr(e, 'message', None) or e}",
                        where=f"{path}:{line}" if line else str(path), fix="fix the template at that line") from None
    if "messages" not in text:
        raise UserError("the chat template file never reads `messages`, so it cannot render a conversation",
                        where=str(path), fix="write a chat template (see `chat_template.jinja` of any instruct model)")
    markers = list(dict.fromkeys(re.findall(r"<\|[A-Za-z0-9_]+\|>", text)
                                 + [m for m in ("<start_of_turn>", "<end_of_turn>") if m in text]))
    eot = next((m for m in KNOWN_END_OF_TURN if m in text), None)
    if eot is not None and eot not in markers:
        markers.append(eot)
    return ChatTemplate(path.name, f"file {path.name}", text, tuple(markers), eot, tools="tools" in text)


def _adds_bos(tokenizer) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    try:
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    except Exception:
        return False
    return bool(ids) and ids[0] == bos_id


def template_text(tpl: ChatTemplate, tokenizer) -> str:
    """The Jinja text for this tokenizer: the bos opening kept only where the tokenizer adds a bos itself."""
    text = tpl.jinja
    if text.startswith(BOS) and not _adds_bos(tokenizer):
        text = text[len(BOS):]
    return text.strip("\n") if tpl.name in BUILTIN else text


def apply_template(tokenizer, choice: str = AUTO, *, needed: bool = True,
                   where: str = "data.chat_template") -> Applied:
    """THE decision: set the chat template a run uses on `tokenizer` (in place) and say what changed.

    auto keeps a model's own template (nothing changes) and gives a model without one ChatML. A built-in or
    file template replaces the model's own. Missing special tokens are added (their ids follow the
    vocabulary: the model's embeddings must be resized, ftwizard.models.vocab.fit_embeddings); the template's
    end-of-turn token becomes the eos. `needed=False` (plain `text` data): nothing is applied."""
    if not needed:
        return Applied("model", "none (plain text rows)")
    tpl = resolve(choice, tokenizer, where=where)
    if tpl is None:
        return Applied("model", "the model's own")
    if tpl.end_of_turn is None and not getattr(tokenizer, "eos_token", None):
        raise UserError(f"the {tpl.title} template closes turns with the eos token, and this tokenizer has none",
                        where=where, fix="use data.chat_template: chatml (it brings its own end-of-turn token)")
    vocab = tokenizer.get_vocab()
    missing = [t for t in tpl.special_tokens if t not in vocab]
    if missing:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    for t in tpl.special_tokens:  # each must be one token, or the end-of-turn / masks would be wrong
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise UserError(f"the template's token {t} does not encode as a single token in this tokenizer",
                            where=where, fix="use another data.chat_template (chatml adds its own tokens)")
    tokenizer.chat_template = template_text(tpl, tokenizer)
    old_eos = getattr(tokenizer, "eos_token", None)
    changed_from = None
    if tpl.end_of_turn and old_eos != tpl.end_of_turn:
        if getattr(tokenizer, "pad_token", None) is None and old_eos:
            tokenizer.pad_token = old_eos  # padding keeps the old eos, never the end-of-turn the model learns
        tokenizer.eos_token = tpl.end_of_turn
        changed_from = old_eos
    source = choice if is_path_choice(choice) else tpl.name
    return Applied(source, tpl.title, missing, list(tpl.special_tokens), tpl.end_of_turn or tokenizer.eos_token,
                   changed_from)


def cache_key(choice: str) -> tuple:
    """A key for caches of what a choice renders (a file's size and time, so an edited template re-lints)."""
    choice = (choice or AUTO).strip()
    if is_path_choice(choice):
        try:
            st = Path(choice).expanduser().stat()
            return (choice, st.st_size, st.st_mtime_ns)
        except OSError:
            return (choice, None)
    return (choice,)


def needs_template(path: Path | str | None, fmt: str = "auto") -> bool:
    """Whether a data file holds chat rows (which need a template): False only for plain `text` rows."""
    if fmt == "text":
        return False
    if fmt != "auto" or path is None:
        return True
    try:
        from ftwizard.data.formats import detect_format
        from ftwizard.data.loading import iter_records

        for rec in iter_records(Path(path)):
            if isinstance(rec.value, dict):
                return detect_format(rec.value) != "text"
    except Exception:
        return True
    return True


def _base_folder(base: str) -> Path | None:
    from ftwizard.config import EMBEDDED

    if base == EMBEDDED:
        from ftwizard.models.embedded import cache_path, is_cached

        return cache_path() if is_cached() else None
    p = Path(base).expanduser()
    if p.is_dir():
        return p
    if base.count("/") == 1:
        from ftwizard.hardware.shapes import cached_config

        cfg = cached_config(base)
        return cfg.parent if cfg is not None else None
    return None


def folder_has_template(folder: Path) -> bool:
    """Whether a model folder ships a chat template (files only, no transformers)."""
    import json

    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False


def base_has_template(base: str) -> bool | None:
    """Whether `model.base` brings a chat template, from files alone (the wizard's Model step asks): None when
    that cannot be told here (a hub id not in the local cache, a run folder). (h14e)"""
    from ftwizard.config import EMBEDDED

    if base == EMBEDDED:
        return True
    folder = _base_folder(base)
    if folder is None or not (folder / "config.json").is_file():
        return None
    return folder_has_template(folder)


def planned(base: str, choice: str = AUTO, train: Path | str | None = None,
            fmt: str = "auto") -> ChatTemplate | None:
    """The template a run will apply instead of the model's own, from files alone (no transformers): None for
    plain text rows, or auto on a model whose folder has a template (or is not local, so unknown)."""
    if not needs_template(train, fmt):
        return None
    choice = (choice or AUTO).strip()
    if choice == AUTO:
        folder = _base_folder(base)
        return None if folder is None or folder_has_template(folder) else BUILTIN[DEFAULT]
    if choice in BUILTIN:
        return BUILTIN[choice]
    try:
        return load_file(Path(choice))
    except UserError:
        return None  # the check reports the file itself


def trained_token_count(base: str, choice: str = AUTO, train: Path | str | None = None, fmt: str = "auto") -> int:
    """How many chat-template tokens' embedding rows a run trains (the estimate's input), from files alone."""
    tpl = planned(base, choice, train, fmt)
    return len(tpl.special_tokens) if tpl is not None else 0
