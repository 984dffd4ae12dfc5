"""An LLM judge through any OpenAI-compatible endpoint: pairwise (base vs tuned) and rubric scores.

Off unless configured: `evaluation.judge.url` in the config, or $FTWIZARD_JUDGE_URL. The
API key is read from the environment variable the config names (default
$FTWIZARD_JUDGE_API_KEY) at the moment of the call, and is never written anywhere: not
into the eval spec, judge.json, the run's config or a log line (`settings_for_spec`
drops it, and the client sends it only in the Authorization header).

Pairwise: each row is judged twice, base answer first and then tuned answer first, and
a model wins the row only when both orders agree; a disagreement counts as a tie and as
a sign of position bias (reported as `first_position_rate`, how often the judge picked
whatever came first). Verdicts follow MT-Bench's `[[A]]` / `[[B]]` / `[[C]]` format; a
reply we cannot read is kept and counted as invalid, never guessed.

Rubric: each answer gets a 1-5 score against the rubric (the config's, or a general
one); the rubric text is saved in eval/judge.json with the results, so a later reader
knows what the scores meant.

Light (httpx through ftwizard.chat.client; no torch): runs inside the eval worker after
the models are scored, and in tests against `ftwizard serve`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ftwizard.errors import UserError

JUDGE_VERSION = 1
URL_ENV, MODEL_ENV = "FTWIZARD_JUDGE_URL", "FTWIZARD_JUDGE_MODEL"
DEFAULT_RUBRIC = ("5: correct and complete, in the format the reference uses. 4: correct with a small omission or "
                  "format slip. 3: partly correct. 2: mostly wrong but on topic. 1: wrong, off topic, or empty.")

PAIRWISE_SYSTEM = ("You are a strict, impartial judge. Compare two answers to the same question, using the reference "
                   "answer as the ground truth. Ignore length and the order in which the answers appear.")
PAIRWISE_PROMPT = """[Question]
{question}

[Reference answer]
{reference}

[Answer A]
{a}

[Answer B]
{b}

Which answer is better? Output your final verdict by strictly following this format: "[[A]]" if answer A is better, \
"[[B]]" if answer B is better, and "[[C]]" for a tie."""

RUBRIC_SYSTEM = "You are a strict, impartial grader. Grade the answer against the reference answer and the rubric."
RUBRIC_PROMPT = """[Question]
{question}

[Reference answer]
{reference}

[Answer]
{answer}

[Rubric]
{rubric}

Give a score from 1 to 5. Output it by strictly following this format: "Score: N"."""


# ---- settings ------------------------------------------------------------------------------
def settings_for_spec(judge_cfg) -> dict[str, Any] | None:
    """What the eval spec carries for the judge (None = off). Never the key: only its variable's name."""
    url = (judge_cfg.url if judge_cfg is not None else None) or os.environ.get(URL_ENV)
    if not url:
        return None
    if not re.match(r"^https?://", url):
        raise UserError(f"judge URL {url!r} is not an http(s) address", where="evaluation.judge.url",
                        fix="use the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise UserError("the judge URL carries a user name or password", where="evaluation.judge.url",
                        fix=f"put the key in ${getattr(judge_cfg, 'api_key_env', 'FTWIZARD_JUDGE_API_KEY')} instead; "
                            "a URL is saved with the results")
    return {
        "url": url.rstrip("/"),
        "model": (judge_cfg.model if judge_cfg is not None else None) or os.environ.get(MODEL_ENV),
        "api_key_env": getattr(judge_cfg, "api_key_env", "FTWIZARD_JUDGE_API_KEY"),
        "mode": getattr(judge_cfg, "mode", "both"),
        "rubric": getattr(judge_cfg, "rubric", None) or DEFAULT_RUBRIC,
        "max_samples": getattr(judge_cfg, "max_samples", 30),
        "max_tokens": getattr(judge_cfg, "max_tokens", 256),
    }


def _public_url(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.hostname + (f":{p.port}" if p.port else "") if p.hostname else p.netloc,
                       p.path, "", ""))


# ---- verdicts -------------------------------------------------------------------------------
def parse_pairwise(reply: str) -> str | None:
    """'A', 'B', 'tie', or None when the reply gives no readable verdict."""
    tags = re.findall(r"\[\[\s*([ABC])\s*\]\]", reply or "", flags=re.I)
    if len(set(t.upper() for t in tags)) == 1:
        tag = tags[0].upper()
    else:
        m = re.match(r"^\W*(?:answer\s+)?([ABC])\b", (reply or "").strip(), flags=re.I)
        if not m or tags:  # several different [[X]] tags: ambiguous
            return None
        tag = m.group(1).upper()
    return {"A": "A", "B": "B", "C": "tie"}[tag]


def parse_score(reply: str) -> int | None:
    m = re.search(r"score\s*[:=]?\s*\**\s*([1-5])\b", reply or "", flags=re.I)
    if m:
        return int(m.group(1))
    m = re.match(r"^\W*([1-5])\b", (reply or "").strip())
    return int(m.group(1)) if m else None


