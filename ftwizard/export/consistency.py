"""Cross-format consistency: the same prompts through the trained model (adapter on the
base), the merged model, every GGUF in the real llama.cpp runtime (and the LoRA GGUF on
the base GGUF), with the texts side by side, and the things that make a deployed model
behave differently from the trained one checked explicitly:

- the chat template: the template stored in each GGUF, rendered on llama.cpp's side and
  tokenized by the file's own tokenizer, must give the same prompt bytes and token ids
  as the trained tokenizer's chat template; the Ollama Modelfile's TEMPLATE must render
  the same bytes too;
- the end of turn: the token the chat template puts after an assistant message (e.g.
  <|im_end|>) must stop generation everywhere: in the merged model's generation config,
  as llama.cpp's end-of-generation in every GGUF (and as its eos id), in the Modelfile's
  stop list; and each format's answers must end with it where the trained model's did.

The report is kept as export/consistency.json and summarised in the manifest.
Heavy parts (torch) are only in the functions the export worker calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftwizard.export.verify import Candidate, CheckResult, Reference, judge

NAME = "consistency.json"


@dataclass
class PromptSet:
    """The fixed prompts every format answers: conversations, labels, and the trained tokenizer's view."""

    convs: list[list[dict]]
    labels: list[str]
    texts: list[str]                   # the chat template's rendering (add_generation_prompt)
    ids: list[list[int]]

    @classmethod
    def build(cls, tok, convs: list[list[dict]], labels: list[str]) -> "PromptSet":
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True, tools=getattr(c, "tools", None))
                 for c in convs]  # a tool-calling row keeps its tool list (data.tools.Conversation)
        ids = []
        for c in convs:
            x = tok.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False,
                                        tools=getattr(c, "tools", None))
            ids.append(list(x["input_ids"] if hasattr(x, "keys") else x))
        return cls(convs, labels, texts, ids)


def end_of_turn(tok) -> tuple[str | None, int | None]:
    """The token the chat template writes after an assistant message (its end of turn)."""
    from ftwizard.export.ollama import derive_turn_format

    text = None
    try:
        fmt = derive_turn_format(tok)
        piece = fmt.post.strip()
        if piece and tok.convert_tokens_to_ids(piece) not in (None, tok.unk_token_id):
            text = piece
    except Exception:
        pass
    text = text or tok.eos_token
    if text is None:
        return None, None
    return text, int(tok.convert_tokens_to_ids(text))


def gguf_job(path: Path, ps: PromptSet, ref: Reference, max_new_tokens: int, *, lora: Path | None = None,
             eot_id: int | None = None, topk: int = 8) -> dict:
    prompts = []
    for conv, ids, r, lg in zip(ps.convs, ps.ids, ref.tokens, ref.logits):
        p = {"messages": conv, "hf_ids": ids, "ref": r}
        if lg.numel() and len(r):
            p["ref_topk"] = lg.topk(min(topk, lg.shape[-1]), dim=-1).indices.tolist()
        prompts.append(p)
    return {"op": "run", "model": str(Path(path).resolve()), "lora": str(Path(lora).resolve()) if lora else None,
            "prompts": prompts, "max_new_tokens": max_new_tokens,
            "check_eog": [eot_id] if eot_id is not None else []}


def candidate_from(res: dict, ref: Reference) -> Candidate:
    toks = [r["tokens"] for r in res["results"]]
    top1 = [r.get("top1", []) for r in res["results"]]
    max_diff = None
    for r, lg in zip(res["results"], ref.logits):
        got = r.get("topk_logits")
        if not got or not lg.numel():
            continue
        import torch

        ids = lg.topk(len(got[0]), dim=-1).indices
        want = torch.gather(lg, 1, ids)
        d = float((torch.tensor(got) - want).abs().max())
        max_diff = d if max_diff is None else max(max_diff, d)
    return Candidate(toks, top1, max_diff, note="run in llama.cpp")


