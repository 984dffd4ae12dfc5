"""Preference tuning inside the trainer process: TRL's DPOTrainer, ORPOTrainer (trl.experimental) and KTOTrainer.

The same run folder, events, stop/resume, NaN and divergence watch and final save as SFT
(`trainer.finish_training`); only the trainer and the data differ. Choices, and why:
- The reference (DPO, KTO). LoRA/QLoRA: the model goes to TRL unwrapped with the adapter as
  `peft_config` and `ref_model=None`, so TRL computes the reference with the adapter switched off:
  the base itself, no second copy. (A model wrapped beforehand would make TRL add a "ref" adapter,
  which would also be saved into adapter/.) Full fine-tuning: TRL loads a frozen copy of the starting
  weights in the model's dtype, unless `preference.reference: precomputed` (log-probs computed once
  before training; no copy held). ORPO has no reference: it gets the model wrapped as SFT does.
- Data comes from `ftwizard.data.preference.load_preference_file` as conversations (lists of
  messages); TRL renders them with the model's own chat template. KTO also takes pairs, unpaired
  into one desirable and one undesirable row each.
- Truncation: `data.max_length` is TRL's max_length (prompt + answer, keep the start).
- Padding-free and packing are off: DPO in TRL 1.16 falls back to padding anyway, and a
  preference loss scores each answer as a whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftwizard.config import RunConfig
from ftwizard.errors import UserError
from ftwizard.rundir import EventWriter, RunDir

NEEDS = {"dpo": "pairs", "orpo": "pairs", "kto": "unpaired"}


def load_rows(path: Path, cfg: RunConfig) -> tuple[str, list[dict[str, Any]]]:
    """(kind, rows) of a preference file, through the one loader (ftwizard.data.preference)."""
    from ftwizard.data.preference import load_preference_file

    return load_preference_file(path, fmt=cfg.data.format, system_prompt=cfg.data.system_prompt)


def unpair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs as KTO rows: each pair's chosen answer desirable, its rejected one undesirable.

    TRL estimates KTO's KL term by pairing each row's prompt with the previous row's completion in the batch, so
    two neighbours must not share a prompt. TRL's own unpair puts all chosen rows before all rejected ones (batches
    of one label); here chosen i is followed by rejected i + n/2, which mixes the labels in every batch and still
    never puts one prompt's two answers side by side (n >= 4; smaller sets use TRL's order)."""
    def good(r):
        return {"prompt": r["prompt"], "completion": r["chosen"], "label": True}

    def bad(r):
        return {"prompt": r["prompt"], "completion": r["rejected"], "label": False}

    n = len(rows)
    if n < 4:
        return [good(r) for r in rows] + [bad(r) for r in rows]
    half = n // 2
    out = []
    for i in range(n):
        out.append(good(rows[i]))
        out.append(bad(rows[(i + half) % n]))
    return out


def rows_for(objective: str, path: Path, cfg: RunConfig, field: str) -> list[dict[str, Any]]:
    """The rows TRL's trainer for `objective` takes, or a clear refusal when the file holds the other kind."""
    kind, rows = load_rows(path, cfg)
    if objective == "kto":
        rows = unpair(rows) if kind == "pairs" else rows
    elif kind != "pairs":
        raise UserError(f"{Path(path).name} holds single answers labelled good or bad (prompt/completion/label), but "
                        f"{objective.upper()} learns from pairs (prompt/chosen/rejected)", where=field,
                        fix="set training.objective: kto for labelled answers, or give a file of chosen/rejected pairs")
    if not rows:
        raise UserError(f"{path} has no preference rows", where=field, fix="check the file (`ftwizard lint`)")
    return rows


def build_args(cfg: RunConfig, run: RunDir, prec, has_eval: bool, dist: dict | None):
    """DPOConfig / ORPOConfig / KTOConfig: the shared TrainingArguments plus the objective's own fields."""
    from ftwizard.training.trainer import common_training_args

    objective, p = cfg.training.objective, cfg.preference
    common = common_training_args(cfg, run, prec, has_eval, dist)
    common.update(max_length=cfg.data.max_length, remove_unused_columns=False)
    if objective in ("dpo", "kto") and cfg.model.method == "full" and p.reference == "auto" and prec.name != "fp32":
        # TRL builds the frozen reference copy with these (else in the policy's dtype: fp32 master weights);
        # a reference needs no fp32 masters, so it is held in the compute dtype (half the memory)
        common["model_init_kwargs"] = {"dtype": "bfloat16" if prec.bf16 else "float16"}
    if objective == "dpo":
        from trl import DPOConfig

        return DPOConfig(**common, beta=p.beta, loss_type=[p.loss_type], label_smoothing=p.label_smoothing,
                         precompute_ref_log_probs=p.reference == "precomputed")
    if objective == "kto":
        from trl import KTOConfig

        return KTOConfig(**common, beta=p.beta, desirable_weight=p.desirable_weight,
                         undesirable_weight=p.undesirable_weight, precompute_ref_log_probs=p.reference == "precomputed")
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig(**common, beta=p.beta)


