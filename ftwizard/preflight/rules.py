"""The pre-flight rules: stable ids, default severity, threshold and where it comes from.

A rule id is part of the JSON report's contract (the wizard, `train` and scripts filter
on it), so rules may be added but never renamed. Every threshold names its source:
"guidance" is ../shared/GUIDANCE.md (with its section); "ftwizard" marks a margin we
chose around a guidance range (said so in the rule's threshold text); "trainer" is a
hard limit of the training engine itself; "estimate" is the memory/time estimator;
"literature" names the paper or course (in `section`).
`docs/preflight-rules.md` is this table in prose, and a test keeps the two in step.

Severities: an error means the run cannot work (it would crash, or cannot produce a
usable model) and `ftwizard train` refuses it without --force; a warning is a set-up
that usually wastes the run; info is context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str          # the default; a few rules escalate (said in `threshold`)
    title: str
    threshold: str         # the documented threshold, in words
    source: str            # guidance | ftwizard | trainer | estimate | lint | literature
    section: str | None    # the GUIDANCE.md section (or the module) the threshold comes from
    why: str               # why it matters, one sentence

    def to_dict(self) -> dict:
        return asdict(self)


_RULES = [
    # ---- can the run start at all -------------------------------------------------
    Rule("model.unavailable", ERROR, "base model not readable here",
         "the tokenizer and config.json must load from a local folder or the local hub cache",
         "trainer", "ftwizard.models.resolve",
         "ftwizard works offline: a model that is not on disk cannot be trained"),
    Rule("data.missing", ERROR, "data file missing or unreadable",
         "data.train (and data.eval when set) must be readable files",
         "trainer", "ftwizard.training.dataset", "the trainer stops at the first file it cannot read"),
    Rule("device.no_gpu", ERROR, "a GPU is required but there is none",
         "training.device: cuda needs a visible CUDA GPU", "trainer", "ftwizard.training.trainer",
         "the trainer refuses to start on a machine without the device it was told to use"),
    Rule("precision.needs_gpu", ERROR, "16-bit precision on a CPU run",
         "training.precision bf16/fp16 needs a GPU; CPU runs train in fp32", "trainer", "ftwizard.training.trainer",
         "the trainer refuses 16-bit mixed precision on the CPU"),
    Rule("precision.bf16_unsupported", ERROR, "bf16 on a GPU without bf16",
         "bf16 needs compute capability >= 8.0 (Ampere or newer); older GPUs use fp16", "trainer",
         "ftwizard.hardware.catalog", "the GPU has no bf16 arithmetic: the trainer refuses, or the run crawls in emulation"),
    Rule("tracking.missing", ERROR, "a chosen experiment tracker is not installed",
         "every name in training.report_to must have its package importable (tensorboard, wandb, mlflow, trackio)",
         "trainer", "ftwizard.tracking",
         "transformers builds the tracker callbacks at start and stops with an import error when one is missing"),
    Rule("tracking.no_login", WARNING, "an online tracker without a login",
         "tracking_mode online with wandb needs WANDB_API_KEY or `wandb login` on this machine", "trainer",
         "ftwizard.tracking", "W&B asks for a key at start, which a detached run cannot answer: the run stops there"),
    Rule("memory.does_not_fit", ERROR, "estimated peak memory above the device's",
         "estimated peak > the GPU's memory (or the machine's RAM on a CPU run)", "estimate",
         "ftwizard.hardware.estimate", "the run dies with out-of-memory at the first step or the first long batch"),
    Rule("budget.time", ERROR, "estimated time over the budget",
         "estimated training time > --budget-hours", "estimate", "ftwizard.hardware.throughput",
         "a run cut off by its budget leaves no usable final model"),
    Rule("budget.cost", ERROR, "estimated cost over the budget",
         "estimated cost > --budget-usd (GPU price per hour from the GPU table)", "estimate",
         "ftwizard.hardware.catalog", "the run would spend more than allowed"),
    # ---- data ------------------------------------------------------------------------
    Rule("lint.*", ERROR, "a data lint finding",
         "each data lint rule keeps its own severity (errors: rows the trainer cannot read; `ftwizard lint --rules`); "
         "lint warnings are summarised here as info", "lint", "ftwizard.data.rules",
         "a row the trainer cannot convert stops the run at that row, after the model has loaded"),
    Rule("data.eos", ERROR, "assistant turns do not end with a stop token",
         "every checked row's assistant turn must end with the tokenizer's end-of-turn / eos token "
         "(the first 32 rows, rendered with the model's chat template)", "guidance", "Data",
         "a model that never sees the stop token learns never to stop talking"),
    Rule("data.chat_markup", WARNING, "chat markup inside message text",
         "any row whose message text carries chat-template control markup ([INST], <|im_start|>, <|eot_id|>, "
         "<start_of_turn>, ### Instruction:, ...); an error when >= 50 % of rows do (the data was pre-rendered for "
         "another template)", "guidance", "Data",
         "the template adds its own markup: text that already carries it (often another family's) teaches the model "
         "to print control tags; guidance: formatting identical to what is sent at serving time"),
    Rule("data.truncation", WARNING, "max length truncates rows",
         "more than 5 % of rows longer than data.max_length (exact token counts) is a warning, any is info; an error "
         "when >= 50 % of rows are cut and the loss is on the assistant turn (the cut end)",
         "guidance", "Hyperparameters",
         "truncation cuts the end of a row, which is the answer the loss trains on; guidance: max length matched to the data"),
    Rule("data.too_few", WARNING, "too few examples for the task type",
         "usable training rows below the minimum for data.task_type: classification 50, extraction 100, style 200, "
         "domain 500, code 1,000; 200 when the task type is 'other'", "guidance", "Data",
         "fewer than the minimum rarely teaches the behaviour and mostly memorises"),
    Rule("data.duplicates", WARNING, "training rows that repeat earlier rows",
         "copies (exact, and near-duplicates of an earlier row) as a share of the usable training rows: under 10 % "
         "info; from 10 % a warning (Hernandez et al. 2022: repeating a subset that is 10 % of the training data "
         "degraded an 800M model to the level of one half its size); over 2/3 an error (each distinct row is then "
         "trained on more than 3 times per epoch; guidance: beyond 3 passes a model memorises)",
         "literature", "Hernandez et al. 2022, arXiv:2205.10487; guidance Data (deduplicated) and Hyperparameters",
         "copies weigh more than the rest of the data and are memorised; a set that is mostly copies teaches only "
         "its few distinct rows"),
    Rule("data.imbalance", WARNING, "a class label dominated by one class",
         "the most common class of a label (the whole answer, or a JSON field) as a share of its rows: over 80 % a "
         "warning (the other classes are a 'moderate' minority, 1-20 %), at 99 % or more with >= 100 rows an error "
         "('extreme' imbalance, minority < 1 %: Google ML Crash Course, Imbalanced datasets); below 80 % info when "
         "the rarest class is 10x rarer than the top (the data lint's threshold)",
         "literature", "Google ML Crash Course: Datasets, Imbalanced datasets; guidance Data (balanced classes)",
         "a model trained on labels that are almost all one class learns to answer that class whatever the input"),
    # ---- evaluation ----------------------------------------------------------------
    Rule("eval.missing", WARNING, "no eval set",
         "data.eval is not set", "guidance", "Data",
         "without held-out data, over-fitting is invisible (guidance: hold out 10-20 %, never trained on)"),
    Rule("eval.too_small", WARNING, "eval set too small",
         "fewer than 20 eval rows, or below 10 % of the data while under 500 rows (ftwizard: 20 rows is the least "
         "that gives a stable loss; guidance: 10-20 % held out)", "guidance", "Data",
         "a tiny eval set gives a noisy loss that cannot show over-fitting"),
    Rule("eval.overlap", WARNING, "eval set overlaps training",
         "any eval row that is an exact copy of a training row, or shares >= 50 % of its 8-word sequences with "
         "training rows (the data lint's decontamination)", "guidance", "Data",
         "a leaked eval set overstates quality (guidance: no eval/train leakage)"),
    # ---- hyperparameters -------------------------------------------------------------
    Rule("lr.range", WARNING, "learning rate outside the usual range",
         "LoRA/QLoRA: above 5e-4, below 1e-5, or above 2e-4 on a model of 7B+ parameters; full: above 1e-4 "
         "(ftwizard: 5x the guidance's ~2e-5) or below 1e-6; between the range and these limits: info",
         "guidance", "Hyperparameters",
         "too high diverges or wrecks the base model; too low learns nothing in the steps given"),
    Rule("epochs.too_many", WARNING, "too many passes over the data",
         "more than 3 passes over the training rows (epochs, or max_steps x effective batch / rows)",
         "guidance", "Hyperparameters", "beyond 3 epochs a model usually memorises its training rows (more data, fewer epochs)"),
    Rule("warmup.none", WARNING, "no learning-rate warmup",
         "training.warmup_ratio == 0 (guidance: 3-10 % of steps)", "guidance", "Hyperparameters",
         "the first full-size updates hit random adapters / fresh optimizer state and can destabilise training"),
    Rule("warmup.too_long", WARNING, "warmup too long",
         "training.warmup_ratio > 0.20 (guidance: 3-10 %; ftwizard warns from twice the top)", "guidance",
         "Hyperparameters", "a long warmup spends much of the run below the chosen learning rate"),
    Rule("batch.effective", WARNING, "effective batch far from the usual",
         "batch_size x gradient_accumulation below 8 or above 128 (ftwizard: half / twice the guidance's 16-64)",
         "guidance", "Hyperparameters", "tiny batches give noisy updates; huge ones leave few optimizer steps"),
    Rule("steps.too_few", WARNING, "too few optimizer steps",
         "fewer than 10 optimizer steps in the whole run (when max_steps is not set on purpose)", "ftwizard",
         "Hyperparameters", "warmup and cosine decay need steps to act; a handful of updates barely moves the model"),
    Rule("lora.rank", WARNING, "LoRA rank unusual for the data size",
         "r < 4, r > 128, or r > 64 with fewer than 1,000 training rows (guidance: rank 4-64, 8-16 to start, 32-128 "
         "for rich instruction tasks)", "guidance", "Methods",
         "too low cannot express the change; a large rank on little data only adds capacity to memorise"),
    Rule("lora.alpha", WARNING, "LoRA alpha unusual for the rank",
         "alpha / r above 4 or below 0.25 (guidance: alpha usually 2 x r, some use r or lower)", "guidance", "Methods",
         "alpha / r scales every adapter update: far off, it acts like a much higher or lower learning rate"),
    Rule("clip.max_grad_norm", WARNING, "gradient clipping effectively off",
         "training.max_grad_norm above 10 (guidance: ~0.3-1.0)", "guidance", "Hyperparameters",
         "without clipping one bad batch can blow up the weights"),
    # ---- preference objectives (DPO, ORPO, KTO; ranges in ftwizard.preference_guidance) ----------------------
    Rule("pref.data", ERROR, "a preference objective on data that is not preference data",
         "training.objective dpo/orpo needs prompt/chosen/rejected rows; kto needs prompt/completion/label rows or "
         "pairs (the format of the lint, or of the first row)", "trainer", "ftwizard.training.preference",
         "the preference trainers cannot read SFT rows: the run stops after loading the model"),
    Rule("pref.lr", WARNING, "learning rate far from the objective's usual range",
         "above 3x the top of the objective's typical range a warning, at 20x or more an error; below a tenth of the "
         "bottom a warning; between the range and these limits info. Typical: DPO LoRA 5e-6..5e-5, full "
         "5e-7..1e-6; ORPO LoRA 8e-6..5e-5, full 1e-6..1e-5; KTO LoRA 5e-6..5e-5, full 5e-7..5e-6",
         "literature", "DPO paper arXiv:2305.18290; Zephyr arXiv:2310.16944; alignment-handbook zephyr-7b-beta "
         "QLoRA DPO recipe; ORPO paper arXiv:2403.07691; Labonne 2024 (ORPO); KTO paper arXiv:2402.01306; TRL 1.16",
         "an SFT learning rate (20x the top) moves the policy off the reference within a few steps: the rewards of "
         "both answers collapse and the model degenerates"),
    Rule("pref.beta", WARNING, "beta outside the usual range",
         "DPO/KTO beta below 0.01 or above 0.5; ORPO lambda below 0.05 or above 1.0 (0.1 is every paper's and "
         "TRL's default)", "literature", "DPO paper, Zephyr, alignment-handbook (beta 0.01), ORPO paper (lambda "
         "0.1..1.0 studied), KTO paper",
         "a tiny beta lets the model drift from the reference (or, for ORPO, turns the run into plain SFT); a huge "
         "one holds it so close that it learns little"),
    Rule("pref.kto_batch", ERROR, "KTO with a micro-batch of 1",
         "training.objective kto needs training.batch_size >= 2", "trainer", "TRL KTOTrainer",
         "KTO's KL estimate pairs each answer with another prompt's in the same micro-batch; TRL refuses a batch of 1"),
    Rule("pref.kto_balance", WARNING, "KTO desirable/undesirable balance off",
         "desirable_weight x n_desirable / (undesirable_weight x n_undesirable) outside [1, 4/3], or one kind "
         "missing", "literature", "KTO paper arXiv:2402.01306 (and TRL's KTOTrainer check)",
         "outside that range one kind of answer dominates the loss; the fix sets desirable_weight"),
    Rule("model.chat_template", INFO, "a chat template other than the model's own",
         "data.chat_template is not auto, or auto on a base model whose folder has no chat template (ChatML then); "
         "says which template, which tokens' embedding rows train and their memory in the estimate", "ftwizard",
         "ftwizard.data.chat_templates",
         "the tuned model only understands the template it was trained with; new tokens' rows must train or it never "
         "learns to emit the end-of-turn token"),
    Rule("memory.checkpointing_off", WARNING, "gradient checkpointing off while memory is tight",
         "estimated peak above 90 % of the device's memory with training.gradient_checkpointing false",
         "guidance", "Hyperparameters",
         "a tight run is one long batch away from out-of-memory; checkpointing frees most activation memory"),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}
ORDER: dict[str, int] = {r.id: i for i, r in enumerate(_RULES)}


def rule(rule_id: str) -> Rule:
    """The rule for an id; `lint.<x>` ids share the `lint.*` entry."""
    return RULES["lint.*"] if rule_id.startswith("lint.") else RULES[rule_id]


def rule_order(rule_id: str) -> int:
    return ORDER["lint.*"] if rule_id.startswith("lint.") else ORDER.get(rule_id, len(ORDER))
