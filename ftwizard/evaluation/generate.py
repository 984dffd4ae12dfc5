"""The eval engine: one base model in memory, adapters swapped in and out, batched greedy
generation and teacher-forced loss. Heavy (torch, transformers, peft): only the eval
worker and benchmarks import it.

Choices, and why:
- The base is loaded once; LoRA/QLoRA checkpoints are attached with peft's
  `load_adapter` / `set_adapter` and the previous one deleted, so evaluating five
  checkpoints costs one model load. Full fine-tunes are whole models: loaded in turn.
- QLoRA adapters are scored on the same 4-bit NF4 base they were trained against.
- Precision: fp32 on CPU; bf16 on a GPU that has it (else fp16), as in training.
- Generation pads on the left (so every row's next token sits at the same position)
  and sorts prompts by length, so a batch wastes little padding; outputs go back to
  file order. Greedy decoding: the same input always gives the same output.
- The loss uses `ftwizard.training.dataset.encode_conversation`: the same template,
  the same assistant-only mask and the same truncation as training.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any, Callable

from ftwizard.evaluation.samples import EvalSample

Progress = Callable[[int, int], None]


class Engine:
    def __init__(self, base_path: str, method: str = "lora", trust_remote_code: bool = False,
                 device: str = "auto", log=print, tokenizer_path: str | None = None, chat_template: str = "auto"):
        import torch
        from transformers import AutoTokenizer

        self.base_path = base_path
        self.method = method
        self.trust_remote_code = trust_remote_code
        self.log = log
        self.device = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        if self.device == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32
        # A run's saved tokenizer (adapter/ or model/) carries the chat template it trained with and any tokens
        # the template added; without a run, the base's own, with data.chat_template applied as training would
        from ftwizard.models.vocab import has_tokenizer

        if not has_tokenizer(tokenizer_path):  # an adapter saved without its tokenizer: the base's, as training had
            tokenizer_path = None
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or base_path, trust_remote_code=trust_remote_code)
        if tokenizer_path is None:
            from ftwizard.data.chat_templates import apply_template

            apply_template(self.tokenizer, chat_template)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.model = None
        self.current: str | None = None
        self._base_loaded = False

    @property
    def precision(self) -> str:
        return str(self.dtype).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16") \
            .replace("float16", "fp16")

    # ---- models ----------------------------------------------------------------
    def _load(self, path: str):
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"dtype": self.dtype, "trust_remote_code": self.trust_remote_code}
        if self.method == "qlora" and path == self.base_path:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=self.dtype, bnb_4bit_quant_storage=self.dtype)
        if self.device == "cuda":
            kwargs["device_map"] = {"": 0}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        from ftwizard.models.vocab import fit_embeddings

        fit_embeddings(model, self.tokenizer)  # rows for a chat template's added tokens, before any adapter
        model.eval()
        gen = model.generation_config
        gen.pad_token_id = self.tokenizer.pad_token_id
        for name in ("temperature", "top_p", "top_k"):  # greedy: sampling knobs only cause warnings
            if hasattr(gen, name):
                setattr(gen, name, None)
        gen.do_sample = False
        return model

    def _drop_model(self) -> None:
        self.model = None
        self._base_loaded = False
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def use(self, kind: str, path: str | None, name: str) -> None:
        """Make `name` the active model: kind 'base', 'adapter' (a PEFT folder) or 'full' (a model folder)."""
        if kind == "full":
            self._drop_model()
            self.model = self._load(path)
        elif kind == "base":
            if not self._base_loaded:
                self._drop_model()
                self.model = self._load(self.base_path)
                self._base_loaded = True
        elif kind == "adapter":
            from peft import PeftModel

            if not self._base_loaded:
                self._drop_model()
                self.model = self._load(self.base_path)
                self._base_loaded = True
            if isinstance(self.model, PeftModel):
                old = list(self.model.peft_config)
                self.model.load_adapter(path, adapter_name=name, is_trainable=False)
                self.model.set_adapter(name)
                for o in old:
                    if o != name:
                        self.model.delete_adapter(o)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name, is_trainable=False)
            self.model.eval()
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        self.current = name
        self._kind = kind

    def _context(self):
        """Adapters off while the base is scored (the LoRA layers stay in memory for the next one)."""
        import contextlib

        from peft import PeftModel

        if self._kind == "base" and isinstance(self.model, PeftModel):
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    # ---- generation ---------------------------------------------------------------
    def render_prompt(self, turns: list[dict[str, str]]) -> str:
        tools = getattr(turns, "tools", None) or None  # tool rows: ftwizard.data.tools.Conversation
        return self.tokenizer.apply_chat_template(list(turns), tools=tools, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int = 8,
                 progress: Progress | None = None, with_stops: bool = False):
        """Greedy outputs for each prompt (chat turns), in input order. With `with_stops`, also whether each
        output ended its turn (emitted the end-of-turn token) before `max_new_tokens`."""
        import torch

        texts = [self.render_prompt(p) for p in prompts]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        outputs: list[str] = [""] * len(texts)
        stopped: list[bool] = [False] * len(texts)
        eos = self.tokenizer.eos_token_id
        done = 0
        with torch.inference_mode(), self._context():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.model.device)
                out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id)
                new = out[:, enc["input_ids"].shape[1]:]
                for i, ids in zip(idx, new):
                    outputs[i] = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                    stopped[i] = eos is not None and bool((ids == eos).any())
                done += len(idx)
                if progress:
                    progress(done, len(texts))
        return (outputs, stopped) if with_stops else outputs

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- loss ------------------------------------------------------------------------
    def encode_for_loss(self, samples: list[EvalSample], max_length: int) -> list[dict[str, list[int]]]:
        from ftwizard.training.dataset import encode_conversation

        rows = []
        for s in samples:
            enc = encode_conversation(self.tokenizer, s.prompt + [{"role": "assistant", "content": s.reference}],
                                      assistant_only=True)
            rows.append({k: v[:max_length] for k, v in enc.items()})
        return rows

    def loss(self, rows: list[dict[str, list[int]]], batch_size: int = 4, progress: Progress | None = None) -> float | None:
        """Token-weighted mean cross-entropy over the masked (assistant) tokens."""
        return loss_from_rows(self.loss_rows(rows, batch_size, progress))

    def loss_rows(self, rows: list[dict[str, list[int]]], batch_size: int = 4,
                  progress: Progress | None = None) -> list[tuple[float, int]]:
        """Per row: (cross-entropy summed over its masked tokens, their count); for intervals on eval loss."""
        import torch
        import torch.nn.functional as F

        out: list[tuple[float, int]] = []
        done = 0
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode(), self._context():
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                width = max(len(r["input_ids"]) for r in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                att = torch.zeros((len(batch), width), dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                for b, r in enumerate(batch):  # right padding: positions match training
                    n = len(r["input_ids"])
                    ids[b, :n] = torch.tensor(r["input_ids"])
                    att[b, :n] = 1
                    lab = torch.tensor(r["input_ids"])
                    lab[torch.tensor(r["assistant_masks"]) == 0] = -100
                    labels[b, :n] = lab
                dev = self.model.device
                logits = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits.float()
                shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
                shift_labels = labels[:, 1:].reshape(-1).to(dev)
                loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="none")
                loss = loss.view(len(batch), -1)
                counts = (labels[:, 1:] != -100).sum(1)
                for b in range(len(batch)):
                    out.append((float(loss[b].sum()), int(counts[b])))
                done += len(batch)
                if progress:
                    progress(done, len(rows))
        return out


def loss_from_rows(rows: list[tuple[float, int]]) -> float | None:
    total = sum(r[0] for r in rows)
    count = sum(r[1] for r in rows)
    if not count:
        return None
    value = total / count
    return value if math.isfinite(value) else None


def timed(fn, *args, **kw) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0
