"""Decide: should this problem be fine-tuned at all, and if not, what instead.

The decision tree of the guidance, asked as a few questions. Each answer carries the
reason it matters, so the wizard can show "why" beside every choice, and the verdict
lists the reasons that led to it plus what to try instead. The tree (guidance):

    can a good prompt solve it?            -> stop (prompt engineering)
    only tried a bare instruction?         -> add a few examples first (few-shot)
    missing or changing knowledge?         -> retrieval (RAG), not fine-tuning
    an entirely new domain or language?    -> continued pre-training
    style, format or behaviour?            -> fine-tune
    base model too slow or expensive?      -> fine-tune a smaller model,
                                              if a strong model can do it at all
    then: enough good examples for the task type, and a base score low enough
    that a fine-tune can pay.

Plain Python with no Textual import: the Decide screen and tests use it alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# ---- the approaches (guidance: "Decide: prompt, RAG or fine-tune") ---------------

Approach = Literal[
    "prompt", "few_shot", "rag", "fine_tune", "fine_tune_smaller", "continued_pretraining", "revisit_prompt",
]


@dataclass(frozen=True)
class ApproachInfo:
    title: str
    best_when: str
    cost: str
    effort: str
    latency: str


APPROACHES: dict[str, ApproachInfo] = {
    "prompt": ApproachInfo("Prompt engineering", "the task is well defined, few formats", "very low", "low", "none"),
    "few_shot": ApproachInfo("Few-shot examples", "you need a consistent format or style", "low", "low",
                             "slightly higher (more tokens)"),
    "rag": ApproachInfo("Retrieval (RAG)", "you need up-to-date or private knowledge", "medium", "medium",
                        "higher (retrieval step)"),
    "fine_tune": ApproachInfo("Fine-tuning", "you need a change of behaviour, style, format or domain reasoning",
                              "high", "high", "lower at inference"),
    "fine_tune_smaller": ApproachInfo("Fine-tune a smaller model", "a large model does it but is too slow or costly",
                                      "high", "high", "much lower at inference"),
    "continued_pretraining": ApproachInfo("Continued pre-training", "an entirely new domain or language",
                                          "very high", "very high", "none"),
    "revisit_prompt": ApproachInfo("Revisit the prompt and the task", "no model does the task well yet",
                                   "low", "medium", "none"),
}

# ---- example counts per task type (guidance: "Data") -----------------------------
# One table for the whole product (`ftwizard.data.guidance`, also used by the lint
# rule), so Decide and lint never disagree. "other" has no row in the guidance: only
# its general floor applies ("fewer than a few hundred good examples" is a poor reason).

from ftwizard.data.guidance import EXAMPLE_COUNTS, GENERIC_MINIMUM, ExampleCounts, rate_count  # noqa: E402

TASK_LABELS: dict[str, str] = {
    "classification": "Classification (labels, routing)",
    "extraction": "Structured extraction (JSON, fields)",
    "style": "Style or tone",
    "domain": "Domain expertise",
    "code": "Code generation",
    "math": "Math / reasoning (final answer)",
    "other": "Something else",
}


def example_counts(task_type: str) -> ExampleCounts | None:
    """minimum / good / excellent for a task type; None where the guidance has no row."""
    return EXAMPLE_COUNTS.get(task_type)


def minimum_examples(task_type: str) -> int:
    c = example_counts(task_type)
    return c.minimum if c is not None else GENERIC_MINIMUM


def data_level(task_type: str, n: int) -> str:
    """'below minimum', 'minimum', 'good', 'excellent', or 'enough to start' (no row for the task)."""
    level, _ = rate_count(task_type, n)
    return {"below_minimum": "below minimum", "unknown_task": "enough to start"}.get(level, level)


# ---- questions -----------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    reason: str  # why this answer matters, shown beside it


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    options: tuple[Option, ...] = ()
    kind: Literal["choice", "number"] = "choice"
    help: str = ""

    def option(self, key: str) -> Option:
        for o in self.options:
            if o.key == key:
                return o
        raise KeyError(f"{self.key}: no option {key!r} (have {', '.join(o.key for o in self.options)})")


PROMPT = Question(
    "prompt", "Have you tried a strong prompt on a strong model?",
    (
        Option("works", "Yes, and it does the job",
               "A prompt that works is the cheapest, fastest fix; fine-tuning adds cost and upkeep."),
        Option("instruction_only", "Only plain instructions, no examples",
               "A few worked examples in the prompt often fix format and style at low cost."),
        Option("falls_short", "Yes, with examples, and it still falls short",
               "The prompt has been given a fair try: look at what is missing."),
        Option("not_tried", "Not yet",
               "Not having tried a strong prompt first is a poor reason to fine-tune (guidance)."),
    ),
)

GAP = Question(
    "gap", "What does the best prompt get wrong?",
    (
        Option("knowledge", "It lacks facts: private, recent or changing knowledge",
               "Fine-tuning memorises facts unreliably and hallucinates; retrieval supplies them."),
        Option("format", "The output format drifts (e.g. JSON that breaks)",
               "A format prompting cannot hold is a good reason to fine-tune."),
        Option("style", "The tone or behaviour is easier to show than to describe",
               "Style and behaviour are what fine-tuning teaches best."),
        Option("cost", "A large model does it, but too slowly or expensively at volume",
               "A small tuned model can replace a large model plus a long prompt."),
        Option("new_domain", "It barely knows the domain or language at all",
               "An entirely new domain or language needs continued pre-training on raw text."),
    ),
)

STRONG_MODEL = Question(
    "strong_model", "With the best prompt, does a strong (large) model produce what you want?",
    (
        Option("yes", "Yes, reliably", "Its outputs can become the training data for a smaller model."),
        Option("no", "No, not even a strong model",
               "If the best prompt on a strong model cannot get the behaviour, fine-tuning a small model "
               "will not either (guidance)."),
    ),
)

TASK = Question(
    "task_type", "What will the model learn to do?",
    tuple(Option(k, TASK_LABELS[k], _r) for k, _r in (
        ("classification", "Needs 50 / 500 / 5,000+ examples (minimum / good / excellent)."),
        ("extraction", "Needs 100 / 1,000 / 10,000+ examples."),
        ("style", "Needs 200 / 1,000 / 5,000+ examples."),
        ("domain", "Needs 500 / 5,000 / 50,000+ examples."),
        ("code", "Needs 1,000 / 10,000 / 100,000+ examples."),
        ("other", f"Plan on at least a few hundred ({GENERIC_MINIMUM}) good examples."),
    )),
)

EXAMPLES = Question(
    "examples", "How many good, reviewed examples do you have?", kind="number",
    help="Quality beats quantity: 200 clean, diverse examples beat 2,000 noisy ones (guidance).",
)

BASE_SCORE = Question(
    "base_score", "How does the base model score on your eval set, with the best prompt?",
    (
        Option("unknown", "Not measured yet",
               "Score the base model first: it is the bar a fine-tune has to beat."),
        Option("low", "Below 70 %", "Plenty of room: a fine-tune can pay off."),
        Option("mid", "70-85 %", "Room to gain; check the gain against the cost."),
        Option("high", "85 % or more", "A fine-tune for a few more points may not pay (guidance)."),
    ),
)

QUESTIONS: dict[str, Question] = {q.key: q for q in (PROMPT, GAP, STRONG_MODEL, TASK, EXAMPLES, BASE_SCORE)}


# ---- verdict -------------------------------------------------------------------


@dataclass
class Verdict:
    approach: str
    fine_tune: bool
    headline: str
    reasons: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)  # what to try instead, or what to do next
    caveats: list[str] = field(default_factory=list)
    task_type: str | None = None
    counts: ExampleCounts | None = None

    @property
    def title(self) -> str:
        return APPROACHES[self.approach].title

    def to_dict(self) -> dict:
        return {
            "approach": self.approach, "title": self.title, "fine_tune": self.fine_tune,
            "headline": self.headline, "reasons": self.reasons, "next_steps": self.next_steps,
            "caveats": self.caveats, "task_type": self.task_type,
            "counts": None if self.counts is None else {
                "minimum": self.counts.minimum, "good": self.counts.good, "excellent": self.counts.excellent},
        }


Answers = dict  # question key -> option key (str), or an int for "examples"


def _reason(q: Question, answers: Answers) -> str:
    return q.option(answers[q.key]).reason


def next_question(answers: Answers) -> Question | None:
    """The next question to ask, or None when the answers reach a verdict."""
    for q in applicable(answers):
        if q.key not in answers:
            return q
    return None


def applicable(answers: Answers) -> list[Question]:
    """The questions that apply, given the answers so far (the tree's branch)."""
    path = [PROMPT]
    if answers.get("prompt") != "falls_short":
        return path
    path.append(GAP)
    gap = answers.get("gap")
    if gap in (None, "knowledge", "new_domain"):
        return path
    if gap == "cost":
        path.append(STRONG_MODEL)
        if answers.get("strong_model") != "yes":
            return path
    path += [TASK, EXAMPLES, BASE_SCORE]
    return path


def asked(answers: Answers) -> list[Question]:
    """The questions answered so far, in order (to show the trail with its reasons)."""
    return [q for q in applicable(answers) if q.key in answers]


def decide(answers: Answers) -> Verdict:
    """The verdict for a complete set of answers (see `next_question`)."""
    missing = next_question(answers)
    if missing is not None:
        raise ValueError(f"unanswered question: {missing.key}")
    why = [_reason(q, answers) for q in asked(answers) if q.kind == "choice"]

    prompt = answers["prompt"]
    if prompt == "works":
        return Verdict("prompt", False, "Don't fine-tune: your prompt already does the job.", why,
                       ["Keep the prompt; put it under version control with a small eval set.",
                        "Revisit fine-tuning if volume makes the long prompt costly."])
    if prompt == "instruction_only":
        return Verdict("few_shot", False, "Don't fine-tune yet: add a few examples to the prompt first.", why,
                       ["Put 3-5 worked input/output examples in the prompt.",
                        "Measure it on a held-out set; fine-tune only if it still falls short."])
    if prompt == "not_tried":
        return Verdict("prompt", False, "Don't fine-tune yet: try a strong prompt first.", why,
                       ["Write clear instructions with a few examples, on a strong model.",
                        "Build a small eval set now: you will need it either way."])

    gap = answers["gap"]
    if gap == "knowledge":
        return Verdict("rag", False, "Don't fine-tune for facts: retrieve them (RAG).", why,
                       ["Index your documents and retrieve the relevant ones into the prompt.",
                        "Fine-tune later for form if needed: tuned model for form, retrieval for facts."])
    if gap == "new_domain":
        return Verdict("continued_pretraining", False,
                       "This needs continued pre-training on raw domain text, not a chat fine-tune.", why,
                       ["Check first whether a larger or domain-specific base model already knows the domain.",
                        "Continued pre-training costs far more: budget compute and data (raw text, not pairs)."])
    if gap == "cost" and answers["strong_model"] == "no":
        return Verdict("revisit_prompt", False,
                       "Don't fine-tune: not even a strong model does this yet.", why,
                       ["Split the task into smaller steps, or give the model the context it lacks.",
                        "Check the examples: do reviewers agree on the right answers?"])

    task = answers["task_type"]
    n = int(answers["examples"])
    counts = example_counts(task)
    minimum = minimum_examples(task)
    level = data_level(task, n)
    scale = (f"guidance: {counts.minimum:,} / {counts.good:,} / {counts.excellent:,}+" if counts is not None
             else f"guidance: at least {minimum:,}")
    why.append(f"{n:,} examples for {TASK_LABELS[task].lower()}: {level} ({scale}).")
    approach = "fine_tune_smaller" if gap == "cost" else "fine_tune"
    caveats = []
    if level == "below minimum":
        aim = f" (aim for {counts.good:,})" if counts is not None else ""
        return Verdict(approach, False,
                       f"Don't fine-tune yet: {n:,} examples are below the minimum of {minimum:,}.", why,
                       [f"Collect at least {minimum:,} good examples{aim}.",
                        "Meanwhile use the examples you have as few-shot examples in the prompt.",
                        "A strong model can draft more examples, if people review them."],
                       task_type=task, counts=counts)
    score = answers["base_score"]
    if score == "high":
        if gap == "cost":
            caveats.append("The base already scores high: make sure the smaller tuned model matches it.")
        else:
            return Verdict(approach, False,
                           "Probably don't fine-tune: the base model already scores 85 % or more.", why,
                           ["Tighten the prompt and add retrieval for the cases it misses.",
                            "Fine-tune only if the last few points are worth the training and upkeep."],
                           task_type=task, counts=counts)
    if score == "unknown":
        caveats.append("Score the base model on your eval set before training: it is the bar to beat.")
    if level == "minimum" and counts is not None:
        caveats.append(f"Enough to start; {counts.good:,} would be good. Run a pilot first.")
    headline = ("Fine-tune a smaller model to replace the large one." if gap == "cost"
                else "Fine-tune: this is what fine-tuning is good at.")
    next_steps = ["Start with LoRA (or QLoRA when the GPU is tight) and a pilot run.",
                   "Hold out 10-20 % of the data for evaluation, never trained on."]
    return Verdict(approach, True, headline, why, next_steps, caveats, task_type=task, counts=counts)


# ---- hyperparameter guardrails (guidance: "Hyperparameters", "Methods") ---------


def hyperparameter_warnings(cfg, rows: int | None = None) -> dict[str, str]:
    """Field path -> a one-line warning, for settings outside the guidance's typical ranges.

    `cfg` is a RunConfig; `rows` the number of training examples when known. These are
    warnings, not errors: each says what usually goes wrong, so the user can decide.
    """
    t, lora, method = cfg.training, cfg.lora, cfg.model.method
    out: dict[str, str] = {}
    lr = t.learning_rate
    objective = getattr(t, "objective", "sft")
    if objective != "sft":
        _preference_warnings(cfg, out)
    elif method == "full":
        if lr > 5e-5:
            out["training.learning_rate"] = "full fine-tuning usually needs ~1e-5 to 2e-5; higher often wrecks the model"
    elif lr > 2e-4:
        out["training.learning_rate"] = "above 2e-4 often destabilises large models (LoRA: 1e-4 to 2e-4)"
    elif lr < 1e-5:
        out["training.learning_rate"] = "very low for adapters: LoRA usually learns at 1e-4 to 2e-4"
    if t.max_steps is None and t.epochs > 3:
        small = rows is not None and rows < 1000
        out["training.epochs"] = ("more than 3 epochs on a small data set usually memorises" if small
                                  else "more than 3 epochs usually memorises; more data, fewer epochs")
    if not 0.03 <= t.warmup_ratio <= 0.10:
        out["training.warmup_ratio"] = "warmup is usually 3-10 % of the steps"
    eff = t.batch_size * t.gradient_accumulation
    if eff < 16 or eff > 64:
        out["training.gradient_accumulation"] = f"effective batch is {eff}; 16-64 is typical (batch x accumulation)"
    if t.gradient_accumulation > 16:
        out.setdefault("training.gradient_accumulation", "accumulation above 16 is slow; raise the batch if memory allows")
    if not 0.01 <= t.weight_decay <= 0.1:
        out["training.weight_decay"] = "weight decay is usually 0.01-0.1"
    if not 0.3 <= t.max_grad_norm <= 1.0:
        out["training.max_grad_norm"] = "gradient clipping is usually ~0.3-1.0"
    if t.scheduler in ("linear", "constant"):
        out["training.scheduler"] = "cosine decay is usually better"
    if "8bit" in t.optimizer and t.device == "cpu":
        out["training.optimizer"] = "8-bit optimizers need a GPU"
    if t.precision == "fp16" and t.device == "cpu":
        out["training.precision"] = "fp16 is for GPUs; CPUs train in fp32"
    if method != "full":
        if not 4 <= lora.r <= 128:
            out["lora.r"] = "rank is usually 4-64 (8-16 to start, up to 128 for rich tasks)"
        if lora.alpha not in (lora.r, 2 * lora.r):
            out["lora.alpha"] = f"alpha is usually 2 x r = {2 * lora.r} (or r, to limit forgetting)"
        if lora.dropout > 0.1:
            out["lora.dropout"] = "adapter dropout is usually 0-0.05"
        if isinstance(lora.target_modules, list) and set(lora.target_modules) <= {"q_proj", "v_proj"}:
            out["lora.target_modules"] = "target all linear projections rather than only q and v"
    if cfg.data.eval is None:
        out["data.eval"] = "hold out 10-20 % of the data as an eval file, never trained on"
    return out


def _preference_warnings(cfg, out: dict[str, str]) -> None:
    """DPO, ORPO, KTO: learning rates an order or two below SFT's (config.default_learning_rate names the
    sources), beta in its usual range."""
    from ftwizard.config import default_learning_rate

    t, objective = cfg.training, cfg.training.objective
    name = objective.upper()
    default = default_learning_rate(objective, cfg.model.method)
    if t.learning_rate > 10 * default:
        out["training.learning_rate"] = (f"{name} trains ~10-100x lower than SFT: ~{default:g} with "
                                         f"{cfg.model.method}; an SFT-like rate collapses the model")
    elif t.learning_rate < default / 20:
        out["training.learning_rate"] = f"very low for {name}: ~{default:g} is usual with {cfg.model.method}"
    beta = cfg.preference.beta
    if objective in ("dpo", "kto") and not 0.01 <= beta <= 0.5:
        out["preference.beta"] = f"{name}'s beta is usually 0.01-0.5 (0.1 in the paper and TRL)"


@dataclass
class TrainingPlan:
    rows: int | None
    effective_batch: int
    steps: int | None
    epochs: float
    tokens: int | None  # rough: characters / 4, capped at max_length per example

    def to_dict(self) -> dict:
        return vars(self).copy()


def count_examples(path) -> tuple[int, int] | None:
    """(rows, average characters per row) of a JSONL/JSON/CSV file; None when unknown or unreadable."""
    import json
    from pathlib import Path

    p = Path(path)
    try:
        if p.suffix.lower() in (".jsonl", ".ndjson"):
            rows = chars = 0
            with open(p, "rb") as f:
                for line in f:
                    if line.strip():
                        rows += 1
                        chars += len(line)
            return rows, (chars // rows if rows else 0)
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, list):
                return len(data), (len(json.dumps(data)) // len(data) if data else 0)
        if p.suffix.lower() == ".csv":
            import csv

            with open(p, newline="", encoding="utf-8") as f:
                rows_l = list(csv.reader(f))[1:]
            return len(rows_l), (sum(len(",".join(r)) for r in rows_l) // len(rows_l) if rows_l else 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def training_plan(cfg, rows: int | None, avg_chars: int | None = None) -> TrainingPlan:
    """Optimizer steps and (rough) training tokens for a config over `rows` examples."""
    import math

    t = cfg.training
    eff = t.batch_size * t.gradient_accumulation
    if t.max_steps is not None:
        steps = t.max_steps
        epochs = steps * eff / rows if rows else t.epochs
    elif rows:
        steps = math.ceil(math.ceil(rows / t.batch_size) / t.gradient_accumulation * t.epochs)
        epochs = t.epochs
    else:
        steps, epochs = None, t.epochs
    tokens = None
    if avg_chars is not None and steps is not None:
        per_example = min(cfg.data.max_length, max(1, avg_chars // 4))
        tokens = int(steps * eff * per_example)
    return TrainingPlan(rows, eff, steps, round(epochs, 2), tokens)
