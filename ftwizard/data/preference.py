"""Preference data (DPO, ORPO, KTO): read every common row shape into one form, and lint it.

Shapes read (auto-detected per row, `ftwizard.data.formats.detect_format`):
- pairs, "preference": `prompt` / `chosen` / `rejected`, each a string or a list of messages (TRL's
  "conversational" form); `chosen` and `rejected` given as whole conversations that share their first turns
  and no `prompt` (Anthropic HH style: the shared turns become the prompt; raw HH text with
  "\\n\\nHuman:" / "\\n\\nAssistant:" markers too); a `prompt` that the sides repeat at their start; an
  optional `system` string.
- unpaired, "kto": `prompt` / `completion` / `label` (a bool; "true"/"false" text from CSV is read too).

The one normalised form (what the trainer hands TRL, and what the eval scores):
    pairs:    {"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
    unpaired: {"prompt": [messages], "completion": [...], "label": bool}

Light: no torch. Lint's rules for this data live here too (`PreferenceLint`); ftwizard.data.lint wires them.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from ftwizard.data.formats import PREFERENCE_FORMATS, SHAREGPT_ROLES, _kto_label, detect_format
from ftwizard.data.loading import UNREADABLE, iter_records, json_kind
from ftwizard.errors import UserError

ROLES = ("system", "user", "assistant")
HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"

# Length bias (lint pref.length_bias). Preference data whose chosen side is systematically longer teaches
# "longer is better" rather than the quality difference: reward models and DPO pick up length first
# (Singhal et al. 2023, "A Long Way to Go: Investigating Length Correlations in RLHF", arXiv:2310.03716;
# Park et al. 2024, "Disentangling Length from Quality in Direct Preference Optimization", arXiv:2403.19159,
# where DPO's outputs grow longer over training on such data). Flagged when one side is the longer one in
# this share of pairs AND the median length ratio says the difference is not marginal.
LENGTH_BIAS_SHARE = 0.70
LENGTH_BIAS_RATIO = 1.25
LENGTH_BIAS_MIN_PAIRS = 10
# KTO: the paper (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
# arXiv:2402.01306, section 4) and TRL's KTO docs recommend weights such that
# desirable_weight * n_desirable / (undesirable_weight * n_undesirable) lies in [1, 4/3]; with the default
# weights (1, 1) a desirable:undesirable ratio far outside that range needs the weights changed.
KTO_RATIO_LOW, KTO_RATIO_HIGH = 0.5, 2.0


class PairError(ValueError):
    """A row that cannot become a normalised preference row: `field` in the user's own keys, `rule` the lint id."""

    def __init__(self, message: str, field: str | None = None, rule: str = "format.unknown"):
        super().__init__(message)
        self.field = field
        self.rule = rule


# ---------------------------------------------------------------- normalising one row
def _text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                       for p in value):
        return "".join(p["text"] for p in value)
    raise PairError(f"{field} must be text, found {json_kind(value)}", field, "content.not_string")


def _hh_turns(text: str) -> list[dict[str, str]] | None:
    """Anthropic HH raw text ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages; None when it is not that."""
    if HH_HUMAN not in text or HH_ASSISTANT not in text:
        return None
    out: list[dict[str, str]] = []
    rest = text
    while rest:
        h, a = rest.find(HH_HUMAN), rest.find(HH_ASSISTANT)
        starts = [(i, m) for i, m in ((h, HH_HUMAN), (a, HH_ASSISTANT)) if i >= 0]
        if not starts:
            if out:
                out[-1]["content"] += rest
            break
        i, marker = min(starts)
        if out and i > 0:
            out[-1]["content"] += rest[:i]
        rest = rest[i + len(marker):]
        out.append({"role": "user" if marker == HH_HUMAN else "assistant", "content": ""})
    for m in out:
        m["content"] = m["content"].strip()
    return out


