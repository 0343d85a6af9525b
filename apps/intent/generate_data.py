"""Generate ``intents.jsonl``, the customer-service intent dataset this app ships.

Run from the repository root (deterministic: the same file every time)::

    python apps/intent/generate_data.py

Provenance: every phrasing in ``phrasings.yaml`` was written by hand for this app (no
external data). Each intent has 40-45 *core phrasings* of what a customer types to a
support chat, with slots for items, order numbers, times and carriers. An utterance is
one core phrasing, its slots filled, optionally wrapped in an opener ("hi there,") and a
closer ("thanks"), then roughed up the way chat messages are: lower case or shouting,
dropped punctuation, chat spellings ("pls", "u", "dont") and keyboard typos.

Intents come in confusable families that share vocabulary (cancel an order / change
it / cancel a subscription / close the account; track a package / a package marked
delivered but missing / delivery options; refund / return / damaged item; declined
payment / update the card / charged twice), and many phrasings borrow another intent's
words ("my order was cancelled but I wasn't refunded" is a refund).

The held-out split is by core phrasing: 20% of each intent's phrasings (at least 4)
are test-only, so the test set measures paraphrases the model never saw, not new slot
fillers of a phrasing it trained on.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import yaml

SEED = 20240611
PER_INTENT = 90
TEST_FRACTION = 0.2
MIN_TEST_PHRASINGS = 4
OUTPUT = Path(__file__).resolve().parent / "intents.jsonl"

PHRASINGS_FILE = Path(__file__).resolve().parent / "phrasings.yaml"
PHRASINGS: dict[str, list[str]] = yaml.safe_load(PHRASINGS_FILE.read_text())


def _items(text: str) -> list[str]:
    """Split a comma-separated list; keeps the word lists below compact."""
    return [item.strip() for item in text.split(",")]


SLOTS: dict[str, list[str]] = {
    "item": _items(
        "headphones, blender, laptop, jacket, sneakers, phone case, coffee maker, backpack, "
        "desk lamp, air fryer, tablet, winter coat, vacuum, mattress, smart watch, "
        "dining chair, rug, monitor, kettle, dress, stroller, gaming console"
    ),
    "when": _items(
        "yesterday, last week, on Monday, two days ago, this morning, last night, "
        "on the 3rd, a week ago, over the weekend"
    ),
    "carrier": _items("UPS, FedEx, USPS, DHL, the courier, the delivery guy"),
    "city": _items("Chicago, Denver, downtown, Austin, Brooklyn, mall"),
    "number_word": _items("two, three, four, five, six, ten"),
}

OPENERS = [
    "hi", "hello", "hey", "hi there", "good morning", "excuse me", "quick question",
    "help", "um", "ok so", "hello, I need help.", "sorry to bother you but",
    "please help,", "can you help?", "hey support", "good afternoon",
]  # fmt: skip
RUN_ON_OPENERS = {"um", "ok so", "sorry to bother you but"}  # no punctuation after these
CLOSERS = [
    "please", "thanks", "thank you", "asap", "it's urgent", "thx", "ty", "please help",
    "this is frustrating", "thanks in advance", "as soon as possible", "cheers",
]  # fmt: skip
CHAT_SPELLINGS = [
    (r"\byou\b", "u"), (r"\bplease\b", "pls"), (r"\bplease\b", "plz"), (r"\bI'm\b", "im"),
    (r"\bdon't\b", "dont"), (r"\bwhat's\b", "whats"), (r"\bcan't\b", "cant"),
    (r"\bthanks\b", "thnx"), (r"\bare\b", "r"), (r"\bmy\b", "mi"),
]  # fmt: skip
KEYBOARD_NEIGHBOURS = {
    "a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "y": "tu",
}  # fmt: skip


def _fill(phrasing: str, rng: random.Random) -> str:
    def slot(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "order":
            return rng.choice(
                [
                    "my order",
                    f"order #{rng.randint(10000, 99999)}",
                    f"order {rng.randint(10000, 99999)}",
                    "my last order",
                    f"order number {rng.randint(100000, 999999)}",
                    f"the order from {rng.choice(SLOTS['when'])}",
                ]
            )
        if name == "num":
            return rng.choice([str(rng.randint(2, 14)), *SLOTS["number_word"]])
        return rng.choice(SLOTS[name])

    return re.sub(r"\{(\w+)\}", slot, phrasing)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swapped neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # dropped letter
        return word[:i] + word[i + 1 :]
    if kind == 2:  # doubled letter
        return word[:i] + word[i] + word[i:]
    near = KEYBOARD_NEIGHBOURS.get(word[i].lower())
    return word[:i] + rng.choice(near) + word[i + 1 :] if near else word


def _rough_up(text: str, rng: random.Random) -> str:
    for pattern, replacement in CHAT_SPELLINGS:
        if rng.random() < 0.2:
            text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    if rng.random() < 0.2:
        words = text.split(" ")
        long_words = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        for i in rng.sample(long_words, min(len(long_words), rng.choice([1, 1, 2]))):
            words[i] = _typo(words[i], rng)
        text = " ".join(words)
    casing = rng.random()
    if casing < 0.5:
        text = text.lower()
    elif casing < 0.9:
        text = text[0].upper() + text[1:]
    elif casing < 0.93:
        text = text.upper()
    return text


def utterance(phrasing: str, rng: random.Random) -> str:
    text = _fill(phrasing, rng).rstrip("?")
    if rng.random() < 0.3:
        opener = rng.choice(OPENERS)
        if opener[-1] in ",.?" or opener in RUN_ON_OPENERS:
            separator = " "
        else:
            separator = rng.choice([", ", " ", ". ", "! "])
        text = f"{opener}{separator}{text}"
    text += rng.choice(["", "", ".", "?", "?", "!", "??", "..."])
    if rng.random() < 0.25:
        separator = " " if text[-1] in ".?!" else rng.choice([", ", " ", ". "])
        text += f"{separator}{rng.choice(CLOSERS)}{rng.choice(['', '', '.', '!'])}"
    return _rough_up(text, rng)


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def generate_with_phrasings(
    seed: int = SEED, per_intent: int = PER_INTENT
) -> list[tuple[dict[str, str], str]]:
    """Each row ``{"text", "intent", "split"}`` with the core phrasing it was made from.

    ``per_intent`` distinct utterances per intent, distinct across the whole dataset
    even after lower-casing and dropping punctuation, so no text is in both splits or
    under two intents. A phrasing's utterances all go to one split.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    for intent, phrasings in PHRASINGS.items():
        num_test = max(MIN_TEST_PHRASINGS, round(TEST_FRACTION * len(phrasings)))
        test_phrasings = set(rng.sample(range(len(phrasings)), num_test))
        made = 0
        for attempt in range(per_intent * 50):
            # Round-robin, so every phrasing is about equally represented.
            index = attempt % len(phrasings)
            text = utterance(phrasings[index], rng)
            key = _normalised(text)
            if not key or key in seen:
                continue
            seen.add(key)
            split = "test" if index in test_phrasings else "train"
            rows.append(({"text": text, "intent": intent, "split": split}, phrasings[index]))
            made += 1
            if made == per_intent:
                break
        else:
            raise RuntimeError(f"{intent}: only {made} distinct utterances")
    return rows


def generate(seed: int = SEED, per_intent: int = PER_INTENT) -> list[dict[str, str]]:
    """The rows of ``intents.jsonl``: see :func:`generate_with_phrasings`."""
    return [row for row, _ in generate_with_phrasings(seed, per_intent)]


def write(rows: list[dict[str, str]], path: Path = OUTPUT) -> None:
    with path.open("w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    generated = generate()
    write(generated)
    print(f"wrote {len(generated)} utterances, {len(PHRASINGS)} intents to {OUTPUT}")