def template_check(res: dict, ps: PromptSet, where: str) -> CheckResult:
    """The GGUF's chat template rendered by llama.cpp's side gives the trained prompt, byte for byte."""
    problems = []
    if not res.get("template"):
        problems.append(f"{where} has no chat template: llama.cpp and Ollama would fall back to another format")
    else:
        for label, r, text, ids in zip(ps.labels, res["results"], ps.texts, ps.ids):
            if r.get("render_error"):
                problems.append(f"{label}: the file's chat template does not render ({r['render_error']})")
                break
            got = r.get("rendered", "")
            if got != text:
                k = next((i for i, (a, b) in enumerate(zip(got, text)) if a != b), min(len(got), len(text)))
                problems.append(f"{label}: the file's chat template gives other prompt bytes than training's from "
                                f"character {k}: file {got[max(0, k - 20):k + 40]!r}, training {text[max(0, k - 20):k + 40]!r}")
                break
            if r.get("ids") != ids:
                k = next((i for i, (a, b) in enumerate(zip(r["ids"], ids)) if a != b), min(len(r["ids"]), len(ids)))
                problems.append(f"{label}: llama.cpp tokenizes the prompt differently from token {k + 1} "
                                f"(file {r['ids'][k:k + 3]}, training {ids[k:k + 3]})")
                break
    return CheckResult("chat template in the file renders the same prompt bytes and tokens as training's",
                       not problems, "; ".join(problems) or
                       f"{len(ps.texts)} prompts: identical bytes and token ids (rendered from the file's template, "
                       "tokenized by llama.cpp)")


def eot_check(res: dict, eot_text: str | None, eot_id: int | None, where: str) -> CheckResult:
    problems = []
    if eot_id is None:
        problems.append("the tokenizer has no end-of-turn token")
    else:
        if not res.get("eog", {}).get(str(eot_id), False):
            problems.append(f"llama.cpp does not treat {eot_text!r} (id {eot_id}) as end of generation in {where}: "
                            "answers would not stop")
        if res.get("eos_id") != eot_id:
            problems.append(f"the file's end-of-sequence token is {res.get('eos_text')!r} (id {res.get('eos_id')}), "
                            f"not the chat template's end of turn {eot_text!r} (id {eot_id}): runtimes that stop "
                            "at eos only would run on")
    return CheckResult("end-of-turn token stops generation in llama.cpp", not problems,
                       "; ".join(problems) or f"{eot_text!r} (id {eot_id}) is the file's eos and an end-of-generation "
                       "token for llama.cpp")


def check_gguf_in_llamacpp(name: str, path: Path, ps: PromptSet, ref: Reference, *, min_top1: float,
                           dtype: str | None, eot: tuple[str | None, int | None], decode, lora: Path | None = None,
                           max_new_tokens: int | None = None) -> tuple[list[CheckResult], dict]:
    """Run one GGUF (or base GGUF + LoRA GGUF) in llama.cpp and judge it: template, end of turn, answers."""
    from ftwizard.export.llamacpp import run_job

    res = run_job(gguf_job(path, ps, ref, max_new_tokens or ref.max_new_tokens, lora=lora, eot_id=eot[1]))
    where = Path(path).name + (f" + {Path(lora).name}" if lora else "")
    checks = [template_check(res, ps, where), eot_check(res, eot[0], eot[1], where)]
    cand = candidate_from(res, ref)
    checks.append(judge(name, ref, cand, min_top1=min_top1, dtype=dtype, decode=decode, prompt_labels=ps.labels))
    return checks, res


