"""The model behind the server: load once, answer one chat at a time, token by token.

Heavy (torch, transformers, peft): only the server process imports it. Loading reuses
the eval engine (`ftwizard.evaluation.generate.Engine`), so the server, eval and export
see the same weights: the base in the run's precision (4-bit NF4 for QLoRA), the adapter
on top. The base model's answer comes from the same weights with the adapter disabled
(peft's `disable_adapter`), not from a second copy; only a full fine-tune needs the base
loaded a second time, on first use.

Generation is transformers' `generate` with our own streamer, because its TextStreamer
holds text back until a space (word by word) and we want each token as it comes. The
streamer decodes the whole answer so far each step, so multi-token characters and
leading spaces come out right, and holds back text that might be the start of a stop
string. A cancel flag is checked after every token (a client that hangs up stops the
work within one token). Generation stops at the chat template's end-of-turn tokens
(`ftwizard.data.template.end_of_turn_markers`, the markers training taught).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from ftwizard.serve.protocol import ChatRequest, RequestError
from ftwizard.serve.target import BASE_ID, ServeTarget


@dataclass
class Answer:
    text: str
    finish: str              # stop, length or cancelled
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None   # seconds from start of generation to the first token
    total_s: float

    @property
    def tokens_per_s(self) -> float | None:
        if self.first_token_s is None or self.completion_tokens < 2:
            return None
        span = self.total_s - self.first_token_s
        return (self.completion_tokens - 1) / span if span > 0 else None


class _Streamer:
    """transformers streamer: one call to `emit` per token of visible text (see module doc)."""

    def __init__(self, tokenizer, emit: Callable[[str], None], stops: list[str], on_token: Callable[[], None]):
        self.tok, self.emit, self.stops, self.on_token = tokenizer, emit, stops, on_token
        self.ids: list[int] = []
        self.sent = 0             # characters of the decoded answer already emitted
        self.prompt_seen = False
        self.stopped = False      # a stop string was found
        self.text = ""

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first pushes the prompt
            self.prompt_seen = True
            return
        if self.stopped:
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        self.on_token()
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        end = len(text)
        for s in self.stops:
            i = text.find(s, max(0, self.sent - len(s)))
            if i != -1:
                end, self.stopped = min(end, i), True
        if not self.stopped:
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                end = len(text.rstrip("\ufffd"))
            end -= _stop_prefix_len(text[:end], self.stops)
        self.text = text[:end] if self.stopped else text
        if end > self.sent:
            self.emit(text[self.sent:end])
            self.sent = end

    def end(self) -> None:
        if not self.stopped and len(self.text) > self.sent:
            self.emit(self.text[self.sent:])
            self.sent = len(self.text)

    def final_text(self) -> str:
        return self.text[:self.sent] if self.stopped else self.text


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that could begin a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class ChatModel:
    """One loaded target; `answer` serves the tuned model or, by id 'base', the base."""

    def __init__(self, target: ServeTarget, log=print):
        from ftwizard.evaluation.generate import Engine
        from ftwizard.models.resolve import resolve_base

        self.target, self.log = target, log
        self.base_path = resolve_base(target.base, log=log)
        t0 = time.perf_counter()
        # the run's saved tokenizer: its chat template and added tokens (a base without a template, h14d)
        tok_path = target.path if target.kind != "base" else None
        self.engine = Engine(self.base_path, target.method, target.trust_remote_code, target.device, log=log,
                             tokenizer_path=tok_path)
        if target.kind == "base":
            self.engine.use("base", None, BASE_ID)
        else:
            self.engine.use(target.kind, target.path, target.name)
        self.load_s = time.perf_counter() - t0
        self._base_engine = None
        self.lock = threading.Lock()
        self.busy = False
        self.tokenizer = self.engine.tokenizer
        self.eos_ids = self._end_of_turn_ids()
        self.context = int(getattr(self.engine.model.config, "max_position_embeddings", 0) or 0) or None

    @property
    def device(self) -> str:
        return self.engine.device

    def _end_of_turn_ids(self) -> list[int]:
        from ftwizard.data.template import end_of_turn_markers

        ids = []
        for tok in end_of_turn_markers(self.tokenizer):
            i = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(i, int) and i != self.tokenizer.unk_token_id and i not in ids:
                ids.append(i)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def turns_for(self, req: ChatRequest) -> list[dict[str, str]]:
        """The request's messages, with the run's training system prompt first when the client sent none."""
        turns = req.turns()
        if self.target.system_prompt and not any(t["role"] == "system" for t in turns):
            turns.insert(0, {"role": "system", "content": self.target.system_prompt})
        return turns

    def _model_for(self, model_id: str):
        """(model, context manager) for an id: the tuned model, or the base (adapter off / second load)."""
        import contextlib

        from peft import PeftModel

        m = self.engine.model
        if model_id != BASE_ID or self.target.kind == "base":
            return m, contextlib.nullcontext()
        if isinstance(m, PeftModel):
            return m, m.disable_adapter()
        if self._base_engine is None:  # a whole fine-tuned model: the base is another set of weights
            from ftwizard.evaluation.generate import Engine

            self.log("loading the base model for comparison (a full fine-tune has no adapter to switch off)")
            self._base_engine = Engine(self.base_path, "full", self.target.trust_remote_code, self.target.device,
                                       tokenizer_path=self.target.path)
            self._base_engine.use("base", None, BASE_ID)
        return self._base_engine.model, contextlib.nullcontext()

    def answer(self, model_id: str, req: ChatRequest, emit: Callable[[str], None],
               cancel: threading.Event | None = None) -> Answer:
        """Generate for one request, calling `emit(text)` per token; raises RequestError for a prompt too long."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from ftwizard.data.template import TemplateError, render

        cancel = cancel or threading.Event()
        try:
            prompt = render(self.tokenizer, self.turns_for(req), add_generation_prompt=True)
        except TemplateError as e:
            raise RequestError(400, f"messages: {e}", param="messages") from None
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        n_prompt = int(ids["input_ids"].shape[1])
        limit = req.token_limit
        if self.context:
            if n_prompt >= self.context:
                raise RequestError(400, f"messages: the prompt is {n_prompt} tokens; this model reads at most "
                                        f"{self.context}", param="messages", code="context_length_exceeded")
            limit = min(limit, self.context - n_prompt)

        t0 = time.perf_counter()
        first: list[float] = []
        streamer = _Streamer(self.tokenizer, emit, req.stops,
                             on_token=lambda: first.append(time.perf_counter() - t0) if not first else None)

        class _Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                flag = cancel.is_set() or streamer.stopped
                return torch.full((input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device)

        kwargs = dict(max_new_tokens=limit, eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
                      streamer=streamer, stopping_criteria=StoppingCriteriaList([_Halt()]))
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p, top_k=None)
        else:
            kwargs.update(do_sample=False)
        with self.lock:
            if cancel.is_set():
                return Answer("", "cancelled", n_prompt, 0, None, 0.0)
            self.busy = True
            try:
                t0 = time.perf_counter()
                if req.seed is not None:
                    torch.manual_seed(req.seed)
                model, ctx = self._model_for(model_id)
                with torch.inference_mode(), ctx:
                    out = model.generate(**{k: v.to(model.device) for k, v in ids.items()}, **kwargs)
            finally:
                self.busy = False
        total = time.perf_counter() - t0
        new = out[0, n_prompt:].tolist()
        if cancel.is_set():
            finish = "cancelled"
        elif streamer.stopped or (new and new[-1] in self.eos_ids):
            finish = "stop"
        else:
            finish = "length" if len(new) >= limit else "stop"
        return Answer(streamer.final_text(), finish, n_prompt, len(new), first[0] if first else None, total)