def _turns(value: Any, field: str, default_role: str) -> list[dict[str, str]]:
    """A side or prompt as messages: a string (one turn of `default_role`), one message, or a list of them."""
    if isinstance(value, str):
        hh = _hh_turns(value)
        if hh is not None and default_role == "user" and hh[-1]["role"] == "assistant" and not hh[-1]["content"]:
            hh = hh[:-1]  # an HH prompt ends with an open "Assistant:" turn
        return hh if hh is not None else [{"role": default_role, "content": value}]
    if isinstance(value, dict) and ("role" in value or "from" in value):
        value = [value]
    if not isinstance(value, list):
        raise PairError(f"{field} must be text or a list of messages, found {json_kind(value)}", field,
                        "content.not_string")
    if value and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return [{"role": default_role, "content": _text(value, field)}]  # content parts, not messages
    out = []
    for i, m in enumerate(value):
        here = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise PairError(f"{here} must be a message object, found {json_kind(m)}", here, "content.not_string")
        raw = m.get("role", m.get("from"))
        role = raw if raw in ROLES else SHAREGPT_ROLES.get(str(raw).lower()) if raw is not None else None
        if raw is None:
            raise PairError(f"{here} has no 'role'", f"{here}.role", "keys.missing")
        if role is None:
            raise PairError(f"unknown role {raw!r} at {here}; use system, user or assistant", f"{here}.role",
                            "roles.unknown")
        ckey = "content" if "content" in m else "value" if "value" in m else None
        if ckey is None:
            raise PairError(f"{here} has no 'content'", f"{here}.content", "keys.missing")
        out.append({"role": role, "content": _text(m[ckey], f"{here}.{ckey}")})
    return out


def _side_field(field: str, turns_value: Any) -> str:
    return f"{field}[0].content" if isinstance(turns_value, list) else field


def _check_side(turns: list[dict[str, str]], field: str, raw: Any) -> None:
    if not turns:
        raise PairError(f"{field} is empty", field, "content.empty")
    if turns[0]["role"] != "assistant":
        raise PairError(f"{field} must start with an assistant turn, found {turns[0]['role']}",
                        f"{field}[0].role" if isinstance(raw, list) else field, "roles.order")
    for i, m in enumerate(turns):
        if not m["content"].strip():
            where = f"{field}[{i}].content" if isinstance(raw, list) else field
            raise PairError(f"{field} is {'empty' if not m['content'] else 'only whitespace'}", where, "content.empty")


def _check_prompt(prompt: list[dict[str, str]], field: str) -> None:
    if not any(m["role"] != "system" for m in prompt):
        raise PairError("the prompt has no user turn", field, "keys.missing" if not prompt else "roles.order")
    for i, m in enumerate(prompt):
        if m["role"] == "system" and i != 0:
            raise PairError(f"system message at {field}[{i}]; only the first message may be system", f"{field}[{i}].role",
                            "roles.order")
    if prompt[-1]["role"] != "user":
        raise PairError(f"the prompt ends with {prompt[-1]['role']}; it must end with a user turn", field, "roles.order")
    for i, m in enumerate(prompt):
        if not m["content"].strip() and m["role"] != "system":
            raise PairError(f"{field} is empty" if len(prompt) == 1 else f"{field}[{i}] is empty", field, "content.empty")


def _add_system(prompt: list[dict[str, str]], row: dict[str, Any], system_prompt: str | None) -> list[dict[str, str]]:
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise PairError(f"system must be text, found {json_kind(system)}", "system", "content.not_string")
    for s in (system, system_prompt):
        if s and s.strip() and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": s}] + prompt
    return prompt


def _strip_prompt(prompt: list[dict[str, str]], side: list[dict[str, str]], field: str) -> list[dict[str, str]]:
    """A side that repeats the prompt at its start (UltraFeedback-style full conversations) loses that part."""
    if side and side[0]["role"] == "assistant":
        return side
    body = [m for m in prompt if m["role"] != "system"]
    own = side[1:] if side and side[0]["role"] == "system" else side
    if own[:len(body)] == body:
        return own[len(body):]
    raise PairError(f"{field} is a whole conversation whose first turns differ from `prompt`", field,
                    "pref.prompt_mismatch")


