"""Test helpers: tiny data sets and configs that train in seconds on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red",
           "banana": "yellow", "orange": "orange", "violet": "purple"}


def tiny_chat_rows(n: int = 16) -> list[dict]:
    items = list(COLOURS.items())
    rows = []
    for i in range(n):
        thing, colour = items[i % len(items)]
        rows.append({"messages": [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": f"What colour is {thing}?"},
            {"role": "assistant", "content": colour},
        ]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(tmp_path: Path, method: str = "lora", **training) -> Path:
    """A config that trains the embedded model for a few steps on 16 short rows."""
    import yaml

    train = write_jsonl(tmp_path / "train.jsonl", tiny_chat_rows(16))
    held_out = write_jsonl(tmp_path / "eval.jsonl", tiny_chat_rows(4))
    t = {"learning_rate": 1e-3 if method != "full" else 1e-4, "max_steps": 4, "batch_size": 4,
         "gradient_accumulation": 1, "warmup_ratio": 0.0, "scheduler": "constant", "eval_every": 0,
         "save_every": 2, "seed": 7, "log_every": 1}
    t.update(training)
    cfg = {"runs_dir": str(tmp_path / "runs"), "model": {"base": "embedded", "method": method},
           "data": {"train": str(train), "eval": str(held_out) if held_out else None, "max_length": 64},
           "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "training": t}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def tiny_preference_rows(n: int = 8) -> list[dict]:
    """Preference pairs (prompt/chosen/rejected, conversational) on the colour task: the right colour is chosen,
    a wrong one rejected. Short, so a DPO step on the embedded model takes a second or two."""
    items = list(COLOURS.items())
    rows = []
    for i in range(n):
        thing, colour = items[i % len(items)]
        wrong = items[(i + 3) % len(items)][1]
        rows.append({"prompt": [{"role": "system", "content": "Answer with one word."},
                                {"role": "user", "content": f"What colour is {thing}?"}],
                     "chosen": [{"role": "assistant", "content": colour}],
                     "rejected": [{"role": "assistant", "content": wrong}]})
    return rows


def tiny_preference_config(tmp_path: Path, objective: str = "dpo", method: str = "lora", rows: int = 8,
                           eval_rows: int = 4, **training) -> Path:
    """A config that trains the embedded model with a preference objective for a few steps on tiny pairs
    (eval_rows=0: no eval file)."""
    import yaml

    train = write_jsonl(tmp_path / "pref_train.jsonl", tiny_preference_rows(rows))
    held_out = write_jsonl(tmp_path / "pref_eval.jsonl", tiny_preference_rows(eval_rows)) if eval_rows else None
    t = {"objective": objective, "max_steps": 3, "batch_size": 4, "gradient_accumulation": 1, "warmup_ratio": 0.0,
         "scheduler": "constant", "eval_every": 0, "save_every": 0, "seed": 7, "log_every": 1}
    t.update(training)
    cfg = {"runs_dir": str(tmp_path / "runs"), "model": {"base": "embedded", "method": method},
           "data": {"train": str(train), "eval": str(held_out) if held_out else None, "max_length": 64},
           "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "training": t}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
