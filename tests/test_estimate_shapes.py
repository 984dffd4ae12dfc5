"""Model shapes and parameter counts: built-in table vs published totals, config.json
parsing vs the real transformers modules, LoRA trainable counts vs peft."""

from __future__ import annotations

import json

import pytest

from ftwizard.errors import UserError
from ftwizard.hardware.shapes import BUILTIN, EMBEDDED_SHAPE, find_builtin, resolve_shape, shape_from_config

# Published totals. Source: each model's Hugging Face page (the "Model size" shown from
# the safetensors metadata, which counts every stored tensor), or the model card's
# "Number of Parameters" line where only that is given (Qwen2.5, Qwen3: "0.49B", "8.2B";
# Gemma 3 4B/12B/27B: 4.3B/12.2B/27.4B including the SigLIP vision tower). Exact
# integers are the safetensors totals.
PUBLISHED = {
    "smollm2-135m": 134_515_008,       # HuggingFaceTB/SmolLM2-135M
    "smollm2-360m": 361_821_120,       # HuggingFaceTB/SmolLM2-360M
    "smollm2-1.7b": 1_711_376_384,     # HuggingFaceTB/SmolLM2-1.7B
    "llama-3.2-1b": 1_235_814_400,     # meta-llama/Llama-3.2-1B
    "llama-3.2-3b": 3_212_749_824,     # meta-llama/Llama-3.2-3B
    "llama-3.1-8b": 8_030_261_248,     # meta-llama/Llama-3.1-8B
    "llama-3.1-70b": 70_553_706_496,   # meta-llama/Llama-3.1-70B
    "qwen2.5-0.5b": 0.49e9,            # Qwen/Qwen2.5-0.5B card: 0.49B
    "qwen2.5-1.5b": 1.54e9,            # card: 1.54B
    "qwen2.5-3b": 3.09e9,              # card: 3.09B
    "qwen2.5-7b": 7.61e9,              # card: 7.61B
    "qwen2.5-14b": 14.7e9,             # card: 14.7B
    "qwen2.5-32b": 32.5e9,             # card: 32.5B
    "qwen2.5-72b": 72.7e9,             # card: 72.7B
    "qwen3-0.6b": 0.6e9,               # Qwen/Qwen3-0.6B card: 0.6B
    "qwen3-4b": 4.0e9,                 # card: 4.0B
    "qwen3-8b": 8.2e9,                 # card: 8.2B
    "qwen3-14b": 14.8e9,               # card: 14.8B
    "qwen3-32b": 32.8e9,               # card: 32.8B
    "mistral-7b": 7_248_023_552,       # mistralai/Mistral-7B-v0.3
    "gemma-2-2b": 2_614_341_888,       # google/gemma-2-2b
    "gemma-2-9b": 9_241_705_984,       # google/gemma-2-9b
    "gemma-2-27b": 27_227_128_320,     # google/gemma-2-27b
    "gemma-3-1b": 999_885_952,         # google/gemma-3-1b-pt
    "gemma-3-4b": 4.3e9,               # google/gemma-3-4b-pt card: 4.3B (with vision)
    "gemma-3-12b": 12.2e9,             # card: 12.2B
    "gemma-3-27b": 27.4e9,             # card: 27.4B
    "phi-3-mini": 3_821_079_552,       # microsoft/Phi-3-mini-4k-instruct
    "phi-3-medium": 13_960_238_080,    # microsoft/Phi-3-medium-4k-instruct
    "phi-4-mini": 3_836_021_760,       # microsoft/Phi-4-mini-instruct
    "phi-4": 14_659_507_200,           # microsoft/phi-4
}


# Qwen3 cards also give non-embedding counts, more digits than the rounded totals
# ("1.7B" is 1.72B; its page shows 2.03B because the checkpoint stores the tied
# output layer separately).
PUBLISHED_NON_EMBEDDING = {
    "qwen3-0.6b": 0.44e9, "qwen3-1.7b": 1.4e9, "qwen3-4b": 3.6e9, "qwen3-8b": 6.95e9,
    "qwen3-14b": 13.2e9, "qwen3-32b": 31.2e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_NON_EMBEDDING))
