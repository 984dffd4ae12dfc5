"""What the rules look at, gathered cheaply and cached: tokenizer, data facts, target, estimate.

The wizard re-runs the check on every (debounced) keystroke of its hyperparameter
screen, so the costly parts are cached in the process:
- the tokenizer, per base model. Models whose tokenizer class is the generic
  `TokenizersBackend` (the embedded one among them) load through that class directly,
  which is what `AutoTokenizer` would pick anyway but without importing torch (~1 s
  against several under load); others go through `ftwizard.data.tokens.load_tokenizer`.
- the data lint of each file, keyed by path, size, mtime, the tokenizer's files and the
  system prompt, in memory and on disk (<cache>/preflight), so `check` then `train`
  lints once and a cached check never imports transformers. Lint runs without a max
  length: token counts do not depend on it, so changing data.max_length only re-counts
  truncation from the cached lengths.
- GPU detection (NVML), for 30 s.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ftwizard.config import EMBEDDED, RunConfig
from ftwizard.errors import UserError

_LOCK = threading.Lock()
_TOKENIZERS: dict[tuple, Any] = {}
_FACTS: dict[tuple, "DataFacts"] = {}
_FACTS_MAX = 16
_DETECTION: list = []  # [(time, Detection)]
DETECTION_TTL_S = 30.0
_FAST_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


# ---- tokenizer -------------------------------------------------------------------------
def _local_folder(base: str) -> Path | None:
    if base == EMBEDDED:
        from ftwizard.models.embedded import ensure_cached

        return ensure_cached(log=lambda msg: print(msg, file=sys.stderr))
    p = Path(base).expanduser()
    from ftwizard.models.resolve import is_run_folder, resolve_base

    if is_run_folder(base):  # "SFT first, then DPO": the finished run's model (merged once, then cached)
        return Path(resolve_base(base, log=lambda msg: print(msg, file=sys.stderr)))
    if p.is_dir():
        return p
    if base.count("/") == 1 and not p.exists():
        from ftwizard.hardware.shapes import cached_config

        cfg = cached_config(base)
        return cfg.parent if cfg is not None else None
    return None


def load_tokenizer(base: str, trust_remote_code: bool = False, chat_template: str | None = None):
    """The base model's tokenizer, cached per process (see the module docstring for the fast path).
    `chat_template`: data.chat_template applied to (a copy of) it, as the trainer will (None: as it is)."""
    if chat_template is not None:
        return _with_template(base, trust_remote_code, chat_template)
    key = (base, trust_remote_code)
    with _LOCK:
        tok = _TOKENIZERS.get(key)
    if tok is not None:
        return tok
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    folder = _local_folder(base)
    tok = None
    if folder is not None and not trust_remote_code and (folder / "tokenizer.json").is_file():
        try:
            tcfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tcfg = {}
        if tcfg.get("tokenizer_class") in _FAST_CLASSES:
            from transformers import PreTrainedTokenizerFast
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            try:
                tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError):
                tok = None
    if tok is None:
        from ftwizard.data.tokens import load_tokenizer as data_load_tokenizer

        tok = data_load_tokenizer(str(folder) if folder is not None and base != EMBEDDED else base, trust_remote_code)
    with _LOCK:
        _TOKENIZERS[key] = tok
    return tok


def _with_template(base: str, trust_remote_code: bool, choice: str):
    from ftwizard.data import chat_templates as ct

    key = (base, trust_remote_code, ct.cache_key(choice))
    with _LOCK:
        tok = _TOKENIZERS.get(key)
    if tok is not None:
        return tok
    tok = load_tokenizer(base, trust_remote_code)
    if ct.resolve(choice, tok) is not None:  # a template other than the model's own: on a copy
        import copy

        tok = copy.deepcopy(tok)
        ct.apply_template(tok, choice)
    with _LOCK:
        _TOKENIZERS[key] = tok
    return tok


def template_choice(cfg: RunConfig) -> str | None:
    """The data.chat_template the trainer applies to this run's data (None: plain text rows need none)."""
    from ftwizard.data.chat_templates import needs_template

    try:
        return cfg.data.chat_template if needs_template(cfg.data.train, cfg.data.format) else None
    except OSError:
        return cfg.data.chat_template


