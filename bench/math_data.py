"""Deterministic grade-school maths rows with worked answers ending in `#### N` (GSM8K style).

No downloads: ten problem templates, names, items and numbers drawn from a seeded
generator. The held-out file uses names and items never used in training, so a model
cannot score by recalling a training row. Each answer shows its steps as
`a * b = c` lines, then the final number on its own line after `####`, as GSM8K does.

    python bench/math_data.py OUT_DIR [--train 320] [--eval 80] [--seed 0]

writes OUT_DIR/math_train.jsonl and OUT_DIR/math_eval.jsonl ({"messages": [...]} rows).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TRAIN_NAMES = ["Tom", "Ana", "Ravi", "Mia", "Leo", "Sara", "Omar", "Lena", "Kofi", "Yuki", "Ben", "Ivy"]
EVAL_NAMES = ["Priya", "Hugo", "Zara", "Diego", "Nell", "Tariq"]
TRAIN_ITEMS = [("pencil", "pencils"), ("apple", "apples"), ("sticker", "stickers"), ("marble", "marbles"),
               ("cookie", "cookies"), ("card", "cards")]
EVAL_ITEMS = [("shell", "shells"), ("badge", "badges"), ("plum", "plums")]


def _packs(r, name, item):
    packs, per, given = r.randint(2, 9), r.randint(3, 12), r.randint(1, 10)
    total = packs * per
    given = min(given, total - 1)
    q = (f"{name} buys {packs} packs of {item[1]}. Each pack has {per} {item[1]}. {name} gives {given} "
         f"{item[1]} to a friend. How many {item[1]} does {name} have left?")
    a = (f"{name} buys {packs} * {per} = {total} {item[1]}.\nAfter giving {given} away, {name} has "
         f"{total} - {given} = {total - given} {item[1]} left.\n#### {total - given}")
    return q, a


def _money(r, name, item):
    price, count, paid = r.randint(2, 9), r.randint(2, 8), 0
    cost = price * count
    paid = (cost // 10 + 1) * 10 + r.choice([0, 10, 20])
    q = f"{name} buys {count} {item[1]} at ${price} each and pays with ${paid}. How much change does {name} get?"
    a = (f"The {item[1]} cost {count} * {price} = ${cost}.\nThe change is {paid} - {cost} = ${paid - cost}.\n"
         f"#### {paid - cost}")
    return q, a


def _share(r, name, item):
    friends, each, extra = r.randint(2, 6), r.randint(2, 9), r.randint(1, 5)
    total = friends * each + extra
    q = (f"{name} has {total} {item[1]} and shares them equally among {friends} friends, keeping the "
         f"{extra} that are left over. How many {item[1]} does each friend get?")
    a = (f"{name} shares {total} - {extra} = {total - extra} {item[1]}.\nEach friend gets "
         f"{total - extra} / {friends} = {each} {item[1]}.\n#### {each}")
    return q, a


def _age(r, name, _item):
    now, diff, years = r.randint(5, 15), r.randint(20, 35), r.randint(2, 10)
    q = (f"{name} is {now} years old. {name}'s mother is {diff} years older. How old will {name}'s mother be "
         f"in {years} years?")
    a = (f"{name}'s mother is {now} + {diff} = {now + diff} years old now.\nIn {years} years she will be "
         f"{now + diff} + {years} = {now + diff + years} years old.\n#### {now + diff + years}")
    return q, a


def _speed(r, name, _item):
    speed, hours, back = r.randint(3, 15), r.randint(2, 6), r.randint(1, 4)
    q = (f"{name} cycles at {speed} km per hour for {hours} hours, then walks back {back} km. How far from the "
         f"start is {name} now, in km?")
    a = (f"{name} cycles {speed} * {hours} = {speed * hours} km.\nAfter walking back, {name} is "
         f"{speed * hours} - {back} = {speed * hours - back} km from the start.\n#### {speed * hours - back}")
    return q, a


def _weeks(r, name, item):
    per_day, days, weeks = r.randint(2, 9), r.randint(2, 6), r.randint(2, 4)
    week = per_day * days
    q = (f"{name} makes {per_day} {item[1]} a day, {days} days a week. How many {item[1]} does {name} make in "
         f"{weeks} weeks?")
    a = (f"In one week {name} makes {per_day} * {days} = {week} {item[1]}.\nIn {weeks} weeks that is "
         f"{week} * {weeks} = {week * weeks} {item[1]}.\n#### {week * weeks}")
    return q, a


def _two_people(r, name, item):
    a_n, more, less = r.randint(5, 20), r.randint(2, 9), r.randint(1, 4)
    b_n = a_n + more
    c_n = b_n - less
    q = (f"{name} has {a_n} {item[1]}. Her brother has {more} more than {name}, and her sister has {less} fewer "
         f"than her brother. How many {item[1]} do the three have together?")
    a = (f"The brother has {a_n} + {more} = {b_n} {item[1]}.\nThe sister has {b_n} - {less} = {c_n} {item[1]}.\n"
         f"Together they have {a_n} + {b_n} + {c_n} = {a_n + b_n + c_n} {item[1]}.\n#### {a_n + b_n + c_n}")
    return q, a


def _half(r, name, item):
    start = 2 * r.randint(6, 30)
    bought = r.randint(2, 12)
    q = (f"{name} had {start} {item[1]}, gave half of them away, and then bought {bought} more. How many "
         f"{item[1]} does {name} have now?")
    a = (f"Half of {start} is {start} / 2 = {start // 2}.\nAfter buying more, {name} has {start // 2} + {bought} = "
         f"{start // 2 + bought} {item[1]}.\n#### {start // 2 + bought}")
    return q, a


def _rows(r, name, item):
    rows, per, broken = r.randint(3, 9), r.randint(4, 12), r.randint(1, 6)
    q = (f"{name} arranges {item[1]} in {rows} rows of {per}. Then {broken} of them are lost. How many "
         f"{item[1]} remain?")
    a = (f"There are {rows} * {per} = {rows * per} {item[1]}.\nAfter losing {broken}, {rows * per} - {broken} = "
         f"{rows * per - broken} remain.\n#### {rows * per - broken}")
    return q, a


def _saving(r, name, _item):
    price, saved, weekly = r.randint(40, 120), r.randint(5, 30), r.choice([5, 10, 15, 20])
    need = price - saved
    weeks = -(-need // weekly)
    q = (f"{name} wants a game that costs ${price}. {name} has saved ${saved} and saves ${weekly} each week. "
         f"How many weeks until {name} can buy the game?")
    a = (f"{name} still needs {price} - {saved} = ${need}.\n{need} / {weekly} = {need / weekly:g}, so it takes "
         f"{weeks} weeks.\n#### {weeks}")
    return q, a


TEMPLATES = [_packs, _money, _share, _age, _speed, _weeks, _two_people, _half, _rows, _saving]


def make_rows(n: int, seed: int, names: list[str], items: list[tuple[str, str]]) -> list[dict]:
    r = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        q, a = TEMPLATES[len(out) % len(TEMPLATES)](r, r.choice(names), r.choice(items))
        if q in seen:
            continue
        seen.add(q)
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


def write(out_dir: Path, n_train: int = 320, n_eval: int = 80, seed: int = 0) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    train, held = out_dir / "math_train.jsonl", out_dir / "math_eval.jsonl"
    for path, rows in ((train, make_rows(n_train, seed, TRAIN_NAMES, TRAIN_ITEMS)),
                       (held, make_rows(n_eval, seed + 1, EVAL_NAMES, EVAL_ITEMS))):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return train, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--train", type=int, default=320)
    ap.add_argument("--eval", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    train, held = write(Path(a.out_dir), a.train, a.eval, a.seed)
    print(f"wrote {train} and {held}")


if __name__ == "__main__":
    main()
