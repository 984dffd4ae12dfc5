"""Padding-free batches: the same per-example losses as padded batches, and the assistant-only
mask intact, on the embedded model with TRL's own collator and SFTTrainer data path."""

from __future__ import annotations

import pytest

ROWS = [
    [{"role": "user", "content": "What colour is the sky on a clear summer day?"},
     {"role": "assistant", "content": "blue"}],
    [{"role": "system", "content": "Answer in one word."},
     {"role": "user", "content": "Grass?"}, {"role": "assistant", "content": "green"}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "red, like blood"},
     {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "yellow"}],
]


@pytest.fixture(scope="module")
def encoded(embedded_tokenizer):
    from ftwizard.training.dataset import encode_conversation

    out = []
    for msgs in ROWS:
        e = encode_conversation(embedded_tokenizer, msgs, assistant_only=True)
        labels = [t if m else -100 for t, m in zip(e["input_ids"], e["assistant_masks"])]
        out.append({"input_ids": e["input_ids"], "labels": labels, "mask": e["assistant_masks"]})
    assert len({len(r["input_ids"]) for r in out}) == len(out), "rows must differ in length, so padding happens"
    return out


def _per_example_losses(model, batch, lengths, padding_free):
    """Summed next-token loss of each example, from one forward of the whole batch."""
    import torch

    with torch.no_grad():
        kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        logits = model(**kw, use_cache=False).logits.float()
    logp = torch.log_softmax(logits, -1)
    out = []
    for i, n in enumerate(lengths):
        if padding_free:
            start = sum(lengths[:i])
            lg, lab = logp[0, start:start + n], batch["labels"][0, start:start + n]
        else:
            lg, lab = logp[i, :n], batch["labels"][i, :n]
        tgt = lab[1:]
        keep = tgt != -100
        out.append(-lg[:-1][keep].gather(-1, tgt[keep][:, None]).sum().item())
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_losses_equal_padded(embedded_model_dir, encoded, attn):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(str(embedded_model_dir), dtype=torch.float32,
                                                 attn_implementation=attn).eval()
    examples = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in encoded]
    lengths = [len(r["input_ids"]) for r in encoded]
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    free = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert "attention_mask" not in free and free["input_ids"].shape == (1, sum(lengths))
    a = _per_example_losses(model, padded, lengths, False)
    b = _per_example_losses(model, free, lengths, True)
    assert a == pytest.approx(b, rel=1e-5, abs=1e-4)

    # Without the restarting position ids the rows would attend across each other: the
    # check above would then fail, so it is not vacuous.
    leaky = dict(free)
    leaky["position_ids"] = torch.arange(sum(lengths))[None]
    c = _per_example_losses(model, leaky, lengths, True)
    assert c[0] == pytest.approx(a[0], rel=1e-5)  # the first example sees nothing before it
    assert abs(c[1] - a[1]) > 1e-2 and abs(c[2] - a[2]) > 1e-2


def test_assistant_mask_survives_padding_free(encoded):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in encoded]
    free = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    expect = []
    for r in encoded:
        lab = list(r["labels"])
        lab[0] = -100  # an example's first token is never a target (no prediction crosses rows)
        expect += lab
    assert free["labels"][0].tolist() == expect
    trained = [t for r in encoded for t, m in zip(r["input_ids"], r["mask"]) if m]
    assert [t for t in free["labels"][0].tolist() if t != -100] == trained
    assert sum(trained) > 0


def test_trainer_builds_padding_free_batches_with_the_mask(tmp_path, embedded_model_dir, monkeypatch):
    """Through the real trainer set-up: SFTConfig, the model check, TRL's dataset preparation."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from ftwizard.config import load_config
    from ftwizard.rundir import RunDir
    from ftwizard.training import trainer as T
    from ftwizard.training.dataset import encode_file, truncate_rows
    from ftwizard.training.speedups import model_builds_packed_masks
    from tests.helpers import tiny_config

    cfg = load_config(tiny_config(tmp_path, "lora", batch_size=4))
    assert cfg.data.padding_free is True  # the default
    prec = T.Precision("cpu", False, False)
    speed = T.speedups_for(cfg, str(embedded_model_dir), prec)
    assert speed.padding_free and speed.attention == "sdpa" and not speed.liger
    model, tok = T.load_model_and_tokenizer(cfg, str(embedded_model_dir), prec, speedups=speed)
    assert model_builds_packed_masks(model)
    rows, dropped = truncate_rows(encode_file(cfg.data.train, tok), cfg.data.max_length)
    assert dropped == 0 and all(len(r["input_ids"]) <= cfg.data.max_length for r in rows)
    args = T.build_sft_config(cfg, RunDir(tmp_path / "runs" / "x"), prec, False, padding_free=True)
    tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(tr.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == 4  # four examples in one row
    # every trained label is an assistant token of its row, and each row keeps its answer
    bounds = starts + [batch["input_ids"].shape[1]]
    for s, e in zip(bounds, bounds[1:]):
        ids = batch["input_ids"][0, s:e].tolist()
        r = next(r for r in rows if r["input_ids"] == ids)
        want = [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"])]
        want[0] = -100
        assert batch["labels"][0, s:e].tolist() == want
    loss = tr.compute_loss(tr.model, {k: v for k, v in batch.items()})
    assert torch.isfinite(loss)


def test_truncation_keeps_start_and_drops_rows_without_targets():
    from ftwizard.training.dataset import truncate_rows

    rows = [{"input_ids": [1, 2, 3, 4, 5], "assistant_masks": [0, 0, 0, 1, 1]},
            {"input_ids": [1, 2, 3], "assistant_masks": [0, 1, 1]}]
    out, dropped = truncate_rows(rows, 3)
    assert dropped == 1 and out == [{"input_ids": [1, 2, 3], "assistant_masks": [0, 1, 1]}]
    assert truncate_rows(rows, None) == (rows, 0)
