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
# minimum / good / excellent. "other" has no row in the guidance; its minimum is the
# guidance's general floor ("fewer than a few hundred good examples" is a poor reason).


@dataclass(frozen=True)
class ExampleCounts:
    minimum: int
    good: int
    excellent: int


EXAMPLE_COUNTS: dict[str, ExampleCounts] = {
    "classification": ExampleCounts(50, 500, 5_000),
    "extraction": ExampleCounts(100, 1_000, 10_000),
    "style": ExampleCounts(200, 1_000, 5_000),
    "domain": ExampleCounts(500, 5_000, 50_000),
    "code": ExampleCounts(1_000, 10_000, 100_000),
    "other": ExampleCounts(200, 1_000, 5_000),
}

TASK_LABELS: dict[str, str] = {
    "classification": "Classification (labels, routing)",
    "extraction": "Structured extraction (JSON, fields)",
    "style": "Style or tone",
    "domain": "Domain expertise",
    "code": "Code generation",
    "other": "Something else",
}


def example_counts(task_type: str) -> ExampleCounts:
    return EXAMPLE_COUNTS.get(task_type, EXAMPLE_COUNTS["other"])


def data_level(task_type: str, n: int) -> str:
    """'below minimum', 'minimum', 'good' or 'excellent' for `n` examples of a task type."""
    c = example_counts(task_type)
    if n >= c.excellent:
        return "excellent"
    if n >= c.good:
        return "good"
    if n >= c.minimum:
        return "minimum"
    return "below minimum"


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
        ("other", "Plan on at least a few hundred good examples."),
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
            "counts": None if self.counts is None else vars(self.counts),
        }


Answers = dict  # question key -> option key (str), or an int for "examples"


def _reason(q: Question, answers: Answers) -> str:
    return q.option(answers[q.key]).reason


def next_question(answers: Answers) -> Question | None:
    """The next question to ask, or None when the answers reach a verdict."""
    for q in _path(answers):
        if q.key not in answers:
            return q
    return None


def _path(answers: Answers) -> list[Question]:
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
    return [q for q in _path(answers) if q.key in answers]


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
    level = data_level(task, n)
    why.append(f"{n:,} examples for {TASK_LABELS[task].lower()}: {level} "
               f"(guidance: {counts.minimum:,} / {counts.good:,} / {counts.excellent:,}+).")
    approach = "fine_tune_smaller" if gap == "cost" else "fine_tune"
    caveats = []
    if level == "below minimum":
        return Verdict(approach, False,
                       f"Don't fine-tune yet: {n:,} examples are below the minimum of {counts.minimum:,}.", why,
                       [f"Collect at least {counts.minimum:,} good examples (aim for {counts.good:,}).",
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
    if level == "minimum":
        caveats.append(f"Enough to start; {counts.good:,} would be good. Run a pilot first.")
    headline = ("Fine-tune a smaller model to replace the large one." if gap == "cost"
                else "Fine-tune: this is what fine-tuning is good at.")
    next_steps = ["Start with LoRA (or QLoRA when the GPU is tight) and a pilot run.",
                   "Hold out 10-20 % of the data for evaluation, never trained on."]
    return Verdict(approach, True, headline, why, next_steps, caveats, task_type=task, counts=counts)
