"""Lint throughput and recall on a generated chat data set with planted defects.

Generates N realistic support-chat rows (OpenAI messages JSONL) with planted exact
duplicates, near-duplicates (a few words changed, punctuation and case edits) and PII
(e-mail, phone, card, IBAN, SSN, IP, API keys), lints the file with exact token counts
(the embedded model's tokenizer and chat template) and near-duplicate detection, and
prints rows/s, peak memory and recall per defect type.

    python bench/lint_throughput.py [--rows 100000] [--seed 0] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson

SYSTEM = "You are a friendly support agent for Northwind Outfitters. Answer in two to five sentences."
NAMES = ["Alex", "Sam", "Priya", "Jordan", "Chen", "Maria", "Tomás", "Aisha", "Lena", "Kofi", "Yuki", "Omar"]
PRODUCTS = ["rain jacket", "hiking boots", "down vest", "trail backpack", "wool socks", "camping stove", "sleeping bag",
            "running shorts", "fleece hoodie", "water bottle", "headlamp", "trekking poles", "tent footprint"]
ISSUES = [
    "the zipper broke after two days", "it arrived in the wrong size", "the colour is not what the photo showed",
    "the package never arrived", "I was charged twice", "the sole started peeling", "a seam is coming apart",
    "the tracking link shows no updates", "the discount code did not apply", "it was missing the rain cover",
    "the box was damaged and the item scratched", "I ordered two but received one",
]
OPENERS = ["Hi there,", "Hello,", "Good morning,", "Hey support team,", "Dear Northwind,", "Hi,"]
CONTEXT = [
    "I bought a {p} from your online store on {d}.", "Last week I ordered a {p} for a trip next month.",
    "My partner gave me a {p} as a birthday present.", "I picked up a {p} in the Denver store on {d}.",
    "I have been a customer for years and this is my third {p}.", "The {p} was part of order {o}.",
]
ASKS = [
    "Could you tell me how to return it?", "Can I get a replacement instead of a refund?",
    "What are my options here?", "Is this covered by the warranty?", "How long does an exchange usually take?",
    "Please let me know what information you need from me.", "Would store credit be possible?",
    "I would like a refund to my original payment method.", "Can you check what happened with the shipment?",
]
CLOSERS = ["Thanks!", "Thank you for your help.", "Best regards, {n}.", "Cheers, {n}", "Looking forward to hearing back.", ""]
REPLIES = [
    "I'm sorry to hear that {i}, {n}.", "Thanks for reaching out about your {p}, {n}.",
    "That should not happen with a new {p}, and I apologise.", "I understand how frustrating this must be.",
]
STEPS = [
    "I have started a free return for order {o}; you will receive a prepaid label by e-mail within the hour.",
    "Our warranty covers manufacturing defects for two years, so a replacement is no problem.",
    "Please reply with a photo of the damage and we will ship a new one the same day.",
    "I have issued a refund of the duplicate charge; it takes three to five business days to appear.",
    "The carrier reports a delay at the regional hub, and the parcel should arrive by {d}.",
    "You can exchange it in any of our stores, or by post using the label I just sent.",
    "I have applied the discount manually and refunded the difference to your card.",
    "Store credit is available and is added to your account immediately once the return is scanned.",
]
ENDS = ["Is there anything else I can help with?", "Have a great trip!", "Let me know if the label does not arrive.",
        "Thanks for your patience.", "Enjoy the outdoors!", ""]
DATES = ["March 3", "April 14", "May 2", "June 21", "July 9", "August 30", "September 5", "October 18", "Monday", "Friday"]

PII = {
    "email": lambda r: f"{r.choice(['jane.doe', 'm.smith', 'kofi88', 'lena_w'])}{r.randint(1, 999)}@{r.choice(['gmail.com', 'example.org', 'mail.de'])}",
    "phone": lambda r: f"+1 {r.choice(['415', '212', '646', '312'])}-{r.randint(200, 999)}-{r.randint(1000, 9999)}",
    "credit_card": lambda r: r.choice(["4111 1111 1111 1111", "5555 5555 5555 4444", "4012888888881881", "378282246310005"]),
    "iban": lambda r: r.choice(["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32", "FR14 2004 1010 0505 0001 3M02 606"]),
    "ssn": lambda r: f"{r.randint(100, 665)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}",
    "ip": lambda r: f"{r.choice([8, 23, 81, 104, 151])}.{r.randint(1, 254)}.{r.randint(1, 254)}.{r.randint(1, 254)}",
    "secret": lambda r: r.choice(["sk-", "hf_"]) + "".join(r.choice("abcdefghijkmnopqrstuvwxyzABCDEFGH0123456789") for _ in range(36)),
}
PII_SENTENCES = {
    "email": "You can reach me at {x} if that is easier.", "phone": "My phone number is {x}, call any time after five.",
    "credit_card": "The card I used was {x} if you need to look it up.", "iban": "For the refund, my IBAN is {x}.",
    "ssn": "The form asked for my SSN, which is {x}.", "ip": "The checkout page failed from my office at {x}.",
    "secret": "Our integration uses the key {x} for the order API.",
}


def make_row(r: random.Random) -> dict:
    p, n, d, o = r.choice(PRODUCTS), r.choice(NAMES), r.choice(DATES), f"NW-{r.randint(10000, 99999)}"
    issue = r.choice(ISSUES)
    user = " ".join(s for s in [
        r.choice(OPENERS), r.choice(CONTEXT).format(p=p, d=d, o=o), f"Unfortunately {issue}.",
        r.choice(ISSUES).capitalize() + " as well." if r.random() < 0.3 else "",
        r.choice(ASKS), r.choice(ASKS) if r.random() < 0.5 else "", r.choice(CLOSERS).format(n=n),
    ] if s)
    reply = " ".join(s for s in [
        r.choice(REPLIES).format(i=issue, n=n, p=p), *r.sample(STEPS, r.randint(1, 3)), r.choice(ENDS),
    ] if s).format(o=o, d=r.choice(DATES))
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": reply}]}


def near_copy(row: dict, r: random.Random) -> dict:
    """A light edit: a couple of words changed or dropped, and punctuation or case touched."""
    msgs = [dict(m) for m in row["messages"]]
    m = msgs[r.choice([1, 2])]
    words = m["content"].split(" ")
    for _ in range(r.randint(1, 2)):
        i = r.randrange(len(words))
        op = r.random()
        if op < 0.4:
            words[i] = r.choice(["really", "actually", "also", "just", "please"])
        elif op < 0.7 and len(words) > 10:
            del words[i]
        else:
            words[i] = words[i].upper() if r.random() < 0.5 else words[i].rstrip(".,!?") + "!"
    m["content"] = " ".join(words)
    return {"messages": msgs}


def generate(path: Path, rows: int, seed: int) -> dict[str, dict[int, object]]:
    r = random.Random(seed)
    planted: dict[str, dict[int, object]] = {"dup.exact": {}, "dup.near": {}}
    planted.update({f"pii.{k}": {} for k in PII})
    made: list[bytes] = []
    with open(path, "wb") as f:
        for line in range(1, rows + 1):
            roll = r.random()
            if line > 100 and roll < 0.01:
                src = r.randrange(len(made))
                data = made[src]
                planted["dup.exact"][line] = src + 1
            elif line > 100 and roll < 0.02:
                src = r.randrange(len(made))
                data = orjson.dumps(near_copy(orjson.loads(made[src]), r))
                planted["dup.near"][line] = src + 1
            else:
                row = make_row(r)
                if roll > 0.985:
                    kind = r.choice(list(PII))
                    row["messages"][1]["content"] += " " + PII_SENTENCES[kind].format(x=PII[kind](r))
                    planted[f"pii.{kind}"][line] = kind
                data = orjson.dumps(row)
            made.append(data)
            f.write(data + b"\n")
    return planted


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--keep", metavar="FILE", help="write the generated data here and keep it")
    ap.add_argument("--no-tokens", action="store_true", help="lint without the tokenizer")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ftwizard.data.lint import LintOptions, lint_file
    from ftwizard.data.tokens import load_tokenizer

    tmp = None
    if args.keep:
        path = Path(args.keep)
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "bench.jsonl"
    t = time.perf_counter()
    planted = generate(path, args.rows, args.seed)
    gen_s = time.perf_counter() - t
    size_mb = path.stat().st_size / 1e6
    tok = None if args.no_tokens else load_tokenizer("embedded")
    rss0 = peak_rss_mb()
    t = time.perf_counter()
    cpu = time.process_time()
    report = lint_file(path, LintOptions(tokenizer=tok, model="embedded", max_length=args.max_length,
                                         max_per_rule=10**9))
    lint_s = time.perf_counter() - t
    cpu_s = time.process_time() - cpu
    load = os.getloadavg()[0]
    rss1 = peak_rss_mb()

    found: dict[str, dict[int, list[int] | None]] = {}
    for f in report.findings:
        found.setdefault(f.rule, {})[f.row] = f.related
    print(f"file: {args.rows:,} rows, {size_mb:.1f} MB (generated in {gen_s:.1f} s)")
    print(f"lint: {lint_s:.1f} s, {args.rows / lint_s:,.0f} rows/s, tokens {'exact (embedded tokenizer)' if tok else 'skipped'}, "
          f"peak RSS {rss1:.0f} MB (before lint {rss0:.0f} MB)")
    print(f"      CPU time {cpu_s:.1f} s (all threads); load average {load:.1f} on {os.cpu_count()} cores "
          f"(other work on the machine stretches the wall time)")
    tokens = report.stats.get("tokens") or {}
    if tokens:
        print(f"tokens: {tokens['total']:,} total, p50 {tokens['p50']}, p95 {tokens['p95']}, max {tokens['max']}")
    print()
    print(f"{'defect':<18}{'planted':>9}{'found':>9}{'recall':>9}{'other hits':>12}")
    ok = True
    for rule, rows in planted.items():
        hits = found.get(rule, {})
        got = sum(1 for row in rows if row in hits)
        recall = got / len(rows) if rows else 1.0
        extra = len(set(hits) - set(rows))
        print(f"{rule:<18}{len(rows):>9,}{got:>9,}{recall:>9.1%}{extra:>12,}")
        need = 0.95 if rule == "dup.near" else 1.0
        ok = ok and recall >= need
    others = {r: n for r, n in report.counts.items() if r not in planted}
    if others:
        print(f"other findings: {others}")
    print(f"\ntarget: < 30 s for 100,000 rows, recall 100 % (exact, PII), >= 95 % (near): "
          f"{'met' if ok and (lint_s < 30 or args.rows < 100_000) else 'NOT met'}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