@dataclass
class Report:
    """Texts per format per prompt, plus the template and end-of-turn findings."""

    labels: list[str]
    texts: dict[str, list[str]] = field(default_factory=dict)
    stopped: dict[str, list[bool]] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, fmt: str, texts: list[str], stopped: list[bool]) -> None:
        self.texts[fmt], self.stopped[fmt] = texts, stopped

    def finding(self, what: str, ok: bool, detail: str) -> None:
        self.findings.append({"check": what, "ok": ok, "detail": detail})

    def to_dict(self) -> dict[str, Any]:
        base = self.texts.get("trained")
        rows = []
        for i, label in enumerate(self.labels):
            row = {"prompt": label, "texts": {k: v[i] for k, v in self.texts.items()},
                   "stopped": {k: v[i] for k, v in self.stopped.items()}}
            if base is not None:
                row["differs_from_trained"] = sorted(k for k, v in self.texts.items() if v[i] != base[i])
            rows.append(row)
        same = {k: sum(v[i] == base[i] for i in range(len(self.labels))) for k, v in self.texts.items()} if base else {}
        ok = all(f["ok"] for f in self.findings)
        return {"formats": list(self.texts), "prompts": len(self.labels), "identical_to_trained": same,
                "consistent": ok, "findings": self.findings, "rows": rows}

    def save(self, out: Path) -> dict[str, Any]:
        import orjson

        from ftwizard.fileio import atomic_write_bytes

        d = self.to_dict()
        atomic_write_bytes(Path(out) / NAME, orjson.dumps(d, option=orjson.OPT_INDENT_2))
        return d


def summary_line(d: dict[str, Any]) -> str:
    n = d.get("prompts", 0)
    parts = [f"{k} {v}/{n}" for k, v in d.get("identical_to_trained", {}).items() if k != "trained"]
    bad = [f["detail"] for f in d.get("findings", []) if not f["ok"]]
    head = "consistent" if d.get("consistent") else "INCONSISTENT"
    return f"{head}: answers identical to the trained model's: {', '.join(parts) or '-'}" + \
        (f"; {bad[0]}" if bad else "")


_RECHECK_CACHE: dict[tuple[str, str], tuple] = {}


def _recheck_reference(run_path: Path, export_dir: Path | None):
    """(tokenizer, prompt set, reference from export_dir/merged), computed once per run and folder."""
    key = (str(Path(run_path).resolve()), str(export_dir))
    if key in _RECHECK_CACHE:
        return _RECHECK_CACHE[key]
    from transformers import AutoTokenizer

    from ftwizard.export import models as M
    from ftwizard.export import verify as V
    from ftwizard.export.source import open_run

    src = open_run(Path(run_path))
    export_dir = Path(export_dir) if export_dir else src.run.export_dir
    tok = AutoTokenizer.from_pretrained(str(src.artifact))
    convs, answers = src.check_prompts()
    ps = PromptSet.build(tok, convs, [f"eval prompt {i + 1}" for i in range(len(convs))])
    limit = V.limit_from_answers([len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers])
    model = M.load_merged(export_dir / "merged", "fp32")
    ref = V.run_reference(model, ps.ids, V.stop_ids(tok, model), limit,
                          tok.pad_token_id if tok.pad_token_id is not None else 0)
    del model
    _RECHECK_CACHE[key] = (tok, ps, ref)
    return tok, ps, ref


def recheck_gguf(gguf: Path, run_path: Path, export_dir: Path | None = None, lora: Path | None = None,
                 quant: str = "f16") -> list[CheckResult]:
    """Check one GGUF file again, outside an export: the run's check prompts through its merged model
    (export_dir/merged) as the reference, the file (and a LoRA GGUF on it) in llama.cpp. Used to judge a
    GGUF someone edited (a template, an eos id) before serving it."""
    from ftwizard.export import verify as V

    tok, ps, ref = _recheck_reference(run_path, export_dir)
    lossless = quant in ("f16", "bf16", "f32")
    checks, _ = check_gguf_in_llamacpp(f"{Path(gguf).name} answers in llama.cpp vs the merged model", Path(gguf), ps,
                                       ref, min_top1=V.TOP1_LOSSLESS if lossless else V.TOP1_QUANT.get(quant, 0.7),
                                       dtype=None, eot=end_of_turn(tok),
                                       decode=lambda ids: tok.decode(ids, skip_special_tokens=False), lora=lora)
    return checks
