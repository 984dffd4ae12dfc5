"""One export: every requested format written, loaded back and checked, in order.

    adapter    -> adapter/   PEFT safetensors + adapter_config.json + tokenizer
    merged     -> merged/    adapter merged (fp32 sums), saved in the chosen dtype + tokenizer
    gguf       -> gguf/<run>-<quant>.gguf, converted from merged/ (k-quants via llama.cpp)
    lora-gguf  -> gguf/<run>-lora-f16.gguf + gguf/base-f16.gguf (serve many adapters on one base)
    ollama     -> gguf/Modelfile beside the GGUF
    (always)   -> README.md model card, consistency.json, manifest.json

GGUF needs merged weights and Ollama needs a GGUF, so asking for them adds what they
need. The prompts are drawn from the run's own eval data (else train) plus two prompts
of the regression probe; the generation limit is sized from the data's answers, as eval
sizes it. References: the fine-tuned model as trained (adapter unmerged, fp32) and the
merged files as loaded back. What each check requires is in `verify` (fidelity: same
greedy text or a documented top-1 rate, logits within a dtype-scaled tolerance;
behaviour: warnings only). Every GGUF runs in the real llama.cpp runtime when it is
installed (`consistency`), else through transformers' GGUF loader, with a note saying so.

Dtype: on a CPU the merge is done and saved in fp32, the precision the CPU computes in
(and trained in); 16-bit files are then the GGUF's business. On a GPU the default is the
base's own 16-bit dtype.

Heavy (torch, transformers, peft): run in the export worker process.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ftwizard.errors import UserError
from ftwizard.export import gguf as gg
from ftwizard.export.manifest import Manifest, files_under
from ftwizard.export.source import RunSource, open_run

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt",
                 "added_tokens.json", "generation_config.json")
OWNED = ("adapter", "merged", "gguf", "README.md", "manifest.json", "consistency.json")
CHOOSABLE = ("adapter", "merged", "gguf", "lora-gguf", "ollama")
DEFAULT_FORMATS = "adapter,merged,gguf,ollama"
GGUF_DTYPE = {"f16": "fp16", "bf16": "bf16", "f32": "fp32"}
N_PROBE_PROMPTS = 2


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in CHOOSABLE and f != "all"]
    if bad or not wanted:
        raise UserError(f"unknown export format(s): {', '.join(bad) or '(none)'}", where="--format",
                        fix=f"use a comma list of {', '.join(CHOOSABLE)} (or all)")
    if "all" in wanted:
        wanted = list(CHOOSABLE)
    # dependencies: ollama needs a GGUF, a GGUF needs merged weights
    if "ollama" in wanted and "gguf" not in wanted:
        wanted.append("gguf")
    if "gguf" in wanted and "merged" not in wanted:
        wanted.append("merged")
    return [f for f in CHOOSABLE if f in wanted]


def parse_quants(text: str) -> list[str]:
    qs = [q.strip().lower() for q in text.split(",") if q.strip()]
    for q in qs:
        gg.check_quant(q)
    return qs or ["q8_0"]


def prepare_check(out: Path, force: bool) -> None:
    """The never-overwrite rule alone (no changes): the CLI checks it before starting the worker."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder", where="--out", fix="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"export folder {out} already has files; exports are never overwritten",
                        where=str(out), fix="pass --force to replace it, or --out for another folder")


def prepare_out(out: Path, force: bool) -> None:
    """Never overwrite: an existing, non-empty export folder needs --force (and then only our entries go)."""
    prepare_check(out, force)
    if out.is_dir() and any(out.iterdir()):
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _free(*objs) -> None:
    for o in objs:
        del o
    gc.collect()


