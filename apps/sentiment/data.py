"""Synthetic financial-news headlines, a tokenizer and a vocabulary.

The generator is deterministic for a given seed, so every Ray Train worker (and every
restart of one) rebuilds exactly the same dataset and split without shipping data around.

Headlines come from template families per class (earnings, guidance, broker ratings,
dividends, buybacks, layoffs, lawsuits, deals, appointments, scheduled events ...). Every
slot is filled from a pool of fictional companies, brokers, people, figures and periods,
and every cue word from a pool of synonyms drawn with Zipf-like weights, so some
phrasings are rare in training and the model has to generalise. To keep the task from
being trivially separable:

* polarity is often an interaction, not a keyword: "costs jump" is negative while
  "orders jump" is positive, and "costs fall" is positive; an optional adverb
  ("costs unexpectedly jump") breaks the bigram that would give it away,
* negation flips a cue ("fails to beat", "rules out job cuts", "not expected to cut",
  "no longer expects a loss"), and previews ("analysts expect X to beat") are neutral,
* mixed headlines carry cues of both signs and the guidance clause decides the label
  ("beats estimates but cuts guidance" is negative), and
* a market-context clause ("amid weak consumer spending") is appended independently
  of the label, so polar words also occur in headlines of the other classes.

Labels are exact (no label noise): the ambiguity is in the vocabulary, not the targets.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

LABELS = ["negative", "neutral", "positive"]
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2

Example = tuple[str, int]


def _items(text: str) -> list[str]:
    """Split a comma-separated list; keeps the long word lists below compact."""
    return [item.strip() for item in text.split(",")]


class Synonyms:
    """Interchangeable phrasings; earlier ones are more common (weight ~ 1 / rank).

    The skew leaves the later phrasings rare in training, as real wire copy does.
    """

    def __init__(self, text: str) -> None:
        self.words = _items(text)
        weights = (1.0 / rank for rank in range(1, len(self.words) + 1))
        self._cum_weights = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self._cum_weights)[0]


# --- Entities -------------------------------------------------------------------------

_NAME_PREFIXES = _items(
    "Apex, Northwind, Bluestone, Crescent, Ironwood, Meridian, Summit, Vantage, Harbor, "
    "Pinnacle, Silverline, Redwood, Granite, Orion, Cobalt, Evergreen, Falcon, Horizon, "
    "Keystone, Lumen, Nova, Quantum, Sterling, Trident, Atlas, Beacon, Cascade, Delta, Ember, "
    "Frontier"
)


class _Sector(NamedTuple):
    name_suffixes: list[str]
    segments: list[str]
    products: list[str]


_SECTORS = {
    "tech": _Sector(
        _items("Systems, Software, Semiconductor, Networks"),
        _items("cloud, chip, software subscription, data center, advertising"),
        _items("AI assistant, server chip, analytics platform, security suite"),
    ),
    "energy": _Sector(
        _items("Energy, Petroleum, Power, Renewables"),
        _items("oil and gas, refining, solar, natural gas, wind power"),
        _items("offshore platform, battery storage unit, biofuel plant, pipeline"),
    ),
    "finance": _Sector(
        _items("Bank, Financial, Capital, Insurance"),
        _items("lending, trading, wealth management, mortgage, card"),
        _items("digital wallet, robo-advisor, credit card, savings account"),
    ),
    "health": _Sector(
        _items("Pharma, Therapeutics, Health, Biosciences"),
        _items("oncology drug, vaccine, medical device, diagnostics, generic drug"),
        _items("cancer therapy, diabetes drug, glucose monitor, flu vaccine"),
    ),
    "consumer": _Sector(
        _items("Retail, Stores, Brands, Foods"),
        _items("holiday, online, grocery, apparel, beverage"),
        _items("private-label range, loyalty app, snack line, store format"),
    ),
    "industrial": _Sector(
        _items("Industries, Motors, Aerospace, Logistics"),
        _items("aircraft, freight, truck, defense, machinery"),
        _items("electric truck, cargo drone, jet engine, robotic arm"),
    ),
}

_BROKERS = _items(
    "Morgan Hale, Barrow Stein, Kensington Securities, Redfield Partners, Alder and Co, "
    "Northgate Research, Castle Rock Capital, Whitmore Brothers, Lindqvist Equities, "
    "Ocean Street Advisors"
)
_REGULATORS = _items("the SEC, the FTC, the DOJ, EU regulators, the FDA, state prosecutors")
_FIRST_NAMES = _items(
    "Anna, James, Priya, Marco, Elena, David, Mei, Oliver, Fatima, Lukas, Sofia, Daniel, "
    "Hannah, Rahul, Chloe, Victor"
)
_LAST_NAMES = _items(
    "Keller, Okafor, Sato, Moreau, Lindgren, Patel, Novak, Reyes, Fischer, Walsh, Ibrahim, "
    "Costa, Brennan, Yamada, Schultz, Adeyemi"
)
_ROLES = _items(
    "chief executive, chief financial officer, chair, chief operating officer, "
    "head of strategy, chief technology officer"
)
_ISSUES = _items(
    "accounting practices, data privacy, product safety, price fixing, "
    "misleading disclosures, emissions reporting, a data breach"
)
_HEADWINDS = _items(
    "weak demand, rising costs, currency headwinds, supply shortages, lower prices, "
    "a slowing economy"
)
_CONFERENCES = _items(
    "Global Technology, Energy Transition, Healthcare Investor, Consumer Growth, "
    "Industrials Outlook, Financial Services"
)
_CITIES = _items("Austin, Chicago, Denver, Atlanta, Boston, Toronto, Dublin, Singapore")
_MONTHS = _items(
    "January, February, March, April, May, June, July, August, September, October, "
    "November, December"
)
_PERIOD_WORDS = _items("first-quarter, second-quarter, third-quarter, fourth-quarter")

# --- Cue vocabularies -----------------------------------------------------------------

_WORDS = {
    "estimates": Synonyms(
        "estimates, forecasts, expectations, consensus, analyst estimates, "
        "market expectations, the Street view"
    ),
    "guidance": Synonyms(
        "guidance, outlook, forecast, profit forecast, revenue outlook, sales forecast, "
        "full-year targets"
    ),
    "profit": Synonyms("profit, revenue, net income, EPS, operating profit, core profit"),
    "beat": Synonyms("beats, tops, exceeds, surpasses, outpaces, crushes, trounces"),
    "beat_base": Synonyms("beat, top, exceed, meet, surpass"),
    "miss": Synonyms("misses, falls short of, lags, trails, undershoots, disappoints"),
    "raise": Synonyms("raises, lifts, boosts, hikes, ups, increases, bumps up, sweetens"),
    "cut": Synonyms("cuts, lowers, slashes, trims, reduces, pares, scales back, withdraws"),
    "cut_base": Synonyms("cut, lower, slash, trim, reduce, suspend"),
    "keep": Synonyms("reaffirms, maintains, reiterates, keeps, holds, confirms, sticks to"),
    "up": Synonyms(
        "rises, jumps, climbs, surges, gains, soars, advances, rallies, leaps, rebounds, "
        "spikes, edges higher, balloons"
    ),
    "down": Synonyms(
        "falls, drops, slides, slumps, tumbles, declines, sinks, plunges, retreats, dips, "
        "slips, craters, shrinks"
    ),
    "flat": Synonyms("flat, unchanged, steady, stable, holds steady, little changed, in line"),
    # Metrics whose rise is good news, and metrics whose rise is bad news (all singular,
    # so they take the same verbs).
    "good_metric": Synonyms(
        "revenue, profit, order intake, operating margin, free cash flow, net income, "
        "backlog, gross margin, subscriber base, cash flow"
    ),
    "bad_metric": Synonyms(
        "debt, cost base, net loss, inventory, churn, default rate, delinquency rate, "
        "expense ratio, writedown, impairment charge"
    ),
    # An adverb between metric and verb hides the "costs_jump" bigram; empty most often.
    "adverb": Synonyms(", sharply, unexpectedly, modestly, again, further, slightly"),
    # Plural verb forms, for "shares ..." and "sales ...".
    "shares_up": Synonyms("rise, jump, climb, surge, gain, soar, rally, leap"),
    "shares_down": Synonyms("fall, drop, slide, slump, tumble, sink, plunge, dive"),
    "shares_flat": Synonyms("flat, little changed, steady, unchanged, mixed"),
    "upgrade": Synonyms("upgrades, raises, lifts"),
    "downgrade": Synonyms("downgrades, cuts, lowers"),
    "rating_good": Synonyms("buy, outperform, overweight, strong buy, accumulate"),
    "rating_bad": Synonyms("sell, underperform, underweight, reduce, strong sell"),
    "rating_mid": Synonyms("hold, neutral, equal-weight, market perform, sector perform"),
    "appoint": Synonyms("appoints, names, hires, taps, picks"),
    "lawsuit": Synonyms("lawsuit, class action, suit, legal challenge"),
    "layoff_verb": Synonyms("to cut, to shed, to eliminate, to axe, plans to lay off"),
    "layoffs_noun": Synonyms("job cuts, layoffs, redundancies, plant closures"),
}

# Appended regardless of the label: polar words that do not decide the class.
_MARKET_CONTEXT = _items(
    "amid rate uncertainty, amid supply chain pressures, amid a sector rally, "
    "amid strong consumer demand, amid weak consumer spending, amid higher input costs, "
    "as markets slide, as markets rally, as investors weigh tariffs"
)
_HEADLINE_TAGS = ["UPDATE 1-", "UPDATE 2-", "BRIEF-", "EXCLUSIVE-"]
_SOURCE_TAGS = [" - sources", " - filing", " - statement", " - report"]

# --- Templates ------------------------------------------------------------------------
# Fields are filled by _fill_fields(); every template must use only those names.

_POSITIVE = [
    "{co} {period} {profit} {beat} {estimates}{tailwind}",
    "{co} {beat} {period} {estimates}, {raise} {guidance}",
    "{co} {good_metric}{adverb} {up} {pct}{tailwind}",
    "{co} {bad_metric}{adverb} {down} {pct}{tailwind}",
    "{co} {raise} {year} {guidance}{tailwind}",
    "{broker} {upgrade} {co} to {rating_good}, {raise} price target to {price}",
    "{co} {raise} quarterly dividend by {pct}",
    "{co} announces {money} share buyback",
    "{co} shares {shares_up} {pct} on takeover offer from {co2}",
    "{co} wins {money} {segment} contract from {co2}",
    "{co} wins approval for {product}",
    "{co} margin widens as cost cuts pay off",
    "{co} wins dismissal of {lawsuit} brought by {regulator}",
    "{co} rules out {layoffs_noun} as {segment} demand recovers",
    "{co} no longer expects {period} loss",
    # Mixed cues: the guidance clause decides.
    "{co} {miss} {period} {estimates} but {raise} full-year {guidance}",
    "{co} {good_metric} {down} {pct}, but company {raise} {guidance}",
]

_NEGATIVE = [
    "{co} {period} {profit} {miss} {estimates}{headwind}",
    "{co} fails to {beat_base} {period} {estimates}",
    "{co} {good_metric}{adverb} {down} {pct}{headwind}",
    "{co} {bad_metric}{adverb} {up} {pct}{headwind}",
    "{co} {cut} {year} {guidance}{headwind}",
    "{broker} {downgrade} {co} to {rating_bad}, {cut} price target to {price}",
    "{co} {cut} quarterly dividend by {pct}",
    "{co} suspends dividend to preserve cash",
    "{co} {layoff_verb} {layoffs}",
    "{co} sued by {regulator} over {issue}",
    "{co} faces {lawsuit} over {issue}",
    "{co} deal with {co2} collapses after {regulator} challenge",
    "{co} shares {shares_down} {pct} after {period} results disappoint",
    "{co} posts surprise {period} loss of {money}",
    "{co} recalls {jobs} units of {product}",
    "{co} fails to win approval for {product}",
    "{regulator} raises concerns over {co} {product}",
    "{co} not expected to return to profit until {year2}",
    # Mixed cues: the guidance clause decides.
    "{co} {beat} {period} {estimates} but {cut} full-year {guidance}",
    "{co} {good_metric} {up} {pct}, yet company {cut} {guidance}",
]

_NEUTRAL = [
    "{co} to report {period} results on {date}",
    "{co} to hold annual shareholder meeting on {date}",
    "{co} {appoint} {person} as {role}",
    "{co} launches {product}, in line with expectations",
    "{co} {period} {profit} in line with {estimates}",
    "{co} {period} {profit} matches {estimates}",
    "{co} {good_metric} {flat} in {period}",
    "{co} {bad_metric} {flat} in {period}",
    "{co} {keep} {year} {guidance}",
    "{broker} {keep} {rating_mid} rating on {co}",
    "{broker} initiates coverage of {co} with {rating_mid} rating",
    "{co} declares quarterly dividend of {dividend} per share, unchanged",
    "{co} to present at {conference} conference on {date}",
    "{co} completes previously announced acquisition of {co2}",
    "{co} confirms talks with {co2}, says no decision made",
    "{co} not expected to {cut_base} dividend, analysts say",
    "{co} shares {shares_flat} ahead of {period} results",
    "{co} files annual report with {regulator}",
    "{co} to move headquarters to {city}",
    "{co} prices {money} bond offering",
    "{co} raises {money} in debt sale to refinance notes",
    "Analysts expect {co} to {beat_base} {period} {estimates}",
    "{co} expected to report {period} {good_metric} of {money}",
    "{co} board to review {segment} strategy",
    # Mixed cues that cancel out.
    "{co} {beat} on revenue, {miss} on profit, {keep} {guidance}",
]

_TEMPLATES = {NEGATIVE: _NEGATIVE, NEUTRAL: _NEUTRAL, POSITIVE: _POSITIVE}

# Optional trailing share move, consistent with the label (real wires often add one).
_SHARE_MOVES = {
    NEGATIVE: "; shares {shares_down} {pct2}",
    NEUTRAL: "; shares {shares_flat}",
    POSITIVE: "; shares {shares_up} {pct2}",
}


class _Company(NamedTuple):
    name: str
    ticker: str
    sector: str


def _ticker(prefix: str, suffix: str) -> str:
    consonants = [c for c in prefix.upper()[1:] if c not in "AEIOU"]
    return (prefix[0] + "".join(consonants[:2]) + suffix[0]).upper()


def _companies() -> list[_Company]:
    return [
        _Company(f"{prefix} {suffix}", _ticker(prefix, suffix), sector)
        for sector, details in _SECTORS.items()
        for prefix in _NAME_PREFIXES
        for suffix in details.name_suffixes
    ]


_COMPANIES = _companies()


def _pct(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.randint(2, 40)}%"
    return f"{rng.uniform(0.5, 25):.1f}%"


def _money(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"${rng.randint(20, 950)} million"
    return f"${rng.uniform(1, 30):.1f} billion"


def _period(rng: random.Random) -> str:
    quarter = rng.randint(1, 4)
    return rng.choice([f"Q{quarter}", _PERIOD_WORDS[quarter - 1], "fiscal-year", "half-year"])


def _entity_fields(rng: random.Random) -> dict[str, str]:
    company = rng.choice(_COMPANIES)
    other = rng.choice([c for c in _COMPANIES if c.sector == company.sector and c != company])
    sector = _SECTORS[company.sector]
    year = rng.randint(2019, 2026)
    return {
        # Wires add the ticker now and then; it is a name, not a cue.
        "co": company.name if rng.random() < 0.8 else f"{company.name} ({company.ticker})",
        "co2": other.name,
        "segment": rng.choice(sector.segments),
        "product": rng.choice(sector.products),
        "broker": rng.choice(_BROKERS),
        "regulator": rng.choice(_REGULATORS),
        "person": f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        "role": rng.choice(_ROLES),
        "issue": rng.choice(_ISSUES),
        "conference": rng.choice(_CONFERENCES),
        "city": rng.choice(_CITIES),
        "date": f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}",
        "period": _period(rng),
        "year": str(year),
        "year2": str(year + rng.randint(1, 3)),
        "pct": _pct(rng),
        "pct2": _pct(rng),
        "money": _money(rng),
        "price": f"${rng.randint(8, 480)}",
        "dividend": f"${rng.randint(5, 250) / 100:.2f}",
        "jobs": f"{rng.randint(1, 40) * 250:,}",
    }


def _fill_fields(rng: random.Random) -> dict[str, str]:
    """A value for every template field (unused ones cost a few random draws, nothing else)."""
    fields = _entity_fields(rng)
    fields.update({name: words.pick(rng) for name, words in _WORDS.items()})
    fields["adverb"] = f" {fields['adverb']}" if fields["adverb"] else ""
    # Composite phrases reuse the draws above, so they agree with the rest of the headline.
    jobs, pct, segment = fields["jobs"], fields["pct"], fields["segment"]
    fields["layoffs"] = rng.choice([f"{jobs} jobs", f"{pct} of workforce", f"{jobs} positions"])
    rising, falling = fields["shares_up"], fields["shares_down"]  # plural: "sales rise"
    fields["tailwind"] = rng.choice(
        ["", "", f" on strong {segment} demand", f" as {segment} sales {rising}"]
    )
    fields["headwind"] = rng.choice(
        ["", "", f", citing {rng.choice(_HEADWINDS)}", f" as {segment} sales {falling}"]
    )
    return fields


def _headline(rng: random.Random, label: int) -> str:
    fields = _fill_fields(rng)
    text = rng.choice(_TEMPLATES[label]).format(**fields)
    if rng.random() < 0.25:
        text += " " + rng.choice(_MARKET_CONTEXT)
    if rng.random() < 0.15:
        text += _SHARE_MOVES[label].format(**fields)
    elif rng.random() < 0.1:
        text += rng.choice(_SOURCE_TAGS)
    if rng.random() < 0.1:
        text = rng.choice(_HEADLINE_TAGS) + text
    return text


def make_dataset(n: int = 6000, seed: int = 0) -> list[Example]:
    """``n`` distinct ``(headline, label_id)`` pairs, identical for identical arguments.

    Duplicates are dropped so that a split by index is also a split by text: the
    held-out accuracy then measures generalisation, not memorised headlines.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[Example] = []
    max_attempts = 20 * n  # the template space is far larger; this only guards a bad edit
    for _ in range(max_attempts):
        if len(examples) == n:
            return examples
        label = rng.randrange(len(LABELS))
        text = _headline(rng, label)
        if text not in seen:
            seen.add(text)
            examples.append((text, label))
    raise RuntimeError(f"could only generate {len(examples)} distinct headlines, wanted {n}")


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Disjoint, sorted train and test index lists that together cover ``range(n)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = round(n * test_fraction)
    return sorted(order[n_test:]), sorted(order[:n_test])


