"""Eval scorer for the DPO sample set (sample_data/make_preference_data.py): 1.0 when a generated answer ends
with the shop's sign-off, else 0.0. Used as `evaluation.scorer: house_style:signoff` (sample_data/dpo.yaml)."""

SIGN_OFF = "Spoke soon!"


def signoff(prediction: str, reference: str) -> float:
    return 1.0 if prediction.strip().endswith(SIGN_OFF) else 0.0
