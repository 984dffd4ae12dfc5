"""Run GGUF files in the real llama.cpp runtime (llama-cpp-python), in a child process.

A child process because a broken native build crashes with a signal instead of raising:
in a child that is a reported failure ("llama.cpp crashed with SIGSEGV"), not a dead
export worker. Jobs and answers are JSON files.

Jobs:
- `quantize`: llama_model_quantize(f16 GGUF -> q4_k_m / q5_k_m / q6_k / q8_0 ...).
- `run`: load a GGUF (optionally with a LoRA GGUF on top), and for each prompt:
  render the conversation with the chat template stored IN THE FILE and tokenize it with
  the file's own tokenizer (what a llama.cpp server or Ollama would feed the model),
  continue greedily until an end-of-generation token as llama.cpp defines it, and, fed
  the trained model's continuation (teacher forcing on the trained tokenizer's ids),
  report the argmax and the logits at the reference's top candidates at each position.

Parent side: `run_job(job) -> dict`. Child: `python -m ftwizard.export.llamacpp JOB OUT`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUANT_FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "f16": 1, "bf16": 32}


def threads() -> int:
    """Cores for llama.cpp: one when the machine is already busy (its worker threads spin-wait on each
    other, and on a box loaded past its cores that costs far more than a second thread gains)."""
    cpus = os.cpu_count() or 1
    try:
        if os.getloadavg()[0] >= cpus:
            return 1
    except OSError:
        pass
    return max(1, min(4, cpus))


# ---- parent side ----------------------------------------------------------------------------
def run_job(job: dict, timeout: float = 1800) -> dict:
    """Run one job in a child process; raise RuntimeError with the reason when it fails or crashes."""
    with tempfile.TemporaryDirectory(prefix="ftwizard-llamacpp-") as tmp:
        jf, of = Path(tmp) / "job.json", Path(tmp) / "out.json"
        jf.write_text(json.dumps(job))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            res = subprocess.run([sys.executable, "-m", "ftwizard.export.llamacpp", str(jf), str(of)],
                                 capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"llama.cpp took more than {timeout:.0f} s on {Path(job.get('model', '')).name}")
        if res.returncode < 0:
            name = signal.Signals(-res.returncode).name
            raise RuntimeError(f"llama.cpp crashed with {name} on {Path(job.get('model') or job.get('src', '')).name}"
                               " (a build problem of the runtime on this CPU, not the file's: rebuild it with "
                               "`python -m ftwizard.export.gguf --rebuild`)")
        if res.returncode != 0 or not of.is_file():
            lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
            raise RuntimeError("llama.cpp failed: " + " | ".join(lines[-3:]))
        return json.loads(of.read_text())


# ---- child side -----------------------------------------------------------------------------
def _quantize(job: dict) -> dict:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[job["quant"]]
    params.nthread = job.get("threads") or threads()
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(job["src"].encode(), job["dst"].encode(), params)
    if rc != 0 or not Path(job["dst"]).is_file():
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    return {"seconds": round(time.time() - t0, 2), "bytes": Path(job["dst"]).stat().st_size}


def _render(template: str, messages: list[dict], bos: str, eos: str) -> str:
    """The chat template from the GGUF, rendered as transformers renders chat templates."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                  ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos,
                                            eos_token=eos)


def _run(job: dict) -> dict:
    import numpy as np
    from llama_cpp import Llama, llama_cpp as C

    max_new = int(job["max_new_tokens"])
    longest = max((len(p["hf_ids"]) + max(len(p.get("ref") or []), 1) for p in job["prompts"]), default=64)
    n_ctx = max(512, longest + max_new + 64)
    llm = Llama(model_path=job["model"], lora_path=job.get("lora"), n_ctx=n_ctx, n_batch=512,
                n_threads=job.get("threads") or threads(), logits_all=True, verbose=False, seed=0)
    vocab = llm._model.vocab
    meta = dict(llm.metadata)
    template = meta.get("tokenizer.chat_template")
    bos_id, eos_id = llm.token_bos(), llm.token_eos()

    def text_of(i: int) -> str:
        return llm._model.token_get_text(i) if i >= 0 else ""

    add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
    out = {"template": template, "eos_id": eos_id, "eos_text": text_of(eos_id), "bos_id": bos_id,
           "add_bos": add_bos, "n_ctx": n_ctx, "results": []}
    check_ids = set(job.get("check_eog") or [])
    out["eog"] = {str(i): bool(C.llama_vocab_is_eog(vocab, i)) for i in check_ids}
    t0 = time.time()
    for p in job["prompts"]:
        r: dict = {}
        ids = None
        if template:
            try:
                r["rendered"] = _render(template, p["messages"], text_of(bos_id), text_of(eos_id))
                ids = llm.tokenize(r["rendered"].encode("utf-8"), add_bos=add_bos, special=True)
            except Exception as e:  # a template llama.cpp's side cannot render is a finding, not a crash
                r["render_error"] = f"{type(e).__name__}: {e}"
        r["ids"] = ids
        gen_ids = ids if ids else p["hf_ids"]
        llm.reset()
        llm.eval(gen_ids)
        toks: list[int] = []
        stopped = False
        for _ in range(max_new):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            toks.append(nxt)
            if C.llama_vocab_is_eog(vocab, nxt):
                stopped = True
                break
            llm.eval([nxt])
        r["tokens"], r["stopped"] = toks, stopped
        ref = p.get("ref") or []
        if ref:
            llm.reset()
            llm.eval(list(p["hf_ids"]) + list(ref))
            n0 = len(p["hf_ids"]) - 1
            rows = llm.scores[n0:n0 + len(ref)]
            r["top1"] = [int(x) for x in rows.argmax(-1)]
            topk = p.get("ref_topk")
            if topk:
                r["topk_logits"] = [[float(rows[k][j]) for j in ids_k] for k, ids_k in enumerate(topk)]
        out["results"].append(r)
    out["seconds"] = round(time.time() - t0, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    job = json.loads(Path(argv[0]).read_text())
    res = _quantize(job) if job.get("op") == "quantize" else _run(job)
    Path(argv[1]).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
