"""Model shapes, read without downloading weights, and the parameter counts they imply.

A memory or time estimate needs only a model's shape (hidden size, layers, heads,
KV heads, intermediate size, vocabulary, tied embeddings), never its weights. Shapes
come, in order, from a local folder's `config.json`, the local Hugging Face hub cache
(read as files, offline, never downloading), or the built-in table of popular bases
below. Parameter counts are computed from the shape, module by module, the way the
transformers implementations build them, so they match `num_parameters()` exactly for
these architectures; LoRA trainable counts follow peft's rules (`all-linear` is every
`nn.Linear` inside the decoder layers, never the output layer).

Only dense decoder-only transformers are modelled; mixture-of-experts configs are
refused with a clear message rather than estimated wrongly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from ftwizard.errors import UserError

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ModelShape:
    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False  # Qwen3, Gemma 3: RMSNorm over head_dim on q and k
    norms_per_layer: int = 2  # Gemma 2/3: 4 (pre and post, around attention and MLP)
    fused: bool = False  # Phi-3/4: qkv_proj and gate_up_proj are single Linear layers
    attention: str = "sdpa"  # "eager" where the model needs it (Gemma 2 logit soft-capping)
    extra_params: int = 0  # frozen extras outside the language model (a vision tower)
    hub_id: str | None = None
    source: str = "built-in table"

    # ---- modules -----------------------------------------------------------
    def linear_modules(self) -> list[tuple[str, int, int, bool]]:
        """(name, in_features, out_features, has_bias) of each Linear in one decoder layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        if self.fused:
            return [
                ("qkv_proj", h, q + 2 * kv, self.qkv_bias),
                ("o_proj", q, h, False),
                ("gate_up_proj", h, 2 * i, False),
                ("down_proj", i, h, False),
            ]
        return [
            ("q_proj", h, q, self.qkv_bias),
            ("k_proj", h, kv, self.qkv_bias),
            ("v_proj", h, kv, self.qkv_bias),
            ("o_proj", q, h, False),
            ("gate_proj", h, i, False),
            ("up_proj", h, i, False),
            ("down_proj", i, h, False),
        ]

    @property
    def module_names(self) -> list[str]:
        return [m[0] for m in self.linear_modules()]

    # ---- parameter counts ----------------------------------------------------
    @property
    def linear_params_per_layer(self) -> int:
        return sum(i * o + (o if b else 0) for _, i, o, b in self.linear_modules())

    @property
    def linear_weight_params_per_layer(self) -> int:
        """Linear weights without biases (autocast keeps 16-bit copies of weights only)."""
        return sum(i * o for _, i, o, _ in self.linear_modules())

    @property
    def norm_params_per_layer(self) -> int:
        return self.norms_per_layer * self.hidden + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def layer_params(self) -> int:
        return self.linear_params_per_layer + self.norm_params_per_layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def quantizable_params(self) -> int:
        """Weights that bitsandbytes 4-bit replaces: the Linear layers inside the decoder."""
        return self.layers * self.linear_params_per_layer

    @property
    def total_params(self) -> int:
        return (
            self.embedding_params
            + self.layers * self.layer_params
            + self.hidden  # final norm
            + self.lm_head_params
            + self.extra_params
        )

    def lora_targets(self, targets: str | list[str] | tuple[str, ...]) -> list[tuple[str, int, int]]:
        """The (name, in, out) Linear modules of one layer that a LoRA target list selects."""
        mods = self.linear_modules()
        if targets == ALL_LINEAR or targets == [ALL_LINEAR]:
            return [(n, i, o) for n, i, o, _ in mods]
        wanted = [targets] if isinstance(targets, str) else list(targets)
        chosen = [(n, i, o) for n, i, o, _ in mods if n in wanted]
        unknown = [t for t in wanted if t not in {m[0] for m in mods} and t not in ("lm_head", "embed_tokens")]
        if unknown or not chosen:
            raise UserError(
                f"LoRA target module(s) {unknown or wanted} do not exist in {self.name}",
                fix=f"use all-linear or some of: {', '.join(self.module_names)}",
            )
        return chosen

    def lora_params(self, r: int, targets: str | list[str] = ALL_LINEAR) -> int:
        """Trainable LoRA parameters: r x (in + out) per adapted Linear, per layer (as peft counts)."""
        return self.layers * sum(r * (i + o) for _, i, o in self.lora_targets(targets))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_params"] = self.total_params
        return d


# ---- built-in table -----------------------------------------------------------
def _s(name, hub_id, model_type, hidden, layers, heads, kv, inter, vocab, tied, head_dim=None, **kw) -> ModelShape:
    return ModelShape(
        name=name, model_type=model_type, hidden=hidden, layers=layers, heads=heads, kv_heads=kv,
        head_dim=head_dim or hidden // heads, intermediate=inter, vocab=vocab, tied=tied, hub_id=hub_id, **kw,
    )


