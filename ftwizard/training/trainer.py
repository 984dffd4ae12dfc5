"""Build and run TRL's SFTTrainer from a RunConfig, inside the trainer process.

Heavy by nature (torch, transformers, peft, trl): only the trainer process imports it.
Choices, and why:
- GPU precision `auto`: bf16 where the GPU supports it, else fp16; CPU trains in fp32.
- full: weights in fp32 with autocast (mixed precision keeps fp32 masters; pure bf16
  weights lose small updates). LoRA: frozen base in the compute dtype, adapters fp32.
  QLoRA: NF4 with double quantisation, compute in the compute dtype (fp32 on CPU).
- The data is tokenised by `dataset.encode_file` (assistant-only masks from the model's
  own chat template), so TRL receives `input_ids` + `assistant_masks`, truncated here.
- QLoRA keeps the non-4-bit weights (embeddings, norms, output layer) in the compute
  dtype. peft's `prepare_model_for_kbit_training` would upcast them to fp32, which on an
  8B model costs ~2 GB of weights and makes the residual stream and MLP activations fp32;
  recent TRL skips it too (bench/qlora_upcast.py: same loss curve, less memory).
- Padding-free batches, Liger kernels and FlashAttention when correct and available
  (speedups.choose_speedups says which, and why not).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftwizard.config import RunConfig
from ftwizard.errors import UserError
from ftwizard.rundir import EventWriter, RunDir


@dataclass
class Precision:
    device: str        # "cuda" or "cpu"
    bf16: bool
    fp16: bool

    @property
    def compute_dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else torch.float32

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def choose_precision(cfg: RunConfig) -> Precision:
    import torch

    want, dev = cfg.training.precision, cfg.training.device
    cuda = torch.cuda.is_available() and dev != "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        raise UserError("training.device is cuda but no CUDA GPU is visible", where="training.device",
                        fix="set training.device: auto (or cpu), or check `ftwizard gpus`")
    if not cuda:
        if want in ("bf16", "fp16"):
            raise UserError(f"precision {want} needs a GPU; this run is on the CPU", where="training.precision",
                            fix="set training.precision: auto (fp32 on CPU)")
        return Precision("cpu", False, False)
    bf16_ok = torch.cuda.is_bf16_supported()
    if want == "bf16" and not bf16_ok:
        raise UserError("this GPU cannot do bf16 (compute capability below 8.0)", where="training.precision",
                        fix="set training.precision: fp16 (or auto)")
    if want == "auto":
        return Precision("cuda", bf16_ok, not bf16_ok)
    return Precision("cuda", want == "bf16", want == "fp16")


def speedups_for(cfg: RunConfig, base_path: str, prec: Precision):
    """The speed-ups this run uses (env FTWIZARD_NO_LIGER / FTWIZARD_NO_FLASH_ATTN turn one off, for benchmarks)."""
    import json

    from ftwizard.training.speedups import choose_speedups

    cap = None
    if prec.device == "cuda":
        import torch

        cap = torch.cuda.get_device_capability(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        model_type = json.loads((Path(base_path) / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        model_type = ""
    return choose_speedups(
        device=prec.device, precision=prec.name, model_type=model_type, batch_size=cfg.training.batch_size,
        padding_free=getattr(cfg.data, "padding_free", True), packing=cfg.data.packing,
        use_liger=not os.environ.get("FTWIZARD_NO_LIGER"), use_flash_attention=not os.environ.get("FTWIZARD_NO_FLASH_ATTN"),
        cuda_capability=cap, trust_remote_code=cfg.model.trust_remote_code)


def apply_liger(model) -> None:
    """Liger's RMSNorm, SwiGLU and RoPE kernels on the loaded (not yet peft-wrapped) model.
    Not its fused linear cross-entropy: TRL's own chunked LM head computes the loss."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True,
                                    cross_entropy=False, fused_linear_cross_entropy=False)


