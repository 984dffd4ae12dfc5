"""What the wizard teaches about the preference objectives (DPO, ORPO, KTO), as data.

One home for these numbers: the Decide step shows them (the TUI imports this module; it
is plain data, no heavy imports), the pre-flight guardrails judge a config against them
(ftwizard.preflight.guardrails.preference_*), docs/preference.md explains them in prose,
and config.PREFERENCE_LR picks each objective's default learning rate from inside these
ranges. Every number names its source.

Sources (short names used below):
- DPO paper: Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290 (beta 0.1; full
  fine-tuning at lr 1e-6).
- Zephyr: Tunstall et al. 2023, "Zephyr: Direct Distillation of LM Alignment", arXiv:2310.16944 (DPO after SFT,
  full fine-tuning, lr 5e-7, beta 0.1).
- alignment-handbook: huggingface/alignment-handbook, recipes/zephyr-7b-beta/dpo/config_qlora.yaml (DPO with
  QLoRA, lr 5e-6, beta 0.01).
- TRL: the installed trl 1.16 source (DPOConfig, KTOConfig, ORPOConfig: beta 0.1, learning_rate 1e-6 by default)
  and its trainer docs (KTO: desirable/undesirable weight check, batch > 1).
- ORPO paper: Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
  arXiv:2403.07691 (lambda 0.1; no reference model; SFT and preference in one stage).
- Labonne 2024: "Fine-tune Llama 3 with ORPO" (Hugging Face blog; ORPO with QLoRA at lr 8e-6, beta 0.1).
- KTO paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
  arXiv:2402.01306 (beta 0.1; weights so that desirable_weight*n_desirable / (undesirable_weight*n_undesirable)
  lies in [1, 4/3]; works from unpaired good/bad labels).
"""

from __future__ import annotations

from dataclasses import dataclass

# How far above an objective's typical learning rate a config may go (the pre-flight rule pref.lr):
# above 3x the top of the range a warning, at 20x or more an error. 20x the top is where an SFT learning rate
# lands (LoRA 2e-4 vs DPO's 5e-5 would be 4x; full SFT 2e-5 vs full DPO's 1e-6 is 20x): the policy leaves the
# reference within a few steps, the implicit rewards of both answers fall together and the model degenerates
# (the DPO/Zephyr recipes all sit at 5e-7..5e-6). Below a tenth of the bottom, the run barely moves.
LR_WARN_FACTOR = 3.0
LR_ERROR_FACTOR = 20.0
LR_LOW_FACTOR = 0.1


@dataclass(frozen=True)
class ObjectiveGuide:
    name: str
    title: str
    when: str                            # when it fits
    data: str                            # what data it needs
    beta: float                          # the usual beta (ORPO: lambda)
    beta_range: tuple[float, float]      # typical; outside it the pre-flight warns
    lr_lora: tuple[float, float]         # typical learning rate with LoRA/QLoRA
    lr_full: tuple[float, float]         # typical learning rate with full fine-tuning
    reference: str                       # what it compares against
    source: str

    def lr_range(self, method: str) -> tuple[float, float]:
        return self.lr_full if method == "full" else self.lr_lora


OBJECTIVES: dict[str, ObjectiveGuide] = {
    "sft": ObjectiveGuide(
        "sft", "Supervised fine-tuning (SFT)",
        "Teach a behaviour, format or style from examples of the right answer. The first step of almost every "
        "project, and the base that DPO starts from.",
        "Conversations or prompt/completion pairs with the answer you want.",
        0.0, (0.0, 0.0), (1e-4, 2e-4), (1e-5, 2e-5), "none",
        "GUIDANCE.md (Hyperparameters)"),
    "dpo": ObjectiveGuide(
        "dpo", "Direct Preference Optimization (DPO)",
        "The model already answers in the right shape (after SFT, or an instruct model) and you have pairs where "
        "one answer is better than the other: tone, safety, helpfulness, fewer mistakes. The usual second step.",
        "Pairs: a prompt, a chosen answer and a rejected answer (prompt/chosen/rejected).",
        0.1, (0.01, 0.5), (5e-6, 5e-5), (5e-7, 1e-6),
        "a frozen copy of the starting model (with LoRA: the base with the adapter off, no copy)",
        "DPO paper (beta 0.1, lr 1e-6 full); Zephyr (lr 5e-7 full, beta 0.1); alignment-handbook (QLoRA lr 5e-6, "
        "beta 0.01); TRL DPOConfig defaults"),
    "orpo": ObjectiveGuide(
        "orpo", "Odds Ratio Preference Optimization (ORPO)",
        "You have preference pairs but no SFT model yet: ORPO does SFT on the chosen answers and the preference "
        "step in one run, with no reference model (less memory than DPO).",
        "Pairs: prompt/chosen/rejected (the chosen answers are also the SFT targets).",
        0.1, (0.05, 1.0), (8e-6, 5e-5), (1e-6, 1e-5), "none (no reference model)",
        "ORPO paper (lambda 0.1); Labonne 2024 (QLoRA lr 8e-6, beta 0.1); TRL ORPOConfig defaults"),
    "kto": ObjectiveGuide(
        "kto", "Kahneman-Tversky Optimization (KTO)",
        "Your feedback is single answers marked good or bad (thumbs up/down), not pairs; or the good and bad "
        "answers come in very different numbers.",
        "Labelled answers: prompt/completion/label (true = desirable). Pairs work too (split into one good, one bad).",
        0.1, (0.01, 0.5), (5e-6, 5e-5), (5e-7, 5e-6),
        "a frozen copy of the starting model (with LoRA: the base with the adapter off, no copy)",
        "KTO paper (beta 0.1; weight ratio in [1, 4/3]); TRL KTOConfig defaults and docs"),
}

KTO_WEIGHT_RATIO = (1.0, 4 / 3)  # KTO paper: desirable_weight*n_d / (undesirable_weight*n_u) in [1, 4/3]

SFT_THEN_DPO = (
    "SFT first, then DPO: train SFT on good answers, then set model.base to that finished SFT run's folder and "
    "training.objective: dpo. The SFT adapter is merged into its base when the DPO run loads it, a fresh LoRA "
    "trains on top, and the reference is the SFT model, which is what DPO assumes (DPO paper, Zephyr). ORPO "
    "does both in one run when you have only pairs.")

CHOOSING = (
    "Start with SFT. Add DPO when answers have the right shape but you can say which of two is better. Use ORPO "
    "when you only have pairs and want one run (no reference, less memory). Use KTO when feedback is good/bad "
    "labels on single answers. Preference learning rates are 10-100x below SFT's.")


def guide(objective: str) -> ObjectiveGuide:
    return OBJECTIVES[objective]