def _split_common(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> tuple[list, list, list]:
    """Whole conversations for both sides: the shared turns before the first assistant turn that differs are
    the prompt. Raises pref.prompt_mismatch when they part at a user or system turn."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    if k == len(chosen) == len(rejected):  # identical conversations: the last assistant turn is "the answer"
        k = max((i for i, m in enumerate(chosen) if m["role"] == "assistant"), default=len(chosen))
    for side, name in ((chosen, "chosen"), (rejected, "rejected")):
        if k < len(side) and side[k]["role"] != "assistant":
            other = "rejected" if name == "chosen" else "chosen"
            raise PairError(f"chosen and rejected differ before their answers: {name}[{k}] is a {side[k]['role']} turn "
                            f"that {other} does not share, so the two sides answer different prompts",
                            f"rejected[{k}]", "pref.prompt_mismatch")
    return chosen[:k], chosen[k:], rejected[k:]


def normalise_row(row: Any, fmt: str | None = None, system_prompt: str | None = None) -> tuple[str, dict[str, Any]]:
    """One row -> ("pairs", {prompt, chosen, rejected}) or ("unpaired", {prompt, completion, label}).
    Raises PairError naming the field (in the row's own keys) and the lint rule."""
    if not isinstance(row, dict):
        raise PairError(f"each row must be a JSON object, found {json_kind(row)}", None, "row.not_object")
    fmt = fmt or detect_format(row)
    if fmt == "kto":
        for key in ("prompt", "completion", "label"):
            if key not in row:
                raise PairError(f"missing {key!r} (KTO rows are prompt/completion/label)", key, "keys.missing")
        label = _kto_label(row["label"])
        if label is None:
            raise PairError(f"label must be true or false, found {row['label']!r}", "label", "content.not_string")
        prompt = _turns(row["prompt"], "prompt", "user")
        completion = _turns(row["completion"], "completion", "assistant")
        completion = _strip_prompt(prompt, completion, "completion")
        _check_side(completion, "completion", row["completion"])
        prompt = _add_system(prompt, row, system_prompt)
        _check_prompt(prompt, "prompt")
        return "unpaired", {"prompt": prompt, "completion": completion, "label": label}
    if fmt not in (None, "preference"):
        raise PairError(f"row is {fmt} data, not a preference pair", None, "format.mixed")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise PairError(f"missing {key!r} (preference rows are prompt/chosen/rejected)", key, "keys.missing")
    chosen = _turns(row["chosen"], "chosen", "assistant")
    rejected = _turns(row["rejected"], "rejected", "assistant")
    if row.get("prompt") is None:  # whole conversations (Anthropic HH): the shared first turns are the prompt
        if not chosen or not rejected:
            empty = "chosen" if not chosen else "rejected"
            raise PairError(f"{empty} is empty", empty, "content.empty")
        prompt, chosen, rejected = _split_common(chosen, rejected)
        if not prompt:
            raise PairError("no `prompt`, and chosen and rejected share no opening turns to take it from", "prompt",
                            "keys.missing")
    else:
        prompt = _turns(row["prompt"], "prompt", "user")
        chosen = _strip_prompt(prompt, chosen, "chosen")
        rejected = _strip_prompt(prompt, rejected, "rejected")
    _check_side(chosen, "chosen", row["chosen"])
    _check_side(rejected, "rejected", row["rejected"])
    prompt = _add_system(prompt, row, system_prompt)
    _check_prompt(prompt, "prompt")
    return "pairs", {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# ---------------------------------------------------------------- files
def iter_preference_rows(path: Path | str, *, fmt: str = "auto", system_prompt: str | None = None
                         ) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(row number, kind, normalised row) for every row; UserError at the first bad row (file, row, field)."""
    path = Path(path)
    name = path.name
    fix = f"run `ftwizard lint {path}` to see every problem"
    want = None if fmt in (None, "auto") else fmt
    if want is not None and want not in PREFERENCE_FORMATS:
        raise UserError(f"data.format {want!r} is not a preference format", where="data.format",
                        fix="use preference (prompt/chosen/rejected) or kto (prompt/completion/label), or auto")
    for rec in iter_records(path):
        bad = next((p for p in rec.problems if p.rule in UNREADABLE), None)
        if bad is not None or rec.value is None:
            msg = bad.message if bad is not None else "empty row"
            raise UserError(f"{name} row {rec.row}: {msg}", where=f"{path}:{rec.row}", fix=fix)
        row_fmt = want or detect_format(rec.value)
        if row_fmt is None and isinstance(rec.value, dict) and ({"chosen", "rejected"} & set(rec.value)):
            row_fmt = "preference"  # one side missing: normalise_row names it
        if row_fmt not in PREFERENCE_FORMATS:
            keys = ", ".join(sorted(rec.value)[:8]) if isinstance(rec.value, dict) else json_kind(rec.value)
            found = f"{row_fmt} data" if row_fmt else "no known format"
            raise UserError(f"{name} row {rec.row} is not a preference row ({found}; keys: {keys})",
                            where=f"{path}:{rec.row}",
                            fix="preference data is prompt/chosen/rejected (DPO, ORPO) or prompt/completion/label "
                                "(KTO); train other data with training.objective: sft")
        try:
            kind, norm = normalise_row(rec.value, row_fmt, system_prompt)
        except PairError as e:
            field = f", field {e.field}" if e.field else ""
            raise UserError(f"{name} row {rec.row}{field}: {e}", where=f"{path}:{rec.row}", fix=fix) from None
        yield rec.row, kind, norm


def load_preference_file(path: Path | str, *, fmt: str = "auto", system_prompt: str | None = None
                         ) -> tuple[str, list[dict[str, Any]]]:
    """Every row of a preference file in the normalised form: ("pairs" | "unpaired", rows).

    `fmt`: "auto", "preference" or "kto" (data.format). `system_prompt` is put first in prompts without one
    (data.system_prompt), as for SFT. Raises UserError naming the file, row and field of the first bad row,
    when the file mixes pairs with unpaired rows, or when it has no rows."""
    path = Path(path)
    kind_seen: str | None = None
    first_row = 0
    rows: list[dict[str, Any]] = []
    for row, kind, norm in iter_preference_rows(path, fmt=fmt, system_prompt=system_prompt):
        if kind_seen is None:
            kind_seen, first_row = kind, row
        elif kind != kind_seen:
            raise UserError(f"{path.name} row {row} is {_KIND_WORDS[kind]} while row {first_row} is "
                            f"{_KIND_WORDS[kind_seen]}", where=f"{path}:{row}",
                            fix="use one kind per file: pairs for DPO/ORPO, prompt/completion/label rows for KTO")
        rows.append(norm)
    if not rows:
        raise UserError(f"{path} has no rows", where=str(path), fix="add preference pairs (prompt/chosen/rejected)")
    return kind_seen, rows


_KIND_WORDS = {"pairs": "a preference pair (prompt/chosen/rejected)", "unpaired": "an unpaired KTO row "
                                                                                   "(prompt/completion/label)"}


def side_text(turns: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in turns)


# ---------------------------------------------------------------- lint
AddFinding = Callable[..., None]  # Linter.add(rule_id, row, message, field=None, snippet_=None, related=None, ...)


class PreferenceLint:
    """Per-row and whole-file rules for preference data. `feed` each row (already detected as preference or kto),
    then `finish()`; findings go through the linter's own `add`, so they are capped, counted and rendered
    like every other rule."""

    def __init__(self, add: AddFinding, system_prompt: str | None = None):
        self.add = add
        self.system_prompt = system_prompt
        self.pairs = 0
        self.unpaired = 0
        self.seen: dict[bytes, int] = {}
        self.chosen_longer = 0
        self.rejected_longer = 0
        self.ratios: list[float] = []
        self.desirable = 0
        self.undesirable = 0
        self.first_label_row: dict[bool, int] = {}

    def feed(self, row: int, value: Any, fmt: str) -> dict[str, Any] | None:
        """Check one row; returns its normalised form, or None when it is unusable (the finding is added)."""
        try:
            kind, norm = normalise_row(value, fmt, self.system_prompt)
        except PairError as e:
            self.add(e.rule, row, str(e), e.field)
            return None
        if kind == "unpaired":
            self.unpaired += 1
            if norm["label"]:
                self.desirable += 1
            else:
                self.undesirable += 1
            self.first_label_row.setdefault(norm["label"], row)
            key = hashlib.blake2b(repr((norm["prompt"], norm["completion"], norm["label"])).encode(),
                                  digest_size=16).digest()
        else:
            self.pairs += 1
            c, r = side_text(norm["chosen"]), side_text(norm["rejected"])
            if c.strip() == r.strip():
                self.add("pref.identical", row, "chosen and rejected are the same text: the pair teaches nothing "
                         "(its DPO loss gradient is zero)", "rejected")
            lc, lr = len(c.strip()), len(r.strip())
            if lc > lr:
                self.chosen_longer += 1
            elif lr > lc:
                self.rejected_longer += 1
            if lc and lr:
                self.ratios.append(lc / lr)
            key = hashlib.blake2b(repr((norm["prompt"], norm["chosen"], norm["rejected"])).encode(),
                                  digest_size=16).digest()
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = row
        else:
            what = "pair" if kind == "pairs" else "row"
            self.add("pref.duplicate", row, f"this {what} repeats row {first} (same prompt and answers): it weighs "
                     "twice in the loss", related=[first])
        return norm

    def finish(self, objective: str | None) -> None:
        self._length_bias()
        self._kto_balance(objective)

    def _length_bias(self) -> None:
        n = self.pairs
        if n < LENGTH_BIAS_MIN_PAIRS or not self.ratios:
            return
        ratio = statistics.median(self.ratios)
        for side, count, r in (("chosen", self.chosen_longer, ratio), ("rejected", self.rejected_longer, 1 / ratio)):
            share = count / n
            if share >= LENGTH_BIAS_SHARE and r >= LENGTH_BIAS_RATIO:
                other = "rejected" if side == "chosen" else "chosen"
                lesson = "longer is better" if side == "chosen" else "shorter is better"
                self.add("pref.length_bias", None,
                         f"{side} is longer than {other} in {share:.0%} of {n:,} pairs (median length ratio "
                         f"{side}/{other} {r:.1f}x, in characters): the model learns \"{lesson}\" as much as what "
                         "makes the chosen answer better (Singhal et al. 2023; Park et al. 2024)")

    def _kto_balance(self, objective: str | None) -> None:
        d, u = self.desirable, self.undesirable
        if not self.unpaired:
            return
        if d == 0 or u == 0:
            have = "desirable (true)" if u == 0 else "undesirable (false)"
            self.add("pref.kto_balance", None, f"all {self.unpaired:,} rows are {have}: KTO needs both desirable and "
                     "undesirable examples to learn what to prefer")
            return
        ratio = d / u
        if KTO_RATIO_LOW <= ratio <= KTO_RATIO_HIGH:
            return
        # weights with desirable_weight * d / (undesirable_weight * u) inside [1, 4/3] (KTO paper, TRL docs)
        if ratio > 1:
            fix = f"undesirable_weight about {ratio:.1f} (or {ratio * 0.75:.1f}-{ratio:.1f}) with desirable_weight 1"
        else:
            fix = f"desirable_weight about {1 / ratio:.1f} (or {1 / ratio:.1f}-{4 / (3 * ratio):.1f}) with " \
                  "undesirable_weight 1"
        self.add("pref.kto_balance", self.first_label_row.get(ratio < 1),
                 f"{d:,} desirable vs {u:,} undesirable rows ({ratio:.2f}:1): KTO works best when desirable_weight x "
                 f"desirable / (undesirable_weight x undesirable) is between 1 and 4/3 (Ethayarajh et al. 2024); "
                 f"set {fix}")

    def stats(self) -> dict[str, Any] | None:
        if self.pairs:
            return {"kind": "pairs", "pairs": self.pairs,
                    "chosen_longer_share": round(self.chosen_longer / self.pairs, 4),
                    "rejected_longer_share": round(self.rejected_longer / self.pairs, 4),
                    "median_length_ratio": round(statistics.median(self.ratios), 4) if self.ratios else None}
        if self.unpaired:
            return {"kind": "unpaired", "rows": self.unpaired, "desirable": self.desirable,
                    "undesirable": self.undesirable}
        return None


__all__ = ["PairError", "PreferenceLint", "iter_preference_rows", "load_preference_file", "normalise_row", "side_text"]