def winner(verdict: str | None, a_is: str, b_is: str) -> str | None:
    """Map a letter verdict to the model it names ('tie' stays, None stays)."""
    if verdict in (None, "tie"):
        return verdict
    return a_is if verdict == "A" else b_is


def combine(first: str | None, second: str | None) -> str:
    """One row's result from both orders: a model wins only when both orders agree."""
    if first is None or second is None:
        return "invalid"
    if first == second:
        return first  # 'base', 'tuned' or 'tie'
    if "tie" in (first, second):
        return "tie"  # one order prefers a model, the other calls it even: not a win (conservative, as MT-Bench)
    return "inconsistent"  # each order preferred whatever came first (or second): position bias, counted a tie


def summarize_pairwise(rows: list[dict]) -> dict[str, Any]:
    outcomes = [r["outcome"] for r in rows]
    valid = [o for o in outcomes if o != "invalid"]
    wins, losses = outcomes.count("tuned"), outcomes.count("base")
    ties = outcomes.count("tie") + outcomes.count("inconsistent")
    letters = [v for r in rows for v in (r["orders"][0]["verdict"], r["orders"][1]["verdict"]) if v in ("A", "B")]
    return {
        "rows": len(rows), "valid": len(valid), "tuned_wins": wins, "base_wins": losses, "ties": ties,
        "inconsistent": outcomes.count("inconsistent"), "invalid": outcomes.count("invalid"),
        "tuned_win_rate": (wins + 0.5 * ties) / len(valid) if valid else None,
        "first_position_rate": letters.count("A") / len(letters) if letters else None,
    }


# ---- running ---------------------------------------------------------------------------------
class Judge:
    def __init__(self, settings: dict[str, Any], log=print, max_tokens: int = 256):
        from ftwizard.chat.client import ApiError, ChatClient

        self.settings, self.log, self.max_tokens = settings, log, max_tokens
        key = os.environ.get(settings.get("api_key_env") or "", "") or None
        self.client = ChatClient(settings["url"], key, timeout=300)
        self._ApiError = ApiError
        self.model = settings.get("model")
        if not self.model:
            try:
                models = self.client.models()
            except ApiError as e:
                raise UserError(f"the judge at {_public_url(settings['url'])} did not list its models: {e.message}",
                                where="evaluation.judge", fix="set evaluation.judge.model (or $FTWIZARD_JUDGE_MODEL)")
            if not models:
                raise UserError("the judge endpoint lists no models", where="evaluation.judge.model",
                                fix="set the model name")
            self.model = models[0]
        self.calls = 0

    def ask(self, system: str, prompt: str) -> str:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        try:
            out = self.client.complete(msgs, self.model, temperature=0.0, max_tokens=self.max_tokens)
        except self._ApiError as e:
            where = _public_url(self.settings["url"])
            fix = (f"check ${self.settings.get('api_key_env')}" if e.status in (401, 403)
                   else "check the endpoint is up and the model name is right")
            raise UserError(f"the judge at {where} refused a request: {e.message}", where="evaluation.judge",
                            fix=fix) from None
        self.calls += 1
        return (out.get("choices") or [{}])[0].get("message", {}).get("content") or ""

    def pairwise_row(self, question: str, reference: str, base: str, tuned: str) -> dict[str, Any]:
        orders = []
        for a_is, b_is, a, b in (("base", "tuned", base, tuned), ("tuned", "base", tuned, base)):
            reply = self.ask(PAIRWISE_SYSTEM, PAIRWISE_PROMPT.format(question=question, reference=reference, a=a, b=b))
            verdict = parse_pairwise(reply)
            orders.append({"a": a_is, "b": b_is, "reply": reply[:400], "verdict": verdict,
                           "winner": winner(verdict, a_is, b_is)})
        return {"orders": orders, "outcome": combine(orders[0]["winner"], orders[1]["winner"])}

    def rubric_score(self, question: str, reference: str, answer: str, rubric: str) -> dict[str, Any]:
        reply = self.ask(RUBRIC_SYSTEM, RUBRIC_PROMPT.format(question=question, reference=reference, answer=answer,
                                                             rubric=rubric))
        return {"reply": reply[:400], "score": parse_score(reply)}

    def close(self) -> None:
        self.client.close()


