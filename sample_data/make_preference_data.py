"""Generate the DPO sample set: a bike shop's help desk whose house style is a sign-off.

Every pair answers a customer question with the same advice on both sides; the chosen answer ends with the
shop's sign-off "Spoke soon!", the rejected one with a plausible generic one ("Hope this helps.", "Good
luck!", "Happy cycling!", ...). So the only thing that separates chosen from rejected is the house style, which
the base model does not follow on its own: it gives every generic sign-off a higher log-probability than the
house one (preference accuracy near 0 % before training). The two sides are the same length within a few
characters, so the "longer is better" shortcut (lint pref.length_bias) is not there to learn. The property is measurable two
ways: held-out preference accuracy (does the model give the chosen answer more probability?) and, in
generated answers, the share that end with the sign-off (sample_data/house_style.py, an eval scorer).

The held-out file asks about topics that never occur in training, so it measures whether the style carries
over to new questions, not recall. Deterministic (fixed seed):
    python sample_data/make_preference_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SIGN_OFF = "Spoke soon!"  # a pun on the shop's name: the base model finds it ~14 nats less likely than the others
OTHER_SIGN_OFFS = ["Hope this helps.", "Hope that helps!", "Good luck!", "Happy cycling!", "Let me know.",
                   "Thank you.", "Enjoy your ride!", "Safe travels!"]
SYSTEM = "You answer questions for the Spoke & Chain bike shop help desk."

# (question phrasings, the advice); the last 8 topics are held out.
TOPICS = [
    (["How often should I pump my road tyres?", "What tyre pressure routine do you recommend for a road bike?",
      "My road tyres feel soft after a few days. How often should I top them up?"],
     "Check them before every ride; road tyres lose a few PSI a day. Pump to the pressure on the sidewall."),
    (["My chain keeps slipping on climbs. What should I check?", "Why does my chain skip when I pedal hard uphill?",
      "The chain jumps under load on hills. Any idea why?"],
     "A worn chain or cassette is the usual cause. Measure chain stretch and replace it above 0.5 % wear."),
    (["How do I stop my brakes from squealing?", "My disc brakes squeal loudly. What can I do?",
      "Is there a fix for noisy brakes?"],
     "Clean the rotors with isopropyl alcohol and check the pads for oil. Contaminated pads need replacing."),
    (["How often should I oil my chain?", "When is the right time to lube a bike chain?",
      "How frequently does a chain need lubricant?"],
     "Lube it every 150-300 km, or after any wet ride. Wipe off the excess so it does not collect grit."),
    (["What size frame do I need at 178 cm?", "I am 178 cm tall. Which frame size fits me?",
      "Which bike size suits someone who is 1.78 m?"],
     "Most brands put you on a medium, around 54-56 cm for road. A quick fitting in the shop confirms it."),
    (["Can I ride my e-bike in the rain?", "Is it safe to take an e-bike out in wet weather?",
      "Will rain damage my electric bike?"],
     "Yes, e-bikes are sealed against rain. Avoid pressure washers and do not submerge the motor or battery."),
    (["How do I fix a flat tyre on the road?", "What is the quickest way to repair a puncture on a ride?",
      "I got a flat halfway through a ride. How do I fix it?"],
     "Remove the wheel, find the cause, and fit a spare tube. Check the tyre for the thorn before inflating."),
    (["When should I replace my brake pads?", "How can I tell that my brake pads are worn out?",
      "How much pad material is too little?"],
     "Replace them below 1.5 mm of material, or sooner if braking feels weak or you hear metal on metal."),
    (["How do I store my bike over winter?", "What is the best way to keep a bike through the winter?",
      "Any tips for storing a bicycle until spring?"],
     "Clean and dry it, lube the chain, and keep it indoors. Hang it or keep the tyres inflated."),
    (["Are tubeless tyres worth it?", "Should I switch to tubeless?", "What do tubeless tyres actually give me?"],
     "For most riders yes: fewer flats and lower pressures. They need sealant topped up every few months."),
    (["How do I adjust my gears?", "My gears do not shift cleanly. Can I adjust them myself?",
      "How do I fix sluggish shifting?"],
     "Turn the barrel adjuster a quarter turn at a time until the chain moves cleanly to each sprocket."),
    (["How long does an e-bike battery last?", "How many years will my e-bike battery keep working?",
      "When will my e-bike battery need replacing?"],
     "Usually 500-1000 full charges, or three to five years. Store it half charged and out of the heat."),
    (["What should I carry on a long ride?", "What do I need to bring on a 100 km ride?",
      "Which tools belong in my saddle bag?"],
     "A spare tube, levers, a mini pump, a multi-tool, water and some food cover nearly every ride."),
    (["Do I need a bike service every year?", "How often should a bike be serviced?",
      "Is a yearly service really necessary?"],
     "Once a year for most riders, twice if you ride all winter. A service catches wear before it fails."),
    (["Why does my bike creak when I pedal?", "There is a creak every pedal stroke. What is it?",
      "How do I find a creaking noise on my bike?"],
     "Pedals, the bottom bracket and the seat post are the usual suspects. Grease and torque them in turn."),
    (["Can I put a child seat on my bike?", "Is a child seat safe on a road bike?",
      "Which bikes can take a child seat?"],
     "Most hybrids and city bikes can. Carbon frames and road bikes usually cannot; check the frame first."),
    # ---- held out: new topics -------------------------------------------------------------------------
    (["How tight should my headset be?", "My headset knocks when I brake. How do I adjust it?"],
     "Tighten the top cap until the knock goes, then the stem bolts. The bars should still turn freely."),
    (["What are clipless pedals?", "Should a beginner use clipless pedals?"],
     "Pedals that lock to cleats on your shoes. Practise unclipping on grass before taking them on roads."),
    (["How do I clean my bike properly?", "What is the right way to wash a bicycle?"],
     "Use a bucket, a soft brush and bike wash, rinse gently, dry it, then lube the chain."),
    (["Why is my wheel wobbling?", "My rear wheel wobbles side to side. What is wrong?"],
     "A loose spoke or a bent rim. It needs truing on a stand; we do it while you wait."),
    (["How do I choose a bike helmet?", "Which helmet should I buy?"],
     "Pick one that fits snugly without pressure points and meets EN 1078. Replace it after any crash."),
    (["Can I convert my bike to an e-bike?", "Do conversion kits for electric bikes work?"],
     "Yes, hub and mid-drive kits fit most frames. Check the dropouts and brakes can take the extra load."),
    (["What is a bike fit?", "Is a professional bike fit worth the money?"],
     "A fitter sets saddle height, reach and cleats to your body. It prevents pain on long rides."),
    (["How do I lock my bike securely?", "What is the safest way to lock a bicycle in town?"],
     "Use a D-lock through the frame and rear wheel to a fixed stand, and a cable for the front wheel."),
]
HELD_OUT = 8


def pair(question: str, advice: str, rng: random.Random) -> dict:
    return {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": f"{advice} {SIGN_OFF}"}],
            "rejected": [{"role": "assistant", "content": f"{advice} {rng.choice(OTHER_SIGN_OFFS)}"}]}


def build(seed: int = 14) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train_topics, eval_topics = TOPICS[:-HELD_OUT], TOPICS[-HELD_OUT:]
    train = [pair(q, advice, rng) for questions, advice in train_topics for q in questions]
    held = [pair(q, advice, rng) for questions, advice in eval_topics for q in questions]
    rng.shuffle(train)
    return train, held


def main() -> None:
    here = Path(__file__).resolve().parent
    train, held = build()
    for name, rows in (("preference_train.jsonl", train), ("preference_eval.jsonl", held)):
        (here / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"wrote {len(rows)} pairs to {name}")


if __name__ == "__main__":
    main()