def train_test_split(
    examples: Sequence[Example], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    train_idx, test_idx = split_indices(len(examples), test_fraction, seed)
    return [examples[i] for i in train_idx], [examples[i] for i in test_idx]


# --- Tokenizer and vocabulary ---------------------------------------------------------

PAD = "<pad>"  # index 0: padding and unknown tokens, ignored by the model's EmbeddingBag
_TOKEN_RE = re.compile(r"\$?\d[\d,]*(?:\.\d+)?%?|[a-z]+(?:'[a-z]+)?")
_QUARTER_RE = re.compile(r"\bq[1-4]\b")


def _normalise(token: str) -> str:
    # Exact figures never recur between headlines; their kind (a percentage, an amount)
    # does, so numbers collapse to one placeholder per kind.
    if token.startswith("$"):
        return "<money>"
    if token.endswith("%"):
        return "<pct>"
    if token[0].isdigit():
        digits = token.replace(",", "")
        return "<year>" if len(digits) == 4 and digits[:2] in ("19", "20") else "<num>"
    return token


def tokenize(text: str) -> list[str]:
    """Lower-cased words and normalised numbers, followed by adjacent-word bigrams.

    Bigrams ("fails_to", "to_beat") give a bag-of-words model the local word order it
    needs for negation.
    """
    lowered = _QUARTER_RE.sub("quarter", text.lower())
    words = [_normalise(token) for token in _TOKEN_RE.findall(lowered)]
    bigrams = [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    return words + bigrams


def build_vocab(texts: Iterable[str], min_freq: int = 1, max_size: int = 20000) -> dict[str, int]:
    """Token -> id for the ``max_size - 1`` most frequent tokens; id 0 is :data:`PAD`."""
    counts = Counter(token for text in texts for token in tokenize(text))
    # Sorting ties by token keeps the vocabulary identical across processes and runs.
    ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    vocab = {PAD: 0}
    for token in ranked[: max_size - 1]:
        vocab[token] = len(vocab)
    return vocab


def encode(text: str, vocab: dict[str, int]) -> list[int]:
    """Token ids of ``text``; tokens outside the vocabulary map to 0 (ignored by the model)."""
    return [vocab.get(token, 0) for token in tokenize(text)]