def _quiet_experimental() -> None:
    """TRL warns on import of trl.experimental (an API that may change); the run log needs it once, not a traceback."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def train_preference(run: RunDir, cfg: RunConfig, writer: EventWriter, stop_flag: dict, resume_from: Path | None,
                     log=print, strategy: str | None = None) -> str:
    """Train DPO, ORPO or KTO; returns the final state (completed, stopped). Raises on failure."""
    from datasets import Dataset
    from transformers import set_seed

    from ftwizard.models.resolve import resolve_base
    from ftwizard.training.callbacks import RunEvents
    from ftwizard.training.trainer import (block_classes, choose_precision, distributed_kwargs, finish_training,
                                           load_model_and_tokenizer, lora_config, speedups_for)

    objective, method = cfg.training.objective, cfg.model.method
    if objective == "kto" and cfg.training.batch_size < 2:
        raise UserError("KTO needs a micro-batch of at least 2: its KL term compares each answer with another "
                        "prompt's in the same batch", where="training.batch_size", fix="set training.batch_size: 2 or more")
    prec = choose_precision(cfg)
    set_seed(cfg.training.seed)  # before the model: LoRA's A matrices are drawn at creation
    base_path = resolve_base(cfg.model.base, log=log)
    writer.write("system", event="loading_model", base=cfg.model.base, path=base_path, method=method,
                 device=prec.device, precision=prec.name, objective=objective)
    dist = distributed_kwargs(strategy, block_classes(cfg, base_path) if strategy == "fsdp" else [])
    if strategy == "fsdp":
        if prec.device != "cuda":
            raise UserError("FSDP needs GPUs: accelerate shards a model only across GPUs", where="--strategy",
                            fix="on the CPU use --strategy ddp")
        os.environ["ACCELERATE_USE_FSDP"] = "true"
    has_eval = cfg.data.eval is not None
    args = build_args(cfg, run, prec, has_eval, dist)
    if strategy:
        _ = args.device  # joins the process group before the weights load
    speed = speedups_for(cfg, base_path, prec)
    if prec.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    # ORPO has no reference: the model is wrapped here exactly as for SFT. DPO/KTO get the adapter as peft_config,
    # so TRL's reference is the base with the adapter off (no copy, and no "ref" adapter in the saved folder).
    lora = method in ("lora", "qlora")
    wrap_here = objective == "orpo"
    model, tok = load_model_and_tokenizer(cfg, base_path, prec, strategy, speedups=speed, wrap_peft=wrap_here)
    writer.write("system", event="speedups", padding_free=False, liger=speed.liger, attention=speed.attention,
                 used=[u for u in speed.used if not u.startswith("padding-free")],
                 not_used=speed.not_used + ["padding-free: preference trainers pad each batch"])
    train_rows = rows_for(objective, cfg.data.train, cfg, "data.train")
    eval_rows = rows_for(objective, cfg.data.eval, cfg, "data.eval") if has_eval else None
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    if (eval_ds is not None) != has_eval:
        args = build_args(cfg, run, prec, eval_ds is not None, dist)

    callback = RunEvents(run, writer, stop_flag, cfg)
    kw: dict[str, Any] = dict(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                              processing_class=tok, callbacks=[callback])
    if objective == "dpo":
        from trl import DPOTrainer as Trainer
    elif objective == "kto":
        from trl import KTOTrainer as Trainer
    else:
        _quiet_experimental()
        from trl.experimental.orpo import ORPOTrainer as Trainer
    if objective in ("dpo", "kto"):
        kw["ref_model"] = None
        if lora:
            kw["peft_config"] = lora_config(cfg, model)  # + the template's added-token rows (data.chat_template)
    trainer = Trainer(**kw)
    if lora and objective in ("dpo", "kto") and getattr(model, "ftwizard_token_ids", None):  # ORPO: done at load
        from ftwizard.models.vocab import prepare_token_training

        prepare_token_training(trainer.model)  # only those rows saved, and TRL's fused head works with them
    if lora and objective in ("dpo", "kto") and method == "qlora":
        _adapters_to_compute_dtype(trainer.model, prec)
    m = trainer.model
    if hasattr(m, "get_nb_trainable_parameters"):
        trainable, total = m.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in m.parameters())
        trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    writer.write("system", event="data", objective=objective, train_rows=len(train_rows),
                 eval_rows=len(eval_rows or []), train_tokens=_token_count(trainer.train_dataset), dropped_rows=0, trainable_params=trainable, total_params=total,
                 reference=_reference_kind(objective, method, cfg.preference.reference))
    if strategy is not None:
        engine = trainer.accelerator.state
        writer.write("system", event="engine", distributed_type=str(engine.distributed_type).split(".")[-1],
                     world_size=engine.num_processes, backend=getattr(engine, "backend", None))
    return finish_training(trainer, run, cfg, writer, stop_flag, callback, prec, resume_from, eval_ds is not None, tok)


def _token_count(ds) -> int:
    """Tokens in the tokenised training set (every *_ids column: prompt, chosen and rejected, or completion)."""
    try:
        return sum(sum(len(x) for x in ds[col]) for col in ds.column_names if col.endswith("ids"))
    except Exception:  # noqa: BLE001 - a count for the log, never a failure
        return 0


def _reference_kind(objective: str, method: str, reference: str) -> str:
    """What the run compares against, in words for the events (the monitor and summary show it)."""
    if objective == "orpo":
        return "none (ORPO)"
    if reference == "precomputed":
        return "precomputed log-probs"
    return "base with the adapter off" if method in ("lora", "qlora") else "frozen copy"


def _adapters_to_compute_dtype(model, prec) -> None:
    """TRL casts QLoRA adapters to bf16 (the QLoRA paper's recipe on a GPU). On the CPU, where this run computes in
    fp32, bf16 adapters only lose precision and slow every step: keep them in the compute dtype there."""
    import torch

    if prec.device != "cpu":
        return
    for name, param in model.named_parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.to(torch.float32)