class Progress:
    """Units done per format, with an ETA: extrapolated from this format's own pace once a unit
    is done, before that a prior from the reference pass (measured in setup)."""

    def __init__(self, manifest: Manifest, log):
        self.m, self.log = manifest, log
        self.key: str | None = None
        self.done = self.total = 0
        self.t0 = 0.0
        self.prior = 0.0

    def begin(self, key: str, total: int, prior_s: float) -> None:
        self.key, self.done, self.total, self.t0, self.prior = key, 0, max(total, 1), time.time(), prior_s
        self._write("starting", quiet=True)

    def step(self, what: str, units: int = 1) -> None:
        if self.key is None:
            return
        self.done = min(self.total, self.done + units)
        self._write(what)

    def eta(self) -> float:
        el = time.time() - self.t0
        if self.done <= 0:
            return max(self.prior - el, 0.0)
        return el / self.done * (self.total - self.done)

    def _write(self, what: str, quiet: bool = False) -> None:
        e = self.m.data["exports"].get(self.key)
        if e is None:
            return
        eta = round(self.eta())
        e["progress"] = {"done": self.done, "total": self.total, "phase": what, "eta_s": eta}
        self.m.save()
        if not quiet:
            self.log(f"[{self.key}] {self.done}/{self.total} {what} (about {eta} s left)")


