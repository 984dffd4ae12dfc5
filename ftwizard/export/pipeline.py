"""One export: every requested format written, loaded back and checked, in order.

    adapter  -> adapter/   PEFT safetensors + adapter_config.json + tokenizer
    merged   -> merged/    adapter merged (fp32 sums), saved in 16-bit + tokenizer
    gguf     -> gguf/<run>-<quant>.gguf, converted from merged/
    ollama   -> gguf/Modelfile beside the GGUF
    (always) -> README.md model card, manifest.json

GGUF needs merged weights and Ollama needs a GGUF, so asking for them adds what they
need. References (computed once): R32, the fine-tuned model as trained (adapter
unmerged, fp32); R16, the merged model after rounding to the saved 16-bit dtype. Every
16-bit file is loaded back upcast to fp32, so the comparisons measure the files and
not CPU half-precision kernels. What each check requires:

    adapter reload     vs R32: same greedy tokens, logits within EXACT_ATOL
    merge (fp32)       vs R32: same greedy tokens, logits within MERGE_ATOL (QLORA_ATOL for QLoRA)
    merged reload      vs R16: same tokens, within EXACT_ATOL (the files are the model)
                       vs R32: same tokens, within ROUND_ATOL (16-bit rounding is harmless)
    gguf f16/bf16/f32  vs R16: same tokens, within GGUF16_ATOL
    gguf q8_0 and k-quants vs R16: top-1 agreement >= QUANT_TOP1, logits within QUANT_ATOL
    every load-back    each chat prompt's continuation ends with the end-of-turn token

Heavy (torch, transformers, peft): run in the export worker process.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

from ftwizard.errors import UserError
from ftwizard.export import gguf as gg
from ftwizard.export.manifest import FORMATS, Manifest, files_under
from ftwizard.export.source import RunSource, open_run

ROUND_ATOL = 0.5
# QLoRA's reference runs on bitsandbytes' NF4 layers, which dequantise blocks to bf16
# (quant_state.dtype) before the matmul; the merged fp32 model does not round there.
# Measured on the embedded model: 0.49. Tokens must still match exactly.
QLORA_ATOL = 1.0
GGUF16_ATOL = 2e-2
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt",
                 "added_tokens.json", "generation_config.json")
OWNED = ("adapter", "merged", "gguf", "README.md", "manifest.json")


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS[:4] and f != "all"]
    if bad or not wanted:
        raise UserError(f"unknown export format(s): {', '.join(bad) or '(none)'}", where="--format",
                        fix="use a comma list of adapter, merged, gguf, ollama (or all)")
    if "all" in wanted:
        wanted = list(FORMATS[:4])
    # dependencies: ollama needs a GGUF, a GGUF needs merged weights
    if "ollama" in wanted and "gguf" not in wanted:
        wanted.append("gguf")
    if "gguf" in wanted and "merged" not in wanted:
        wanted.append("merged")
    return [f for f in FORMATS[:4] if f in wanted]


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


class Exporter:
    def __init__(self, src: RunSource, out: Path, formats: list[str], quants: list[str], *,
                 merged_dtype: str | None = None, max_new_tokens: int = 128, log=print):
        self.src, self.out, self.formats, self.quants = src, out, formats, quants
        self.merged_dtype, self.max_new_tokens, self.log = merged_dtype, max_new_tokens, log
        self.manifest = Manifest(out, src.run.name, formats + ["card"],
                                 {"quants": quants if "gguf" in formats else [], "merged_dtype": merged_dtype,
                                  "max_new_tokens": max_new_tokens, "method": src.method})
        self.gguf_files: list[Path] = []

    # ---- shared state ------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoTokenizer

        from ftwizard.export import models as M
        from ftwizard.export import verify as V

        self.base_path = self.src.base_path(log=self.log) if self.src.method != "full" else str(self.src.artifact)
        self.merged_dtype = self.merged_dtype or M.default_merged_dtype(self.base_path)
        self.manifest.data["options"]["merged_dtype"] = self.merged_dtype
        self.tok = AutoTokenizer.from_pretrained(str(self.src.artifact))
        self.system = self.src.training_system_prompt()
        convs = self.src.probe_prompts()
        if not convs:
            raise UserError("no chat conversation in the run's data to check the exports with",
                            where=str(self.src.cfg.data.train), fix="exports are checked on chat data (messages)")
        self.prompts = V.encode_prompts(self.tok, convs)
        self.log(f"Loading the fine-tuned model ({self.src.method}) as trained...")
        model = M.load_finetuned(self.src, self.base_path)
        self.stops = V.stop_ids(self.tok, model)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.stops[0]
        self.r32 = V.run_reference(model, self.prompts, self.stops, self.max_new_tokens, self.pad)
        self.manifest.data["reference"] = {
            "prompts": [self.tok.decode(p[-24:]) for p in self.prompts],
            "continuations": [self.tok.decode(t) for t in self.r32.tokens]}
        _free(model)

    def _compare(self, name, model, ref, **kw):
        from ftwizard.export import verify as V

        return V.compare(name, model, ref, self.stops, self.max_new_tokens, self.pad, **kw)

    def _step(self, key: str, fn) -> bool:
        self.manifest.start(key)
        self.log(f"[{key}] exporting...")
        try:
            files, checks, extra = fn()
        except UserError as e:
            self.manifest.finish(key, "failed", reason=e.what + (f" (fix: {e.fix})" if e.fix else ""))
            self.log(f"[{key}] FAILED: {e.what}")
            return False
        except Exception as e:  # a broken export is a result to report, not a crash
            self.manifest.finish(key, "failed", reason=f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            self.log(f"[{key}] FAILED: {type(e).__name__}: {e}")
            return False
        bad = [c for c in checks if not c.ok]
        state = "failed" if bad else "ok"
        self.manifest.finish(key, state, reason="; ".join(f"{c.name}: {c.detail}" for c in bad) or None,
                             files=files, checks=[c.to_dict() for c in checks], **extra)
        for c in checks:
            self.log(f"[{key}] {'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}")
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
        from ftwizard.export import verify as V

        check = self._compare("adapter loaded back with PEFT vs the fine-tuned model", model, self.r32,
                              tokens_must_match=True, atol=V.EXACT_ATOL)
        _free(model)
        return files_under(d), [check], {"path": "adapter"}

    def do_merged(self):
        from ftwizard.export import models as M
        from ftwizard.export import verify as V

        d = self.out / "merged"
        merged = M.merged_fp32(self.src, self.base_path)
        checks = []
        if self.src.method != "full":
            what = "dequantised NF4 base" if self.src.method == "qlora" else "base"
            checks.append(self._compare(f"adapter merged into the {what} (fp32) vs the fine-tuned model", merged,
                                        self.r32, tokens_must_match=True,
                                        atol=QLORA_ATOL if self.src.method == "qlora" else V.MERGE_ATOL))
        M.save_merged(merged, self.tok, d, self.merged_dtype)
        merged.float()  # the saved 16-bit values, upcast: reference R16
        self.r16 = V.run_reference(merged, self.prompts, self.stops, self.max_new_tokens, self.pad)
        _free(merged)
        back = M.load_merged(d, "fp32")
        checks.append(self._compare(f"merged {self.merged_dtype} files loaded back vs the in-memory merged model "
                                    f"in {self.merged_dtype}", back, self.r16, tokens_must_match=True,
                                    atol=V.EXACT_ATOL))
        checks.append(self._compare(f"merged {self.merged_dtype} files vs the fp32 fine-tuned model", back, self.r32,
                                    tokens_must_match=True,
                                    atol=QLORA_ATOL if self.src.method == "qlora" else ROUND_ATOL))
        _free(back)
        extra = {"path": "merged", "dtype": self.merged_dtype}
        if self.src.method == "qlora":
            extra["note"] = "merged into the dequantised NF4 base (the weights QLoRA trained against), not the 4-bit model"
        return files_under(d), checks, extra

    def do_gguf_one(self, quant: str):
        from ftwizard.export import models as M
        from ftwizard.export import verify as V

        f = self.out / "gguf" / f"{self.src.run.name}-{quant}.gguf"
        gg.convert(self.out / "merged", f, quant, log=self.log)
        meta = gg.read_metadata(f)
        checks = [self._metadata_check(meta)]
        model = M.load_gguf(f)
        if quant in ("f16", "bf16", "f32"):
            checks.append(self._compare(f"GGUF {quant} loaded back (transformers gguf_file=) vs the merged model",
                                        model, self.r16, tokens_must_match=True, atol=GGUF16_ATOL))
        else:
            checks.append(self._compare(f"GGUF {quant} loaded back (dequantised) vs the merged model", model, self.r16,
                                        tokens_must_match=False, atol=V.QUANT_ATOL, min_top1=V.QUANT_TOP1))
        _free(model)
        self.gguf_files.append(f)
        return [f], checks, {"path": str(f.relative_to(self.out)), "quant": quant,
                              "tensor_types": meta.get("tensor_types")}

    def _metadata_check(self, meta: dict):
        from ftwizard.export.verify import CheckResult

        problems = []
        eos = meta.get("tokenizer.ggml.eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None or int(eos) not in self.stops:
            problems.append(f"end-of-sequence id {eos} is not the tokenizer's end-of-turn ({self.stops}): "
                            "llama.cpp would not stop")
        if not meta.get("tokenizer.chat_template"):
            problems.append("no chat template in the file")
        return CheckResult("GGUF metadata (end-of-turn id, chat template)", not problems,
                           "; ".join(problems) or f"eos id {eos}, chat template present, architecture "
                           f"{meta.get('general.architecture')}")

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
        problems = O.check_rendering(self.tok, tr, system, O.probe_conversations(self.system))
        name = self.src.run.name.lower().replace("_", "-")
        cmd = f"ollama create {name} -f {mf}"
        check = CheckResult("Modelfile TEMPLATE renders conversations exactly as the chat template",
                            not problems or tr.family == "generic",
                            "; ".join(problems) or f"{tr.family} template, 3 conversations identical "
                            f"(with and without a system prompt, multi-turn); stops {tr.stops}")
        if tr.family == "generic":
            check.detail = "generic template (the chat template could not be translated): " + check.detail
        return [mf], [check], {"path": str(mf.relative_to(self.out)), "command": cmd, "family": tr.family,
                               "from": target.name, "warnings": tr.warnings}

    def do_card(self, repo_id: str | None = None):
        from ftwizard.export.card import build_card

        card, prints, vers = build_card(self.src, self.manifest.data, self.system, repo_id)
        path = self.out / "README.md"
        card.save(str(path))
        return [path], [], {"path": "README.md", "data": prints, "software": vers}

    # ---- the whole export ------------------------------------------------------------------
    def run(self, push_to_hub: str | None = None) -> dict[str, Any]:
        t0 = time.time()
        self.manifest.save()
        try:
            self.setup()
        except UserError as e:
            self.manifest.data["reason"] = e.what
            self.manifest.close()
            raise
        ok = {}
        if "adapter" in self.formats:
            ok["adapter"] = self._step("adapter", self.do_adapter)
        if "merged" in self.formats:
            ok["merged"] = self._step("merged", self.do_merged)
        if "gguf" in self.formats:
            for q in self.quants:
                key = f"gguf-{q}"
                if not ok.get("merged"):
                    self.manifest.start(key)
                    self.manifest.finish(key, "failed", reason="the merged export failed, and GGUF is converted from it")
                    continue
                ok[key] = self._step(key, lambda q=q: self.do_gguf_one(q))
        if "ollama" in self.formats:
            if self.gguf_files:
                self._step("ollama", self.do_ollama)
            else:
                self.manifest.start("ollama")
                self.manifest.finish("ollama", "failed", reason="no GGUF export succeeded, and the Modelfile needs one")
        self._step("card", lambda: self.do_card(push_to_hub))
        self.manifest.data["seconds"] = round(time.time() - t0, 1)
        state = self.manifest.close()
        if push_to_hub and state == "completed":
            from ftwizard.export.hub import push

            self.manifest.data["pushed"] = push(self.out, push_to_hub, log=self.log)
            self.manifest.save()
        elif push_to_hub:
            self.manifest.warn("not pushed to the hub: an export failed")
        return self.manifest.data


def export_run(run_path: Path, formats: str = "adapter,merged,gguf,ollama", quant: str = "q8_0",
               out: Path | None = None, force: bool = False, merged_dtype: str | None = None,
               max_new_tokens: int = 128, push_to_hub: str | None = None, log=print) -> dict[str, Any]:
    src = open_run(Path(run_path))
    fmts = parse_formats(formats)
    quants = parse_quants(quant) if "gguf" in fmts else []
    if src.method == "full" and "adapter" in fmts:
        fmts.remove("adapter")
        log("A full fine-tune has no adapter; skipping the adapter export.")
    if "gguf" in fmts:
        import json

        model_type = json.loads(((src.artifact if src.method == "full" else Path(src.base_path(log=log))) /
                                 "config.json").read_text()).get("model_type", "?")
        gg.check_architecture(model_type)
    if push_to_hub:
        from ftwizard.export.hub import check_push

        check_push(push_to_hub)
    out = Path(out) if out else src.run.export_dir
    prepare_out(out, force)
    return Exporter(src, out, fmts, quants, merged_dtype=merged_dtype, max_new_tokens=max_new_tokens,
                    log=log).run(push_to_hub)