# ---- data facts --------------------------------------------------------------------------
@dataclass
class DataFacts:
    """One data file as the trainer will see it: the lint report, exact token lengths, markup,
    and the two tokenizer facts the rules need (so a cached result needs no tokenizer)."""

    path: str
    lint: Any                      # ftwizard.data.lint.LintReport
    lengths: list[int]             # exact token counts of the usable rows (chat template applied)
    markup: Any                    # ftwizard.preflight.markup.MarkupScan
    row_numbers: list[int] | None = None  # the row of each length, when it could be tracked
    chat_template: str | None = None
    eos_token: str | None = None
    elapsed_s: float = 0.0
    cached: str | None = None      # None (linted now), "memory" or "disk"

    @property
    def rows(self) -> int:
        return self.lint.rows

    @property
    def valid_rows(self) -> int:
        return self.lint.valid_rows


def _file_key(path: Path | None) -> tuple | None:
    if path is None:
        return None
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt")


def tokenizer_fingerprint(base: str) -> tuple | None:
    """Sizes and times of the tokenizer's files, without importing transformers; None when the
    model is not a local folder yet (then nothing is cached on disk for it)."""
    if base == EMBEDDED:
        from ftwizard.models.embedded import cache_path, is_cached

        folder = cache_path() if is_cached() else None
    else:
        try:
            folder = _local_folder(base)
        except UserError:
            folder = None
    if folder is None:
        return None
    out = []
    for name in _TOKENIZER_FILES:
        p = folder / name
        if p.is_file():
            st = p.stat()
            out.append((name, st.st_size, st.st_mtime_ns))
    return (str(folder), tuple(out)) if out else None


_DISK_VERSION = 2  # 2: lint stats carry the label counts (data.imbalance)
_DISK_MAX_FILES = 32


def _disk_path(key: tuple) -> Path:
    import hashlib

    from ftwizard.paths import cache_dir

    digest = hashlib.sha256(repr((_DISK_VERSION, key)).encode()).hexdigest()[:32]
    return cache_dir() / "preflight" / f"{digest}.pickle"


def _disk_load(key: tuple) -> "DataFacts | None":
    import pickle

    p = _disk_path(key)
    try:
        with open(p, "rb") as f:
            version, stored_key, facts = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        return None
    return facts if version == _DISK_VERSION and stored_key == key else None


def _disk_store(key: tuple, facts: "DataFacts") -> None:
    import pickle

    from ftwizard.fileio import atomic_write_bytes

    p = _disk_path(key)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, pickle.dumps((_DISK_VERSION, key, facts), protocol=pickle.HIGHEST_PROTOCOL))
        old = sorted(p.parent.glob("*.pickle"), key=lambda q: q.stat().st_mtime)
        for q in old[:-_DISK_MAX_FILES]:
            q.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written is only slower