class Exporter:
    def __init__(self, src: RunSource, out: Path, formats: list[str], quants: list[str], *,
                 merged_dtype: str | None = None, max_new_tokens: int | None = None, log=print):
        self.src, self.out, self.formats, self.quants = src, out, formats, quants
        self.merged_dtype, self.max_new_tokens, self.log = merged_dtype, max_new_tokens, log
        self.manifest = Manifest(out, src.run.name, formats + ["card"],
                                 {"quants": quants if "gguf" in formats else [], "merged_dtype": merged_dtype,
                                  "max_new_tokens": max_new_tokens, "method": src.method})
        self.progress = Progress(self.manifest, log)
        self.gguf_files: list[Path] = []
        self.texts: dict[str, list[list[int]]] = {}
        self.findings: list[tuple[str, bool, str]] = []
        self.runtime_results: dict[str, dict] = {}

    # ---- shared state ------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoTokenizer

        from ftwizard.export import consistency as C
        from ftwizard.export import models as M
        from ftwizard.export import verify as V
        from ftwizard.export import runtime

        self.device = M.device()
        self.base_path = self.src.base_path(log=self.log) if self.src.method != "full" else str(self.src.artifact)
        if not self.merged_dtype:
            self.merged_dtype, why = M.default_merged_dtype(self.base_path, self.device)
            self.manifest.data["options"]["merged_dtype_reason"] = why
        self.manifest.data["options"]["merged_dtype"] = self.merged_dtype
        self.tok = AutoTokenizer.from_pretrained(str(self.src.artifact))
        self.system = self.src.training_system_prompt()
        convs, answers = self.src.check_prompts()
        if not convs:
            raise UserError("no chat conversation in the run's data to check the exports with",
                            where=str(self.src.cfg.data.train), fix="exports are checked on chat data (messages)")
        labels = [f"eval prompt {i + 1} ({_snippet(c)})" for i, c in enumerate(convs)]
        for i, c in enumerate(self.src.probe_check_prompts(N_PROBE_PROMPTS)):
            convs.append(c)
            labels.append(f"probe prompt {i + 1} ({_snippet(c)})")
        if self.max_new_tokens is None:
            self.max_new_tokens = V.limit_from_answers([len(self.tok(a, add_special_tokens=False)["input_ids"])
                                                        for a in answers])
            self.manifest.data["options"]["max_new_tokens_reason"] = \
                f"sized from the data: longest of {len(answers)} reference answers x1.5 + 16 tokens"
        self.manifest.data["options"]["max_new_tokens"] = self.max_new_tokens
        self.ps = C.PromptSet.build(self.tok, convs, labels)
        self.eot = C.end_of_turn(self.tok)
        self.runtime = runtime.available()
        self.manifest.data["runtime"] = "llama.cpp (llama-cpp-python)" if self.runtime else None
        if not self.runtime and any(f in self.formats for f in ("gguf", "lora-gguf")):
            self.manifest.warn("the llama.cpp runtime is not installed, so GGUF files are checked through "
                               f"transformers' GGUF loader instead of llama.cpp (run `{runtime.INSTALL_COMMAND}` once)")
        self.log(f"Loading the fine-tuned model ({self.src.method}) as trained...")
        t0 = time.time()
        model = M.load_finetuned(self.src, self.base_path)
        self.t_load = time.time() - t0
        stops = V.stop_ids(self.tok, model)
        if self.eot[1] is not None and self.eot[1] not in stops:
            self.findings.append(("end of turn stops the trained model", False,
                                  f"the chat template ends turns with {self.eot[0]!r}, but the tokenizer/generation "
                                  f"config stop at {stops}: generation would not stop at the end of a turn"))
        self.stops = stops
        self.log(f"Running {len(convs)} check prompts through the fine-tuned model (limit {self.max_new_tokens} "
                 "tokens)...")
        t0 = time.time()
        self.r32 = V.run_reference(model, self.ps.ids, stops, self.max_new_tokens, self._pad())
        self.t_ref = time.time() - t0
        self.texts["trained"] = self.r32.tokens
        self.manifest.data["reference"] = {
            "prompts": labels, "continuations": [self.decode(t) for t in self.r32.tokens],
            "seconds": round(self.t_ref, 1)}
        _free(model)

    def _pad(self) -> int:
        return self.tok.pad_token_id if self.tok.pad_token_id is not None else self.stops[0]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)

    def _judge_model(self, name: str, model, ref, dtype: str | None, min_top1: float | None = None):
        from ftwizard.export import verify as V

        def tick(_i):
            self.progress.step("checking prompt")

        cand = V.candidate(model, ref, on_prompt=tick)
        return V.judge(name, ref, cand, min_top1=min_top1 or V.TOP1_LOSSLESS, dtype=dtype, decode=self.decode,
                       prompt_labels=self.ps.labels), cand

    def _step(self, key: str, fn: Callable, units: int, prior_s: float) -> bool:
        self.manifest.start(key)
        self.log(f"[{key}] exporting (about {prior_s:.0f} s)...")
        self.progress.begin(key, units, prior_s)
        try:
            files, checks, extra = fn()
        except UserError as e:
            reason = e.what + (f" (fix: {e.fix})" if e.fix else "")
            self.manifest.finish(key, "failed", reason=reason)
            self.log(f"[{key}] FAILED: {reason}")
            return False
        except Exception as e:  # a broken export is a result to report, not a crash
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.manifest.finish(key, "failed", reason=f"{type(e).__name__}: {first}")
            self.log(f"[{key}] FAILED: {type(e).__name__}: {first}")
            return False
        finally:
            self.progress.key = None
        bad = [c for c in checks if not c.ok]
        warnings = [w for c in checks for w in c.warnings]
        state = "failed" if bad else "ok"
        self.manifest.finish(key, state, reason="; ".join(f"{c.name}: {c.detail}" for c in bad) or None,
                             files=files, checks=[c.to_dict() for c in checks], **extra)
        e = self.manifest.data["exports"][key]
        e.pop("progress", None)
        if warnings:
            e["warnings"] = sorted(set(warnings))
        self.manifest.save()
        # one verdict line per format; the checks under it say "passed" or "did not pass"
        self.log(f"[{key}] {'ok' if not bad else 'FAILED'} ({len(checks) - len(bad)} of {len(checks)} checks passed, "
                 f"{e['seconds']} s)")
        for c in checks:
            self.log(f"    {'passed' if c.ok else 'did not pass'}: {c.name}: {c.detail}")
        for w in sorted(set(warnings)):
            self.log(f"    warning: {w}")
        return not bad

    # ---- formats -------------------------------------------------------------------------
    def do_adapter(self):
        from ftwizard.export import models as M

        if self.src.method == "full":
            raise UserError("a full fine-tune has no adapter; export merged instead")
        d = self.out / "adapter"
        d.mkdir(parents=True, exist_ok=True)
        for name in ADAPTER_FILES:
            if (self.src.artifact / name).is_file():
                shutil.copy2(self.src.artifact / name, d / name)
        model = M.load_finetuned(self.src, self.base_path, adapter_dir=d)
        self.progress.step("loaded the adapter back")
        check, _ = self._judge_model("adapter loaded back with PEFT vs the fine-tuned model", model, self.r32,
                                     "fp32" if self.src.method != "qlora" else "nf4")
        _free(model)
        return files_under(d), [check], {"path": "adapter"}

    def do_merged(self):
        from ftwizard.export import models as M
        from ftwizard.export import verify as V

        d = self.out / "merged"
        checks = []
        if self.src.method == "full":
            # the model itself: copy its files (weights saved in the chosen dtype)
            model = M.load_finetuned(self.src, self.base_path)
        else:
            model = M.merged_fp32(self.src, self.base_path)
        self.progress.step("merged")
        if self.src.method != "full":
            what = "dequantised NF4 base" if self.src.method == "qlora" else "base"
            c, _ = self._judge_model(f"adapter merged into the {what} (fp32) vs the fine-tuned model", model,
                                     self.r32, "nf4" if self.src.method == "qlora" else "fp32")
            checks.append(c)
        M.save_merged(model, self.tok, d, self.merged_dtype)
        _free(model)
        self.progress.step(f"saved in {self.merged_dtype}")
        back = M.load_merged(d, "fp32")
        self.progress.step("loaded back")
        dt = self.merged_dtype if self.src.method != "qlora" else _looser(self.merged_dtype, "nf4")
        c, cand = self._judge_model(f"merged {self.merged_dtype} files loaded back vs the fine-tuned model (fp32)",
                                    back, self.r32, dt)
        checks.append(c)
        self.texts["merged"] = cand.tokens
        mstops = V.stop_ids(self.tok, back)
        if self.eot[1] is not None and self.eot[1] not in mstops:
            self.findings.append(("end of turn stops the merged model", False,
                                  f"merged/generation_config.json and the tokenizer stop at {mstops}, not at the chat "
                                  f"template's end of turn {self.eot[0]!r} ({self.eot[1]})"))
        if {"gguf", "lora-gguf"} & set(self.formats):
            # the GGUF's reference is the merged model as saved (what the converter reads)
            if cand.tokens == self.r32.tokens and cand.logits is not None:
                self.rm = V.Reference(self.r32.prompts, cand.tokens, cand.logits, self.r32.stops,
                                      self.max_new_tokens)
            else:
                self.rm = V.run_reference(back, self.ps.ids, self.stops, self.max_new_tokens, self._pad())
        _free(back)
        extra = {"path": "merged", "dtype": self.merged_dtype}
        if self.src.method == "qlora":
            extra["note"] = "merged into the dequantised NF4 base (the weights QLoRA trained against), not the 4-bit model"
        if self.src.method == "full":
            extra["note"] = "a full fine-tune: the merged model is the trained model itself"
        why = self.manifest.data["options"].get("merged_dtype_reason")
        if why:
            extra["dtype_reason"] = why
        return files_under(d), checks, extra

    def _gguf_checks(self, key: str, f: Path, quant: str, lora: Path | None = None):
        """Run `f` (and a LoRA GGUF on it) in llama.cpp, or through transformers when the runtime is absent."""
        from ftwizard.export import consistency as C
        from ftwizard.export import models as M
        from ftwizard.export import verify as V

        lossless = quant in GGUF_DTYPE
        min_top1 = V.TOP1_LOSSLESS if lossless else V.TOP1_QUANT.get(quant, 0.7)
        # llama.cpp multiplies f16 weights with f16-rounded activations: hold f16/bf16 files to top-1 and text,
        # and report the logit difference; an f32 file keeps an fp16-scale tolerance for the same reason.
        dtype = None if not lossless else ("fp16" if quant == "f32" else None)
        name = f"{key} answers in llama.cpp vs the merged model"
        if self.runtime:
            checks, res = C.check_gguf_in_llamacpp(name, f, self.ps, self.rm, min_top1=min_top1, dtype=dtype,
                                                   eot=self.eot, decode=self.decode, lora=lora)
            self.texts[key] = [r["tokens"] for r in res["results"]]
            self.runtime_results[key] = res
            self.progress.step("ran in llama.cpp", len(self.ps.ids))
            return checks
        if lora is not None:
            raise UserError("a LoRA GGUF can only be checked in llama.cpp", fix=_runtime_fix())
        model = M.load_gguf(f)
        c, cand = self._judge_model(f"{key} loaded back (transformers' GGUF loader, dequantised) vs the merged "
                                    "model", model, self.rm, GGUF_DTYPE.get(quant), min_top1)
        c.detail += " [not run in llama.cpp: runtime not installed]"
        self.texts[key] = cand.tokens
        _free(model)
        return [c]

    def do_gguf_one(self, quant: str):
        from ftwizard.export import llamacpp, runtime

        key = f"gguf-{quant}"
        f = self.out / "gguf" / f"{self.src.run.name}-{quant}.gguf"
        if quant in gg.LLAMA_QUANTS:
            if not self.runtime and not gg.llama_quantize_bin():
                raise runtime.missing_reason(f"GGUF {quant}")
            f16 = f.with_name(f.stem + ".f16-tmp.gguf")
            try:
                gg.convert(self.out / "merged", f16, "f16", log=self.log)
                self.progress.step("converted to f16", 2)
                if self.runtime:
                    r = llamacpp.run_job({"op": "quantize", "src": str(f16.resolve()), "dst": str(f.resolve()),
                                          "quant": quant})
                    self.log(f"[{key}] quantised with llama_model_quantize in {r['seconds']} s")
                else:
                    gg.quantize_with_binary(f16, f, quant)
            finally:
                f16.unlink(missing_ok=True)
            self.progress.step("quantised")
        else:
            gg.convert(self.out / "merged", f, quant, log=self.log)
            self.progress.step("converted", 3)
        meta = gg.read_metadata(f)
        checks = [self._metadata_check(meta)] + self._gguf_checks(key, f, quant)
        self.gguf_files.append(f)
        return [f], checks, {"path": str(f.relative_to(self.out)), "quant": quant,
                             "tensor_types": meta.get("tensor_types")}

    def do_lora_gguf(self):
        """The adapter as a GGUF LoRA, checked on the base GGUF in llama.cpp against the merged model."""
        from ftwizard.export import runtime

        if self.src.method == "full":
            raise UserError("a full fine-tune has no adapter to export as a GGUF LoRA")
        if self.src.method == "qlora":
            raise UserError("a QLoRA adapter was trained against the NF4 base, which a GGUF base does not hold; "
                            "serve the merged GGUF instead")
        if not self.runtime:
            raise runtime.missing_reason("checking a GGUF LoRA")
        script = runtime.ensure_lora_script(log=self.log)
        d = self.out / "gguf"
        base_f = d / "base-f16.gguf"
        lora_f = d / f"{self.src.run.name}-lora-f16.gguf"
        gg.convert(Path(self.base_path), base_f, "f16", log=self.log)
        self.progress.step("converted the base to GGUF", 2)
        gg.convert_lora(script, self.src.artifact, Path(self.base_path), lora_f, "f16")
        self.progress.step("converted the adapter to a GGUF LoRA")
        checks = self._gguf_checks("lora-gguf", base_f, "f16", lora=lora_f)
        return [base_f, lora_f], checks, {"path": str(lora_f.relative_to(self.out)),
                                          "base": str(base_f.relative_to(self.out)),
                                          "serve": f"llama-server -m {base_f.name} --lora {lora_f.name}"}

    def _metadata_check(self, meta: dict):
        from ftwizard.export.verify import CheckResult

        problems = []
        eos = meta.get("tokenizer.ggml.eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
        eot_text, eot_id = self.eot
        if eos is None or (eot_id is not None and int(eos) != eot_id):
            problems.append(f"end-of-sequence id {eos} is not the chat template's end of turn {eot_text!r} "
                            f"({eot_id}): runtimes that stop at eos would run on")
        tmpl = meta.get("tokenizer.chat_template")
        if not tmpl:
            problems.append("no chat template in the file")
        return CheckResult("GGUF metadata (end-of-turn id, chat template)", not problems,
                           "; ".join(problems) or f"eos id {eos} = {eot_text!r}, chat template present, "
                           f"architecture {meta.get('general.architecture')}")

    def do_ollama(self):
        from ftwizard.export import ollama as O
        from ftwizard.export.verify import CheckResult

        if not self.gguf_files:
            raise UserError("no GGUF file was exported, so there is nothing for a Modelfile to point at")
        target = min(self.gguf_files, key=lambda f: f.stat().st_size)  # the most compact one passing its checks
        tr = O.translate(self.tok, [self.tok.eos_token] if self.tok.eos_token else [])
        system = self.system or tr.default_system
        for w in tr.warnings:
            self.manifest.warn(f"ollama: {w}")
        text = O.modelfile_text(target.name, tr, system)
        mf = target.parent / "Modelfile"
        mf.write_text(text, encoding="utf-8")
        convs = O.probe_conversations(self.system) + [c for c in self.ps.convs]
        problems = O.check_rendering(self.tok, tr, system, convs)
        name = self.src.run.name.lower().replace("_", "-")
        cmd = f"ollama create {name} -f {mf}"
        checks = [CheckResult("Modelfile TEMPLATE renders the same prompt bytes as the tokenizer's chat template",
                              not problems or tr.family == "generic",
                              "; ".join(problems) or f"{tr.family} template, {len(convs)} conversations identical "
                              f"byte for byte (the check prompts, with and without a system prompt, multi-turn)")]
        if tr.family == "generic":
            checks[0].detail = "generic template (the chat template could not be translated): " + checks[0].detail
        eot_text = self.eot[0]
        checks.append(CheckResult("Modelfile stops at the end-of-turn token", eot_text in tr.stops,
                                  f"PARAMETER stop {tr.stops}" + ("" if eot_text in tr.stops else
                                                                   f"; {eot_text!r} is missing")))
        self.progress.step("Modelfile written and rendered")
        return [mf], checks, {"path": str(mf.relative_to(self.out)), "command": cmd, "family": tr.family,
                              "from": target.name, "warnings": tr.warnings}

    def do_card(self, repo_id: str | None = None):
        from ftwizard.export.card import build_card

        card, prints, vers = build_card(self.src, self.manifest.data, self.system, repo_id)
        path = self.out / "README.md"
        card.save(str(path))
        return [path], [], {"path": "README.md", "data": prints, "software": vers}

    def consistency(self) -> dict[str, Any]:
        """The cross-format report: texts side by side and every template / end-of-turn finding."""
        from ftwizard.export import consistency as C

        rep = C.Report(self.ps.labels)
        for key, toks in self.texts.items():
            rep.add(key, [self.decode(t) for t in toks],
                    [bool(t) and (t[-1] in self.stops or t[-1] == self.eot[1]) for t in toks])
        for what, ok, detail in self.findings:
            rep.finding(what, ok, detail)
        for key, e in self.manifest.data["exports"].items():
            for c in e.get("checks") or []:
                if c["name"].startswith(("chat template", "end-of-turn", "Modelfile", "GGUF metadata")):
                    rep.finding(f"{key}: {c['name']}", c["ok"], c["detail"])
        d = rep.save(self.out)
        d["path"] = C.NAME
        self.manifest.data["consistency"] = {k: d[k] for k in ("formats", "prompts", "identical_to_trained",
                                                               "consistent", "findings")}
        self.manifest.data["consistency"]["summary"] = C.summary_line(d)
        self.manifest.data["consistency"]["path"] = C.NAME
        self.manifest.save()
        self.log(f"[consistency] {C.summary_line(d)}")
        return d

    # ---- the whole export ------------------------------------------------------------------
    def _priors(self) -> dict[str, float]:
        load, ref = getattr(self, "t_load", 5.0), getattr(self, "t_ref", 10.0)
        conv = 30.0
        return {"adapter": load + 1.2 * ref, "merged": 2 * load + 2.5 * ref + 5, "gguf": conv + 0.6 * ref,
                "lora-gguf": conv + 10 + 0.6 * ref, "ollama": 1.0, "card": 1.0}

    def run(self, push_to_hub: str | None = None) -> dict[str, Any]:
        t0 = time.time()
        self.manifest.save()
        try:
            self.setup()
        except UserError as e:
            self.manifest.data["reason"] = e.what
            self.manifest.close()
            raise
        n = len(self.ps.ids)
        pri = self._priors()
        ok = {}
        if "adapter" in self.formats:
            ok["adapter"] = self._step("adapter", self.do_adapter, 1 + n, pri["adapter"])
        if "merged" in self.formats:
            ok["merged"] = self._step("merged", self.do_merged, 3 + 2 * n, pri["merged"])
        if "gguf" in self.formats:
            for q in self.quants:
                key = f"gguf-{q}"
                if not ok.get("merged"):
                    self.manifest.start(key)
                    self.manifest.finish(key, "failed", reason="the merged export failed, and GGUF is converted from it")
                    continue
                ok[key] = self._step(key, lambda q=q: self.do_gguf_one(q), 3 + n, pri["gguf"])
        if "lora-gguf" in self.formats:
            if ok.get("merged"):
                ok["lora-gguf"] = self._step("lora-gguf", self.do_lora_gguf, 3 + n, pri["lora-gguf"])
            else:
                self.manifest.start("lora-gguf")
                self.manifest.finish("lora-gguf", "failed", reason="the merged export failed, and the LoRA GGUF is "
                                     "checked against it")
        if "ollama" in self.formats:
            if self.gguf_files:
                self._step("ollama", self.do_ollama, 1, pri["ollama"])
            else:
                self.manifest.start("ollama")
                self.manifest.finish("ollama", "failed", reason="no GGUF export succeeded, and the Modelfile needs one")
        try:
            self.consistency()
        except Exception as e:  # the report must not lose the exports
            self.manifest.warn(f"the consistency report could not be written: {type(e).__name__}: {e}")
        self._step("card", lambda: self.do_card(push_to_hub), 1, pri["card"])
        self.manifest.data["seconds"] = round(time.time() - t0, 1)
        for key, e in self.manifest.data["exports"].items():
            for w in e.get("warnings", []):
                if w not in self.manifest.data["warnings"]:
                    self.manifest.data["warnings"].append(w)
        state = self.manifest.close()
        if push_to_hub and state == "completed":
            from ftwizard.export.hub import push

            self.manifest.data["pushed"] = push(self.out, push_to_hub, log=self.log)
            self.manifest.save()
        elif push_to_hub:
            self.manifest.warn("not pushed to the hub: an export failed")
        return self.manifest.data


def _looser(a: str, b: str) -> str:
    from ftwizard.export.verify import REL_TOL

    return a if REL_TOL[a] >= REL_TOL[b] else b


def _runtime_fix() -> str:
    from ftwizard.export.runtime import INSTALL_COMMAND

    return f"run `{INSTALL_COMMAND}` once (builds llama.cpp from the package registry, ~10 min on 2 cores)"


def _snippet(conv: list[dict], n: int = 48) -> str:
    user = next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")
    one = " ".join(user.split())
    return one if len(one) <= n else one[:n - 3] + "..."


def export_run(run_path: Path, formats: str = DEFAULT_FORMATS, quant: str = "q8_0",
               out: Path | None = None, force: bool = False, merged_dtype: str | None = None,
               max_new_tokens: int | None = None, push_to_hub: str | None = None, log=print) -> dict[str, Any]:
    src = open_run(Path(run_path).resolve())
    fmts = parse_formats(formats)
    quants = parse_quants(quant) if "gguf" in fmts else []
    if src.method == "full":
        for f in ("adapter", "lora-gguf"):
            if f in fmts:
                fmts.remove(f)
                log(f"A full fine-tune has no adapter; skipping the {f} export.")
    if "gguf" in fmts or "lora-gguf" in fmts:
        import json

        model_type = json.loads(((src.artifact if src.method == "full" else Path(src.base_path(log=log))) /
                                 "config.json").read_text()).get("model_type", "?")
        gg.check_architecture(model_type)
    if push_to_hub:
        from ftwizard.export.hub import check_push

        check_push(push_to_hub)
    out = Path(out).resolve() if out else src.run.export_dir
    prepare_out(out, force)
    return Exporter(src, out, fmts, quants, merged_dtype=merged_dtype, max_new_tokens=max_new_tokens,
                    log=log).run(push_to_hub)