def pick_models(eval_dir: Path) -> tuple[dict, dict] | None:
    """(base result, tuned result): 'base' against 'final', else the latest checkpoint."""
    def load(name: str) -> dict | None:
        try:
            return json.loads((eval_dir / f"{name}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    base = load("base")
    tuned = load("final")
    if tuned is None:
        cks = sorted((int(p.stem.split("-")[-1]), p.stem) for p in eval_dir.glob("checkpoint-*.json")
                     if p.stem.split("-")[-1].isdigit())
        tuned = load(cks[-1][1]) if cks else None
    return (base, tuned) if base and tuned else None


def judge_eval(eval_dir: Path, settings: dict[str, Any] | None, log=print, writer=None,
               key: str | None = None) -> dict | None:
    """Judge the base and tuned outputs already in `eval_dir`; write eval/judge.json. None when off."""
    if not settings:
        return None
    eval_dir = Path(eval_dir)
    pair = pick_models(eval_dir)
    if pair is None:
        log("judge: skipped (needs the base and a fine-tuned model evaluated)")
        return None
    base, tuned = pair
    by_row = {s["row"]: s for s in tuned["samples"]}
    rows = [(b, by_row[b["row"]]) for b in base["samples"] if b["row"] in by_row][: settings["max_samples"]]
    mode, rubric = settings["mode"], settings["rubric"]
    judge = Judge(settings, log=log, max_tokens=settings.get("max_tokens", 256))
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "version": JUDGE_VERSION, "key": key, "endpoint": _public_url(settings["url"]), "judge_model": judge.model,
        "mode": mode, "rubric": rubric, "base": base["id"], "tuned": tuned["id"], "rows_judged": len(rows),
        "prompts": {"pairwise": PAIRWISE_PROMPT, "rubric": RUBRIC_PROMPT},
    }
    try:
        if mode in ("pairwise", "both"):
            details = []
            for i, (b, t) in enumerate(rows, 1):
                r = judge.pairwise_row(b["input"], b["reference"], b["output"], t["output"])
                details.append({"row": b["row"], **r})
                if writer:
                    writer.write("eval", event="progress", model="judge", phase="pairwise", done=i, total=len(rows))
            out["pairwise"] = {**summarize_pairwise(details), "details": details}
        if mode in ("rubric", "both"):
            scores: dict[str, Any] = {}
            for name, res in (("base", base), ("tuned", tuned)):
                items = {s["row"]: s for s in res["samples"]}
                det = []
                for i, (b, _) in enumerate(rows, 1):
                    s = items[b["row"]]
                    det.append({"row": s["row"], **judge.rubric_score(s["input"], s["reference"], s["output"], rubric)})
                    if writer:
                        writer.write("eval", event="progress", model="judge", phase=f"rubric {name}", done=i,
                                     total=len(rows))
                valid = [d["score"] for d in det if d["score"] is not None]
                scores[name] = {"mean": sum(valid) / len(valid) if valid else None, "valid": len(valid),
                                "invalid": len(det) - len(valid), "details": det}
            out["rubric_scores"] = scores
    finally:
        judge.close()
    out["calls"] = judge.calls
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["text"] = describe(out)  # shown under the verdict by evaluation.report (CLI, Evaluate step, card)
    from ftwizard.fileio import atomic_write_text

    atomic_write_text(eval_dir / "judge.json", json.dumps(out, indent=1))
    log(describe(out))
    return out


def describe(j: dict) -> str:
    """One or two lines for the CLI and the log."""
    parts = [f"judge {j['judge_model']} on {j['rows_judged']} rows"]
    pw = j.get("pairwise")
    if pw:
        rate = pw["tuned_win_rate"]
        first = pw["first_position_rate"]
        parts.append(f"pairwise (both orders): tuned won {pw['tuned_wins']}, base {pw['base_wins']}, ties "
                     f"{pw['ties']} ({pw['inconsistent']} flipped with the order), unreadable {pw['invalid']}"
                     + (f"; tuned win rate {rate:.0%}" if rate is not None else "")
                     + (f"; picked the first answer {first:.0%} of the time" if first is not None else ""))
    rs = j.get("rubric_scores")
    if rs:
        def fmt(d):
            return f"{d['mean']:.2f}" if d["mean"] is not None else "-"
        parts.append(f"rubric 1-5: base {fmt(rs['base'])}, tuned {fmt(rs['tuned'])} "
                     f"(unreadable {rs['base']['invalid'] + rs['tuned']['invalid']})")
    return "\n  ".join(parts)


def run_judge_step(eval_dir: Path, settings: dict[str, Any], writer, log=print) -> dict | None:
    """The eval worker's judge step: judged once per (base result, tuned result, settings); a judge that
    fails (endpoint down, key refused) is reported as an event and in the log, and the eval still completes."""
    import hashlib

    eval_dir = Path(eval_dir)
    pair = pick_models(eval_dir)
    if pair is None:
        return None
    key = hashlib.sha256(json.dumps([pair[0].get("key"), pair[1].get("key"), settings], sort_keys=True)
                         .encode()).hexdigest()[:16]
    try:
        old = json.loads((eval_dir / "judge.json").read_text())
        if old.get("key") == key:
            writer.write("eval", event="model_skipped", model="judge", reason="already judged")
            return old
    except (FileNotFoundError, ValueError):
        pass
    writer.write("eval", event="model_start", model="judge", label=f"judge ({settings['mode']})")
    try:
        out = judge_eval(eval_dir, settings, log=log, writer=writer, key=key)
    except UserError as e:
        log(f"judge failed: {e.what} ({e.fix})")
        writer.write("eval", event="judge_failed", model="judge", message=e.what, fix=e.fix)
        return None
    writer.write("eval", event="model_done", model="judge")
    return out


def read_judge(eval_dir: Path) -> dict | None:
    try:
        return json.loads((Path(eval_dir) / "judge.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