@lru_cache(maxsize=1)
def _tracking_linter_class():
    from ftwizard.data.lint import Linter

    class RowTrackingLinter(Linter):
        """The lint, remembering which row each token length belongs to (for truncation row numbers).

        A batch's lengths are appended chat rows first, then text rows; if a batch ever adds a
        different number of lengths (rows the template rejects), the mapping is dropped."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.length_rows: list[int] = []
            self.tracking = True

        def _flush(self) -> None:
            order = [v.row for v in self.batch if v.messages is not None] + \
                    [v.row for v in self.batch if v.messages is None]
            before = len(self.lengths)
            super()._flush()
            added = len(self.lengths) - before
            if self.tracking and added == len(order):
                self.length_rows.extend(order)
            elif added:
                self.tracking = False
                self.length_rows = []

    return RowTrackingLinter


def _RowTrackingLinter(*a, **kw):
    return _tracking_linter_class()(*a, **kw)


def facts_key(path: Path, tok_key: tuple, system_prompt: str | None, eval_path: Path | None, role: str) -> tuple:
    return (role, _file_key(path), tok_key, system_prompt, _file_key(eval_path) if eval_path else None)


def data_facts(path: Path, get_tokenizer, tok_key: tuple, *, system_prompt: str | None = None,
               eval_path: Path | None = None, role: str = "train", cached_only: bool = False,
               objective: str | None = None) -> DataFacts | None:
    """Lint one file with the model's tokenizer (no max length) and scan it for chat markup.

    Cached in memory and on disk (so `ftwizard check` then `ftwizard train` lints once);
    `get_tokenizer()` is only called when the file has to be linted. The train file is
    linted in full (duplicates, PII, decontamination against the eval file); the eval file
    only for what would stop or skew the run. With `cached_only`, returns None instead of linting."""
    fingerprint = tokenizer_fingerprint(tok_key[0])
    key = facts_key(path, tok_key + (fingerprint,), system_prompt, eval_path, role) + (objective,)
    with _LOCK:
        hit = _FACTS.get(key)
    if hit is not None:
        hit.cached = "memory"
        return hit
    if fingerprint is not None:
        hit = _disk_load(key)
        if hit is not None:
            hit.cached = "disk"
            _remember(key, hit)
            return hit
    if cached_only:
        return None
    tokenizer = get_tokenizer()
    from ftwizard.data.lint import LintOptions
    from ftwizard.data.loading import check_readable, file_kind, iter_records
    from ftwizard.preflight.markup import MarkupScan

    t0 = time.perf_counter()
    path = check_readable(Path(path))
    kind = file_kind(path)
    full = role == "train"
    opts = LintOptions(tokenizer=tokenizer, model=tok_key[0], max_length=None, task_type=None,
                       eval_path=eval_path if full else None, system_prompt=system_prompt, dedup=full, pii=full,
                       objective=objective)  # the lint judges preference rows by the run's objective (h14b)
    linter = _RowTrackingLinter(opts, str(path), kind)
    scan = MarkupScan()
    for rec in iter_records(path, kind):
        if rec.value is not None:
            scan.scan(rec.row, rec.value)
        linter.feed_one(rec)
    report = linter.finish()
    rows = linter.length_rows if len(linter.length_rows) == len(linter.lengths) else None
    template = getattr(tokenizer, "chat_template", None)
    facts = DataFacts(str(path), report, list(linter.lengths), scan, rows,
                      template if isinstance(template, str) else None, getattr(tokenizer, "eos_token", None),
                      time.perf_counter() - t0)
    _remember(key, facts)
    if fingerprint is not None:
        _disk_store(key, facts)
    return facts


def _remember(key: tuple, facts: DataFacts) -> None:
    with _LOCK:
        if len(_FACTS) >= _FACTS_MAX:
            _FACTS.pop(next(iter(_FACTS)))
        _FACTS[key] = facts


def clear_caches() -> None:
    with _LOCK:
        _TOKENIZERS.clear()
        _FACTS.clear()
        _DETECTION.clear()


# ---- target: the GPU (or CPU) the run will use --------------------------------------------
@dataclass
class Target:
    kind: str                       # "gpu" | "cpu" | "none" (device cuda but no GPU)
    gpu: Any = None                 # GpuTarget the estimate is judged against (RAM for a CPU run)
    note: str | None = None
    detected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        g = self.gpu
        return {"kind": self.kind, "name": g.name if g else None, "memory_bytes": g.memory_bytes if g else None,
                "supports_bf16": g.supports_bf16 if g else None, "source": g.source if g else None, "note": self.note}


def _detection():
    now = time.time()
    with _LOCK:
        if _DETECTION and now - _DETECTION[0][0] < DETECTION_TTL_S:
            return _DETECTION[0][1]
    from ftwizard.hardware.gpus import detect

    d = detect()
    with _LOCK:
        _DETECTION[:] = [(now, d)]
    return d


def cpu_target():
    import psutil

    from ftwizard.hardware.estimate import GpuTarget

    cores = os.cpu_count() or 1
    return GpuTarget(name=f"CPU RAM ({cores} cores)", memory_bytes=int(psutil.virtual_memory().total),
                     peak_tflops=None, price_per_hour=None, supports_bf16=False, source="detected")


def resolve_target(cfg: RunConfig, gpu=None) -> Target:
    """Where the run will train: the named GPU (planning), else the detected one, else the CPU."""
    from ftwizard.hardware.estimate import resolve_gpu

    device = cfg.training.device
    if device == "cpu":
        return Target("cpu", cpu_target(), "training.device is cpu")
    if gpu is not None:
        return Target("gpu", resolve_gpu(gpu))
    d = _detection()
    if d.gpus:
        from ftwizard.hardware.gpus import gpu_target

        note = f"{len(d.gpus)} GPUs detected; the trainer uses one" if len(d.gpus) > 1 else None
        return Target("gpu", gpu_target(d.gpus[0]), note)
    why = d.message or "no GPU detected"
    if device == "cuda":
        return Target("none", None, why)
    return Target("cpu", cpu_target(), f"{why}: the run trains on the CPU")