_QW = dict(qkv_bias=True)
_Q3 = dict(qk_norm=True)
_G2 = dict(norms_per_layer=4, attention="eager")
_G3 = dict(norms_per_layer=4, qk_norm=True)
_SIGLIP = 417_000_000  # Gemma 3 4B/12B/27B carry a SigLIP vision tower + projector (approx.; frozen for text SFT)

EMBEDDED_SHAPE = _s("embedded", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 576, 30, 9, 3, 1536, 49152, True)

BUILTIN: tuple[ModelShape, ...] = (
    EMBEDDED_SHAPE,
    _s("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "llama", 576, 30, 9, 3, 1536, 49152, True),
    _s("smollm2-360m", "HuggingFaceTB/SmolLM2-360M", "llama", 960, 32, 15, 5, 2560, 49152, True),
    _s("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B", "llama", 2048, 24, 32, 32, 8192, 49152, True),
    _s("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "llama", 2048, 16, 32, 8, 8192, 128256, True, 64),
    _s("llama-3.2-3b", "meta-llama/Llama-3.2-3B", "llama", 3072, 28, 24, 8, 8192, 128256, True, 128),
    _s("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "llama", 4096, 32, 32, 8, 14336, 128256, False),
    _s("llama-3.1-70b", "meta-llama/Llama-3.1-70B", "llama", 8192, 80, 64, 8, 28672, 128256, False),
    _s("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct", "llama", 8192, 80, 64, 8, 28672, 128256, False),
    _s("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", 896, 24, 14, 2, 4864, 151936, True, **_QW),
    _s("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "qwen2", 1536, 28, 12, 2, 8960, 151936, True, **_QW),
    _s("qwen2.5-3b", "Qwen/Qwen2.5-3B", "qwen2", 2048, 36, 16, 2, 11008, 151936, True, **_QW),
    _s("qwen2.5-7b", "Qwen/Qwen2.5-7B", "qwen2", 3584, 28, 28, 4, 18944, 152064, False, **_QW),
    _s("qwen2.5-14b", "Qwen/Qwen2.5-14B", "qwen2", 5120, 48, 40, 8, 13824, 152064, False, **_QW),
    _s("qwen2.5-32b", "Qwen/Qwen2.5-32B", "qwen2", 5120, 64, 40, 8, 27648, 152064, False, **_QW),
    _s("qwen2.5-72b", "Qwen/Qwen2.5-72B", "qwen2", 8192, 80, 64, 8, 29568, 152064, False, **_QW),
    _s("qwen3-0.6b", "Qwen/Qwen3-0.6B", "qwen3", 1024, 28, 16, 8, 3072, 151936, True, 128, **_Q3),
    _s("qwen3-1.7b", "Qwen/Qwen3-1.7B", "qwen3", 2048, 28, 16, 8, 6144, 151936, True, 128, **_Q3),
    _s("qwen3-4b", "Qwen/Qwen3-4B", "qwen3", 2560, 36, 32, 8, 9728, 151936, True, 128, **_Q3),
    _s("qwen3-8b", "Qwen/Qwen3-8B", "qwen3", 4096, 36, 32, 8, 12288, 151936, False, 128, **_Q3),
    _s("qwen3-14b", "Qwen/Qwen3-14B", "qwen3", 5120, 40, 40, 8, 17408, 151936, False, 128, **_Q3),
    _s("qwen3-32b", "Qwen/Qwen3-32B", "qwen3", 5120, 64, 64, 8, 25600, 151936, False, 128, **_Q3),
    _s("mistral-7b", "mistralai/Mistral-7B-v0.3", "mistral", 4096, 32, 32, 8, 14336, 32768, False),
    _s("gemma-2-2b", "google/gemma-2-2b", "gemma2", 2304, 26, 8, 4, 9216, 256000, True, 256, **_G2),
    _s("gemma-2-9b", "google/gemma-2-9b", "gemma2", 3584, 42, 16, 8, 14336, 256000, True, 256, **_G2),
    _s("gemma-2-27b", "google/gemma-2-27b", "gemma2", 4608, 46, 32, 16, 36864, 256000, True, 128, **_G2),
    _s("gemma-3-1b", "google/gemma-3-1b-pt", "gemma3_text", 1152, 26, 4, 1, 6912, 262144, True, 256, **_G3),
    _s("gemma-3-4b", "google/gemma-3-4b-pt", "gemma3", 2560, 34, 8, 4, 10240, 262208, True, 256, extra_params=_SIGLIP, **_G3),
    _s("gemma-3-12b", "google/gemma-3-12b-pt", "gemma3", 3840, 48, 16, 8, 15360, 262208, True, 256, extra_params=_SIGLIP, **_G3),
    _s("gemma-3-27b", "google/gemma-3-27b-pt", "gemma3", 5376, 62, 32, 16, 21504, 262208, True, 128, extra_params=_SIGLIP, **_G3),
    _s("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", "phi3", 3072, 32, 32, 32, 8192, 32064, False, fused=True),
    _s("phi-3-medium", "microsoft/Phi-3-medium-4k-instruct", "phi3", 5120, 40, 40, 10, 17920, 32064, False, fused=True),
    _s("phi-4-mini", "microsoft/Phi-4-mini-instruct", "phi3", 3072, 32, 24, 8, 8192, 200064, True, fused=True),
    _s("phi-4", "microsoft/phi-4", "phi3", 5120, 40, 40, 10, 17920, 100352, False, fused=True),
)


def _key(name: str) -> str:
    n = name.strip().lower()
    n = n.split("/")[-1]
    n = re.sub(r"[-_](instruct|it|chat|base|pt|hf)$", "", n)
    n = re.sub(r"[-_](instruct|it|chat|base|pt|hf)$", "", n)
    n = n.replace("meta-llama-", "llama-").replace("_", "-")
    n = n.replace("-4k", "").replace("-128k", "").replace("-v0.3", "").replace("-v0.1", "").replace("-v0.2", "")
    return n


def builtin_names() -> list[str]:
    return [s.name for s in BUILTIN]


def find_builtin(name: str) -> ModelShape | None:
    k = _key(name)
    for s in BUILTIN:
        if k == s.name or (s.hub_id and k == _key(s.hub_id)):
            return s
    return None


# ---- config.json --------------------------------------------------------------
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")


def shape_from_config(cfg: dict, name: str, source: str) -> ModelShape:
    """Build a shape from a transformers `config.json` mapping."""
    if "text_config" in cfg and isinstance(cfg["text_config"], dict) and "hidden_size" not in cfg:
        outer_type = cfg.get("model_type", "")
        cfg = {**cfg["text_config"], "_outer_type": outer_type}
    if any(cfg.get(k) for k in _MOE_KEYS):
        raise UserError(
            f"{name} is a mixture-of-experts model; the memory estimate models dense models only",
            where=source,
            fix="pick a dense base model, or measure with `ftwizard estimate --probe` on a GPU",
        )
    try:
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        inter = int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(
            f"config.json of {name} lacks a field the estimate needs ({e})",
            where=source,
            fix="use a decoder-only transformers model (hidden_size, num_hidden_layers, ... in config.json)",
        ) from None
    mt = str(cfg.get("model_type", "llama"))
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    tied = bool(cfg.get("tie_word_embeddings", mt.startswith("gemma")))
    gemma23 = mt in ("gemma2", "gemma3", "gemma3_text")
    return ModelShape(
        name=name, model_type=mt, hidden=hidden, layers=layers, heads=heads, kv_heads=kv, head_dim=head_dim,
        intermediate=inter, vocab=vocab, tied=tied,
        qkv_bias=bool(cfg.get("attention_bias", mt == "qwen2")),
        qk_norm=mt in ("qwen3", "gemma3", "gemma3_text"),
        norms_per_layer=4 if gemma23 else 2,
        fused=mt in ("phi3",),
        attention="eager" if mt == "gemma2" else "sdpa",
        source=source,
    )


def _read_config(path: Path, name: str) -> ModelShape:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path.name}: {e}", where=str(path), fix="check the model folder") from None
    if not isinstance(cfg, dict):
        raise UserError("config.json is not a JSON object", where=str(path))
    return shape_from_config(cfg, name, str(path))


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home).expanduser() / "hub"


def cached_config(repo_id: str) -> Path | None:
    """config.json of a hub model already in the local cache (no network)."""
    folder = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snaps = folder / "snapshots"
    if not snaps.is_dir():
        return None
    ref = folder / "refs" / "main"
    order = []
    if ref.is_file():
        order.append(snaps / ref.read_text().strip())
    order.extend(sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True))
    for snap in order:
        if (snap / "config.json").is_file():
            return snap / "config.json"
    return None


@lru_cache(maxsize=64)
def resolve_shape(model: str) -> ModelShape:
    """A shape for 'embedded', a local folder, a cached hub id, or a built-in name."""
    from ftwizard.config import EMBEDDED

    if model == EMBEDDED:
        return EMBEDDED_SHAPE
    p = Path(model).expanduser()
    from ftwizard.models.resolve import is_run_folder

    if is_run_folder(model):  # a finished run as the base ("SFT first, then DPO"): the shape of the run's base
        from ftwizard.config import load_config

        return resolve_shape(load_config(p / "config.yaml").model.base)
    if p.is_dir():
        if (p / "config.json").is_file():
            return _read_config(p / "config.json", p.name)
        raise UserError(f"model folder has no config.json: {p}", fix="point at a folder saved with save_pretrained()")
    if p.name == "config.json" and p.is_file():
        return _read_config(p, p.parent.name)
    if "/" in model:
        cached = cached_config(model)
        if cached is not None:
            return replace(_read_config(cached, model), hub_id=model, source=f"hub cache ({cached})")
    found = find_builtin(model)
    if found is not None:
        return found
    raise UserError(
        f"unknown model {model!r}: not a local folder, not in the local hub cache, not in the built-in table",
        fix="give a folder with config.json, or one of: " + ", ".join(builtin_names()),
    )