def test_qwen3_non_embedding_within_one_percent(name):
    s = find_builtin(name)
    non_emb = s.total_params - s.embedding_params - s.lm_head_params
    assert abs(non_emb - PUBLISHED_NON_EMBEDDING[name]) / PUBLISHED_NON_EMBEDDING[name] < 0.01


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_builtin_totals_within_one_percent_of_published(name):
    shape = find_builtin(name)
    assert shape is not None
    assert abs(shape.total_params - PUBLISHED[name]) / PUBLISHED[name] < 0.01


def test_every_builtin_has_a_published_total():
    assert {s.name for s in BUILTIN} - {"embedded", "llama-3.3-70b"} <= set(PUBLISHED) | set(PUBLISHED_NON_EMBEDDING)


def test_embedded_shape_is_exact():
    assert EMBEDDED_SHAPE.total_params == 134_515_008
    assert resolve_shape("embedded") is EMBEDDED_SHAPE


@pytest.mark.parametrize("alias,name", [
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("google/gemma-2-9b-it", "gemma-2-9b"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "embedded"),
    ("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini"),
])
def test_hub_ids_find_their_builtin_shape(alias, name):
    assert find_builtin(alias).name == name


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError) as e:
        resolve_shape("nobody/no-such-model-xyz")
    assert "built-in" in e.value.what and "llama-3.1-8b" in e.value.fix


def test_moe_is_refused(tmp_path):
    cfg = {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 128, "vocab_size": 100, "num_local_experts": 8}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    resolve_shape.cache_clear()
    with pytest.raises(UserError, match="mixture-of-experts"):
        resolve_shape(str(tmp_path))


def test_folder_without_config_is_a_user_error(tmp_path):
    resolve_shape.cache_clear()
    with pytest.raises(UserError, match="no config.json"):
        resolve_shape(str(tmp_path))


def test_hub_cache_is_read_offline(tmp_path, monkeypatch):
    snap = tmp_path / "models--acme--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": False}
    (snap / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    resolve_shape.cache_clear()
    s = resolve_shape("acme/tiny")
    assert s.hidden == 64 and s.kv_heads == 2 and not s.tied and "hub cache" in s.source


# ---- against the real modules (small random models; no weights downloaded) -------------
ARCHS = ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3_text"]


def _small_config(model_type: str, tied: bool):
    from transformers import AutoConfig

    extra = {"head_dim": 24} if model_type in ("qwen3", "gemma2", "gemma3_text") else {}
    return AutoConfig.for_model(model_type, hidden_size=96, intermediate_size=200, num_attention_heads=4,
                                num_key_value_heads=2, num_hidden_layers=2, vocab_size=300,
                                tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra)


@pytest.mark.parametrize("model_type", ARCHS)
@pytest.mark.parametrize("tied", [True, False])
def test_counts_from_config_match_num_parameters(model_type, tied):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    cfg = _small_config(model_type, tied)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    shape = shape_from_config(cfg.to_dict(), model_type, "test")
    assert shape.total_params == model.num_parameters()


@pytest.mark.parametrize("model_type", ARCHS)
@pytest.mark.parametrize("targets", ["all-linear", "qv"])
def test_lora_counts_match_peft(model_type, targets):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = _small_config(model_type, True)
    model = AutoModelForCausalLM.from_config(cfg)
    shape = shape_from_config(cfg.to_dict(), model_type, "test")
    if targets == "qv":
        targets = ["qkv_proj"] if shape.fused else ["q_proj", "v_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=targets, task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert shape.lora_params(8, targets) == trainable


@pytest.mark.slow
def test_embedded_model_counts_are_exact(embedded_model_dir):
    """The real embedded model: num_parameters() and peft's trainable counts."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    resolve_shape.cache_clear()
    from_folder = resolve_shape(str(embedded_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(embedded_model_dir))
    assert EMBEDDED_SHAPE.total_params == from_folder.total_params == model.num_parameters() == 134_515_008
    for targets, r in (("all-linear", 16), (["q_proj", "v_proj"], 8)):
        pm = get_peft_model(model, LoraConfig(r=r, target_modules=targets, task_type="CAUSAL_LM"))
        assert EMBEDDED_SHAPE.lora_params(r, targets) == pm.get_nb_trainable_parameters()[0]
        model = pm.unload()
