"""Write sample_data/tools_train.jsonl and tools_eval.jsonl: a small tool-calling set (OpenAI format).

Three tools (a weather lookup, a calculator, a unit converter). About two thirds of the rows
call a tool (the call, the tool's result, the answer that uses it; some end at the call), the
rest are plain answers where no tool fits, so a tuned model must learn when not to call too.
Deterministic: `python sample_data/make_tools_data.py` rewrites the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Call a tool when one fits the request; otherwise answer directly."

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "calculate", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {
            "expression": {"type": "string"}},
            "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "convert_units", "description": "Convert a quantity between units.",
        "parameters": {"type": "object", "properties": {
            "value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
            "required": ["value", "from_unit", "to_unit"]}}},
]

CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Madrid", "Seoul", "Nairobi", "Toronto", "Dublin", "Hanoi", "Quito"]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "foggy", "snowy"]
UNITS = [("km", "miles", 0.621371), ("kg", "pounds", 2.20462), ("liters", "gallons", 0.264172), ("meters", "feet", 3.28084)]
PLAIN = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Thanks, that's all.", "You're welcome! Have a good day."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Tell me a short fact about the Moon.", "The Moon is about 384,000 km from Earth."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Give me a synonym for happy.", "Joyful."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What colour is the sky on a clear day?", "Blue."),
    ("Say good night in Spanish.", "Buenas noches."),
    ("Good morning!", "Good morning! What can I do for you?"),
    ("What is the largest ocean?", "The Pacific Ocean is the largest."),
    ("Name a primary colour.", "Red."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is H2O?", "H2O is water."),
    ("Translate 'cat' into French.", "Chat."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What planet is closest to the Sun?", "Mercury."),
    ("Can you recommend a book?", "Try 'The Hobbit' by J. R. R. Tolkien."),
    ("What is the opposite of cold?", "Hot."),
    ("How many continents are there?", "There are seven continents."),
    ("What language is spoken in Brazil?", "Portuguese."),
    ("Spell the word 'cat' backwards.", "tac"),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ("Which animal is known as the king of the jungle?", "The lion."),
    ("Is a tomato a fruit?", "Yes, botanically a tomato is a fruit."),
    ("What do bees make?", "Bees make honey."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is the chemical symbol for gold?", "Au."),
    ("Thank you!", "Glad to help!"),
]


def _call(i: int, name: str, args: dict) -> dict:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def weather_row(rng: random.Random, i: int, end_at_call: bool) -> dict:
    city = rng.choice(CITIES)
    unit = rng.choice(["celsius", "fahrenheit", None])
    args = {"city": city} if unit is None else {"city": city, "unit": unit}
    ask = rng.choice(["What's the weather in {c}?", "Is it cold in {c} right now?", "How is the weather in {c} today?"])
    q = ask.format(c=city) + (f" Answer in {unit}." if unit else "")
    temp = rng.randint(-5, 35) if unit != "fahrenheit" else rng.randint(23, 95)
    cond = rng.choice(CONDITIONS)
    sym = "F" if unit == "fahrenheit" else "C"
    return _row(i, q, "get_weather", args, {"city": city, "temperature": temp, "unit": sym, "condition": cond},
                f"It is {temp} {sym} and {cond} in {city}.", end_at_call)


def calc_row(rng: random.Random, i: int, end_at_call: bool) -> dict:
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
    op = rng.choice(["+", "-", "*"])
    expr = f"{a} {op} {b} * {c}"
    value = eval(expr)  # noqa: S307 - our own integers and operators
    q = rng.choice(["What is {e}?", "Compute {e}.", "Can you calculate {e} for me?"]).format(e=expr)
    return _row(i, q, "calculate", {"expression": expr}, {"result": value}, f"{expr} = {value}.", end_at_call)


def convert_row(rng: random.Random, i: int, end_at_call: bool) -> dict:
    src, dst, k = rng.choice(UNITS)
    v = rng.randint(1, 200)
    out = round(v * k, 2)
    q = rng.choice(["Convert {v} {s} to {d}.", "How many {d} is {v} {s}?"]).format(v=v, s=src, d=dst)
    return _row(i, q, "convert_units", {"value": v, "from_unit": src, "to_unit": dst}, {"result": out},
                f"{v} {src} is {out} {dst}.", end_at_call)


def _row(i: int, question: str, name: str, args: dict, result: dict, answer: str, end_at_call: bool) -> dict:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [_call(i, name, args)]}]
    if not end_at_call:
        msgs += [{"role": "tool", "tool_call_id": f"call_{i}", "name": name, "content": json.dumps(result)},
                 {"role": "assistant", "content": answer}]
    return {"messages": msgs, "tools": TOOLS}


def plain_row(rng: random.Random, i: int) -> dict:
    q, a = PLAIN[i % len(PLAIN)]
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}], "tools": TOOLS}


def make(n: int, seed: int, plain_ids: list[int], seen: set[str]) -> list[dict]:
    """n distinct rows, none whose question and call is in `seen` (the other file's; a repeat is drawn again).
    Plain questions come from `plain_ids` only, so held-out rows are never copies of training rows."""
    rng = random.Random(seed)
    plain = list(plain_ids)
    rng.shuffle(plain)  # each plain question at most once per file
    rows: list[dict] = []
    i = 0
    while len(rows) < n:
        i += 1
        kind = rng.random()
        end_at_call = rng.random() < 0.25
        if kind < 0.25:
            if not plain:
                continue
            rows.append(plain_row(rng, plain.pop()))
        elif kind < 0.5:
            rows.append(weather_row(rng, seed * 1000 + i, end_at_call))
        elif kind < 0.75:
            rows.append(calc_row(rng, seed * 1000 + i, end_at_call))
        else:
            rows.append(convert_row(rng, seed * 1000 + i, end_at_call))
        key = json.dumps(rows[-1]["messages"][1:2] + [m.get("tool_calls") and m["tool_calls"][0]["function"] for m in rows[-1]["messages"][2:3]])
        if key in seen:
            rows.pop()
        seen.add(key)
    return rows


def main() -> None:
    here = Path(__file__).resolve().parent
    seen: set[str] = set()  # shared: an eval row never repeats a training row
    held_out_plain = list(range(len(PLAIN)))[-6:]
    train_plain = list(range(len(PLAIN)))[:-6]
    for name, n, seed, plain in (("tools_train.jsonl", 96, 1, train_plain), ("tools_eval.jsonl", 24, 2, held_out_plain)):
        (here / name).write_text("".join(json.dumps(r) + "\n" for r in make(n, seed, plain, seen)))
        print(f"wrote {here / name} ({n} rows)")


if __name__ == "__main__":
    main()
