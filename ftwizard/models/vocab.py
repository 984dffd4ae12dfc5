"""The model's vocabulary follows its tokenizer: new rows for a chat template's added tokens, and which rows train.

Heavy (torch): only the trainer, evaluator, server and exporter import it.

- `fit_embeddings(model, tokenizer)` is THE function every loader calls before attaching a run's adapter (or
  using a base that a run's saved tokenizer extends): when the tokenizer has more tokens than the model has
  embedding rows, the embeddings (and an untied output layer) grow to fit and each new row is set to the
  mean of the existing rows. The mean is deterministic, so the trainer and every later loader build the same
  base; it keeps a new token's input a typical vector and its initial output probability ordinary (rather
  than random rows, which can dominate the softmax; Hewitt 2021, "Initializing new word embeddings").
- With LoRA/QLoRA the template tokens' rows train through peft's `trainable_token_indices`: only those rows
  are trainable (a copy of them, written into the weight on the fly), not the whole embedding as
  `modules_to_save` would (a second full fp32 embedding plus its Adam states). A tied output layer
  (SmolLM2, Gemma, small Llamas) follows the embedding through peft's tied adapter; an untied one gets its
  own trainable rows. Full fine-tuning trains every row anyway.
- `keep_adapter_small`: peft saves the WHOLE resized embedding and output layer into every adapter and
  checkpoint once the vocabulary grew (its "auto" rule); the trained rows are already in the adapter
  (trainable tokens) and the rest is the base plus the deterministic mean rows, so the adapter is saved
  without them (0.5 MB instead of 2 GB on an 8B Llama).
"""

from __future__ import annotations

import functools
from pathlib import Path


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


def has_tokenizer(folder) -> bool:
    """Whether `folder` holds a loadable tokenizer (not just a tokenizer_config.json: an adapter copied without
    its tokenizer files, or one made by hand, must fall back to the base's, not fail to load)."""
    if folder is None:
        return False
    f = Path(folder)
    return (f / "tokenizer_config.json").is_file() and any((f / name).is_file() for name in TOKENIZER_FILES)


def embedding_rows(model) -> int:
    return int(model.get_input_embeddings().weight.shape[0])


def fit_embeddings(model, tokenizer) -> list[int]:
    """Grow the model's embeddings to the tokenizer (a tokenizer object or a folder holding one); returns
    the new row ids (empty when the model already has a row for every token)."""
    import torch

    if isinstance(tokenizer, (str, Path)):
        tokenizer = _load_tokenizer(str(tokenizer))
        if tokenizer is None:
            return []
    want = len(tokenizer)
    have = embedding_rows(model)
    if want <= have:
        return []
    out_before = model.get_output_embeddings()
    tied = out_before is not None and out_before.weight is model.get_input_embeddings().weight
    model.resize_token_embeddings(want, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[have:] = emb[:have].float().mean(0).to(emb.dtype)
        out = model.get_output_embeddings()
        if out is not None and not tied and out.weight is not emb and out.weight.shape[0] == want:
            out.weight[have:] = out.weight[:have].float().mean(0).to(out.weight.dtype)
            if getattr(out, "bias", None) is not None:
                out.bias[have:] = out.bias[:have].float().mean()
    return list(range(have, want))


@functools.lru_cache(maxsize=8)
def _tokenizer_len(folder: str) -> int | None:
    tok = _load_tokenizer(folder)
    return None if tok is None else len(tok)


def _load_tokenizer(folder: str):
    p = Path(folder)
    if not (p / "tokenizer_config.json").is_file() and not (p / "tokenizer.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def trainable_token_indices(model, token_ids: list[int]) -> dict[str, list[int]] | None:
    """peft's LoraConfig.trainable_token_indices for these rows: the input embedding, plus the output layer
    when it is not tied to it (a tied one follows through peft's tied adapter)."""
    if not token_ids:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    emb_name = names[id(model.get_input_embeddings())].split(".")[-1]
    out = {emb_name: list(token_ids)}
    head = model.get_output_embeddings()
    if head is not None and not is_tied(model):
        out[names[id(head)].split(".")[-1]] = list(token_ids)
    return out


def prepare_token_training(peft_model) -> None:
    """After get_peft_model with trainable tokens: (1) the output layer's wrapper answers `.bias` (TRL 1.16's
    fused LM head reads `lm_head.weight` and `lm_head.bias`; peft 0.21's TrainableTokensWrapper passes on only
    `weight`, its merged weight, so `.bias` raised); (2) saves stay small (keep_adapter_small)."""
    head = peft_model.get_output_embeddings()
    if head is not None and type(head).__name__ == "TrainableTokensWrapper" and "bias" not in vars(head):
        object.__setattr__(head, "bias", getattr(head.original_module, "bias", None))
    keep_adapter_small(peft_model)


def keep_adapter_small(peft_model) -> None:
    """Every save of this peft model (final adapter and checkpoints) leaves out the full embedding layers
    (see the module docstring): the trained rows are in the adapter as trainable tokens."""
    save = peft_model.save_pretrained

    @functools.wraps(save)
    def save_pretrained(*args, **kwargs):
        kwargs.setdefault("save_embedding_layers", False)
        return save(*args, **kwargs)

    peft_model.save_pretrained = save_pretrained