def load_model_and_tokenizer(cfg: RunConfig, base_path: str, prec: Precision, strategy: str | None = None,
                             *, speedups=None, upcast_kbit: bool = False, wrap_peft: bool = True):
    """The model as the trainer trains it. `upcast_kbit` restores peft's fp32 upcast for QLoRA
    (only bench/qlora_upcast.py uses it, to compare). `wrap_peft=False` leaves a LoRA/QLoRA model unwrapped
    (base frozen, ready): the preference trainers add the adapter themselves from `lora_config`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path, trust_remote_code=cfg.model.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # The chat template (data.chat_template; ChatML for a base without one): may add special tokens whose
    # embedding rows are created below and train (ftwizard.data.chat_templates, ftwizard.models.vocab)
    from ftwizard.data.chat_templates import apply_template, needs_template

    template = apply_template(tok, cfg.data.chat_template, needed=needs_template(cfg.data.train, cfg.data.format))
    tok.ftwizard_template = template
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    method = cfg.model.method
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=prec.compute_dtype, bnb_4bit_quant_storage=prec.compute_dtype,
        )
        kwargs["dtype"] = prec.compute_dtype
    elif method == "lora":
        kwargs["dtype"] = prec.compute_dtype
    else:
        kwargs["dtype"] = torch.float32
    if prec.device == "cuda" and strategy != "fsdp":  # FSDP places (and shards) the weights itself
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    if speedups is not None and speedups.attention != "sdpa":
        kwargs["attn_implementation"] = speedups.attention
    model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    if speedups is not None and speedups.liger:
        apply_liger(model)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.ftwizard_token_ids = []  # rows that train as trainable tokens under LoRA (lora_config reads them)
    if template.trained_tokens:
        from ftwizard.models.vocab import fit_embeddings

        fit_embeddings(model, tok)  # new rows = the mean row; every loader of the run rebuilds them the same way
        model.ftwizard_token_ids = template.token_ids(tok)
        if model.generation_config is not None:
            model.generation_config.eos_token_id = tok.eos_token_id  # a full run's saved model stops at end of turn
    if method in ("lora", "qlora"):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if method == "qlora" and upcast_kbit:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.training.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif method == "qlora":
            # What prepare_model_for_kbit_training does, minus the fp32 upcast: freeze the base
            # (get_peft_model does too) and let checkpointed layers see an input that needs grad.
            for param in model.parameters():
                param.requires_grad_(False)
            if cfg.training.gradient_checkpointing:
                model.enable_input_require_grads()
        if wrap_peft:
            model = get_peft_model(model, lora_config(cfg, model))
            if model.get_base_model().ftwizard_token_ids:
                from ftwizard.models.vocab import prepare_token_training

                prepare_token_training(model)
    return model, tok


def distributed_kwargs(strategy: str | None, layer_classes: list[str]) -> dict[str, Any]:
    """TrainingArguments for a torchrun launch: process-group timeout, and FSDP2 when asked.

    FSDP: full shard (reshard after forward), the decoder block as the wrap unit, weights
    read on the first process only (cpu_ram_efficient_loading), sharded checkpoints
    (each rank saves its shard; resume loads them)."""
    if strategy is None:
        return {}
    out: dict[str, Any] = {"ddp_timeout": int(os.environ.get("FTWIZARD_DIST_TIMEOUT", "900")),
                           "ddp_find_unused_parameters": False}
    if strategy == "fsdp":
        out["fsdp"] = True
        out["fsdp_config"] = {
            "version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layer_classes, "cpu_ram_efficient_loading": True,
            "state_dict_type": "SHARDED_STATE_DICT",
        }
    return out


def block_classes(cfg: RunConfig, base_path: str) -> list[str]:
    """The transformer block class names of a model (FSDP's wrap unit), from its config alone."""
    from transformers import AutoConfig, AutoModelForCausalLM

    mcfg = AutoConfig.from_pretrained(base_path, trust_remote_code=cfg.model.trust_remote_code)
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(mcfg, trust_remote_code=cfg.model.trust_remote_code)
    names = list(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise UserError(f"cannot tell the transformer block of {cfg.model.base} for FSDP wrapping",
                        where="--strategy", fix="use --strategy ddp for this model")
    return names


def common_training_args(cfg: RunConfig, run: RunDir, prec: Precision, has_eval: bool,
                         dist: dict | None = None) -> dict[str, Any]:
    """The TrainingArguments every objective shares (SFTConfig, DPOConfig, ORPOConfig and KTOConfig extend them):
    schedule, batch, precision, logging, eval and checkpoints, trackers."""
    from ftwizard.tracking import setup_for_trainer

    t = cfg.training
    eval_every = t.eval_every if has_eval else 0
    return dict(
        **(dist or {}),
        output_dir=str(run.checkpoints),
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        bf16=prec.bf16,
        fp16=prec.fp16,
        use_cpu=prec.device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        logging_strategy="steps",
        logging_steps=t.log_every,
        logging_nan_inf_filter=False,  # a NaN must reach our watchdog, not be averaged away
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        save_strategy="steps" if t.save_every else "no",
        save_steps=t.save_every or 500,
        save_total_limit=t.save_total_limit,
        **setup_for_trainer(cfg, run.path, run.name),  # trackers: report_to & co; "none" when none (h15)
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def build_sft_config(cfg: RunConfig, run: RunDir, prec: Precision, has_eval: bool, dist: dict | None = None,
                     padding_free: bool = False):
    from trl import SFTConfig

    return SFTConfig(
        **common_training_args(cfg, run, prec, has_eval, dist),
        # rows arrive truncated (dataset.truncate_rows); TRL needs max_length only to pack
        max_length=cfg.data.max_length if cfg.data.packing else None,
        packing=cfg.data.packing,
        padding_free=padding_free,
        assistant_only_loss=False,  # our own masks (assistant_masks column) already do this
        remove_unused_columns=True,
    )


def lora_config(cfg: RunConfig, model=None):
    """The adapter every LoRA/QLoRA run trains (SFT wraps the model itself; the preference trainers get it as
    peft_config, so TRL uses the base with the adapter switched off as the reference). Given the loaded `model`,
    the chat template's token rows train too (peft trainable tokens: those rows only; a tied output layer
    follows them)."""
    from peft import LoraConfig

    from ftwizard.models.vocab import trainable_token_indices

    lcfg = cfg.lora
    ids = getattr(model, "ftwizard_token_ids", None) if model is not None else None
    return LoraConfig(r=lcfg.r, lora_alpha=lcfg.alpha, lora_dropout=lcfg.dropout, target_modules=lcfg.target_modules,
                      bias="none", task_type="CAUSAL_LM",
                      trainable_token_indices=trainable_token_indices(model, ids) if ids else None)


def finish_training(trainer, run: RunDir, cfg: RunConfig, writer: EventWriter, stop_flag: dict, callback, prec,
                    resume_from: Path | None, has_eval: bool, tok) -> str:
    """Train (resuming when asked), then turn how it ended into a state: NaN raises NonFiniteLoss, a stop
    leaves the checkpoint, a completed run saves adapter/ or model/ with the tokenizer. Every objective ends here."""
    if resume_from is not None:
        writer.write("system", event="resumed", from_checkpoint=str(resume_from),
                     step=int(resume_from.name.split("-")[-1]))
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    step = trainer.state.global_step
    if prec.device == "cuda":  # the peak as PyTorch saw it (bench/gpu_kit.py compares it with the estimate)
        import torch

        writer.write("system", event="memory_peak", max_memory_allocated=int(torch.cuda.max_memory_allocated()),
                     max_memory_reserved=int(torch.cuda.max_memory_reserved()), step=step)
    if callback.nan_step is not None:
        raise NonFiniteLoss(callback.nan_step, cfg.training.learning_rate, prec.name)
    if stop_flag.get("requested"):
        run.write_status(step=step)
        return "stopped"
    if has_eval and not cfg.training.eval_every:
        trainer.evaluate()  # eval only at the end; with eval_every the Trainer already ends on one
    out = run.adapter if cfg.model.method in ("lora", "qlora") else run.model
    if trainer.is_fsdp_enabled:  # the result is one ordinary file set, gathered from the shards
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(out))
    writer.write("system", event="saved", path=str(out), step=step)
    run.write_status(step=step, output=str(out))
    return "completed"


def train(run: RunDir, cfg: RunConfig, writer: EventWriter, stop_flag: dict, resume_from: Path | None, log=print,
          strategy: str | None = None) -> str:
    """Train; returns the final state (completed, stopped). Raises on failure.

    `strategy` (ddp or fsdp) means this process is one rank of a torchrun launch. A preference objective
    (training.objective dpo, orpo, kto) trains through ftwizard.training.preference instead."""
    if cfg.training.objective != "sft":
        from ftwizard.training.preference import train_preference

        return train_preference(run, cfg, writer, stop_flag, resume_from, log=log, strategy=strategy)
    from datasets import Dataset

    from ftwizard.models.resolve import resolve_base
    from ftwizard.training.callbacks import RunEvents
    from ftwizard.training.dataset import encode_file, truncate_rows

    from transformers import set_seed

    prec = choose_precision(cfg)
    set_seed(cfg.training.seed)  # before the model: LoRA's A matrices are drawn at creation
    base_path = resolve_base(cfg.model.base, log=log)
    writer.write("system", event="loading_model", base=cfg.model.base, path=base_path, method=cfg.model.method,
                 device=prec.device, precision=prec.name)
    dist = distributed_kwargs(strategy, block_classes(cfg, base_path) if strategy == "fsdp" else [])
    if strategy == "fsdp":
        if prec.device != "cuda":
            raise UserError("FSDP needs GPUs: accelerate shards a model only across GPUs", where="--strategy",
                            fix="on the CPU use --strategy ddp")
        os.environ["ACCELERATE_USE_FSDP"] = "true"  # with the process group up, from_pretrained loads on rank 0 only
    sft_args = build_sft_config(cfg, run, prec, cfg.data.eval is not None, dist) if strategy else None
    if sft_args is not None:
        _ = sft_args.device  # joins the process group (gloo on CPU, NCCL on GPU) before the weights load
    speed = speedups_for(cfg, base_path, prec)
    if prec.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    model, tok = load_model_and_tokenizer(cfg, base_path, prec, strategy, speedups=speed)
    padding_free = speed.padding_free
    if padding_free:
        from ftwizard.training.speedups import model_builds_packed_masks

        if not model_builds_packed_masks(model):
            padding_free = False
            speed.not_used.append("padding-free: this model's code does not build block-diagonal masks")
            speed.used.remove(next(u for u in speed.used if u.startswith("padding-free")))
    writer.write("system", event="speedups", padding_free=padding_free, liger=speed.liger,
                 attention=speed.attention, used=speed.used, not_used=speed.not_used)
    write_template_event(writer, tok)
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    enc = dict(tokenizer=tok, fmt=cfg.data.format, system_prompt=cfg.data.system_prompt,
               assistant_only=cfg.data.assistant_only_loss)
    limit = None if cfg.data.packing else cfg.data.max_length
    train_rows, dropped = truncate_rows(encode_file(cfg.data.train, **enc), limit)
    eval_rows = truncate_rows(encode_file(cfg.data.eval, **enc), limit)[0] if cfg.data.eval else None
    if not train_rows:
        raise UserError(f"no row of {cfg.data.train} has an assistant token within max_length {cfg.data.max_length}",
                        where="data.max_length", fix="raise data.max_length (see `ftwizard data stats`)")
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    writer.write("system", event="data", train_rows=len(train_rows), eval_rows=len(eval_rows or []),
                 train_tokens=sum(len(r["input_ids"]) for r in train_rows), dropped_rows=dropped,
                 trainable_params=trainable, total_params=total)

    from trl import SFTTrainer

    callback = RunEvents(run, writer, stop_flag)
    if sft_args is None or (eval_ds is not None) != (cfg.data.eval is not None) or padding_free:
        sft_args = build_sft_config(cfg, run, prec, eval_ds is not None, dist, padding_free=padding_free)
    trainer = SFTTrainer(
        model=model, args=sft_args,
        train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok, callbacks=[callback],
    )
    if strategy is not None:
        engine = trainer.accelerator.state
        writer.write("system", event="engine", distributed_type=str(engine.distributed_type).split(".")[-1],
                     world_size=engine.num_processes, backend=getattr(engine, "backend", None),
                     fsdp_version=getattr(engine.fsdp_plugin, "fsdp_version", None) if trainer.is_fsdp_enabled else None)
        if strategy == "fsdp" and not trainer.is_fsdp_enabled:
            raise UserError("FSDP was asked for but accelerate did not enable it on this device", where="--strategy",
                            fix="use --strategy ddp")
    return finish_training(trainer, run, cfg, writer, stop_flag, callback, prec, resume_from, eval_ds is not None,
                           tok)


def write_template_event(writer: EventWriter, tok) -> None:
    """The chat template a run uses when it is not the model's own (data.chat_template), for the log and monitor."""
    template = getattr(tok, "ftwizard_template", None)
    if template is not None and template.changed:
        writer.write("system", event="chat_template", template=template.source, added_tokens=template.added_tokens,
                     trained_tokens=template.trained_tokens, end_of_turn=template.end_of_turn,
                     description=template.describe())


class NonFiniteLoss(Exception):
    def __init__(self, step: int, lr: float, precision: str):
        hint = (f"lower training.learning_rate (now {lr:g}) by 2-10x; check the data for empty or huge rows "
                f"(`ftwizard lint`)")
        if precision == "fp16":
            hint += "; fp16 overflows easily: use bf16 on a GPU that has it"
        super().__init__(f"the loss became NaN or infinite at step {step}; {hint}")
        self.step = step
