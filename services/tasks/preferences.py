"""A helpfulness/harmlessness preference dataset that the project builds itself, for the reward model.

Each row is one comparison, the shape Bradley–Terry reward-model training reads::

    {"prompt": ..., "chosen": ..., "rejected": ..., "kind": "helpful" | "harmless", "topic": ...}

* **helpful** pairs: a benign request (a how-to, an explanation, a capital, a recommendation, an
  arithmetic word problem, a unit conversion). `chosen` is a relevant, specific, polite answer;
  `rejected` is one of the failure modes in `HELPFUL_FAILURES`: an unhelpful refusal of a benign
  request, a vague non-answer, a rude reply (sometimes rude *and* correct), off-topic chatter, a good
  answer to a different request of the same category, or a truncated answer.
* **harmless** pairs: a harmful request (weapons, hacking someone, self-harm, fraud, drugs, ...;
  mild and non-operational, see `preference_vocab`). `chosen` is a refusal with a helpful redirect;
  `rejected` complies with a placeholder answer whose "steps" are vague and say nothing usable.

The data is built so that no single surface feature separates the two sides: refusals are *rejected*
for benign requests and *chosen* for harmful ones, so "contains a refusal" is no shortcut; "Sure,
here is how to ..." opens good answers and compliant ones alike; and both sides come in short and
long forms, so "the longer answer wins" is near chance (the unit tests check it on the held-out
split). What separates them is whether the response fits the request.

Everything is a pure function of `(n, seed)`: a seeded `random.Random` picks topics, templates and
numbers. `split_pairs` splits by *topic* (a how-to task, a term, a country, a harmful request), so
held-out accuracy measures generalisation to requests the model never trained on. One leak is
accepted: the "other topic" failure reuses the answer material of another topic of the same
category, which may be a held-out one; it appears only as a *rejected* response to a different prompt.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

from services.tasks import preference_vocab as vocab
from services.tasks.datasets import read_jsonl, write_jsonl

PAIR_FIELDS = ("prompt", "chosen", "rejected", "kind", "topic")
KINDS = ("helpful", "harmless")
HELPFUL_FAILURES = ("refusal", "vague", "rude", "off_topic", "other_topic", "truncated")
# Share of harmless pairs; the rest are helpful.
HARMLESS_SHARE = 0.4
# Request phrasings shared by benign how-tos and harmful requests, so the phrasing says nothing.
ASK = (
    "How do I {x}?",
    "What's the best way to {x}?",
    "Can you tell me how to {x}?",
    "I want to {x}. Any advice?",
    "Give me step-by-step instructions to {x}.",
    "Quick question: how should I {x}?",
    "Please explain how to {x}.",
    "I need to {x} this week. Where do I start?",
)
_SECOND_PERSON = {
    "i": "you", "my": "your", "me": "you", "myself": "yourself", "mine": "yours", "i'm": "you're",
}  # fmt: skip


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _you(phrase: str) -> str:
    """A first-person request phrase in the assistant's voice: "hide my phone" -> "hide your phone"."""
    return " ".join(_SECOND_PERSON.get(word.lower(), word) for word in phrase.split(" "))


# --- benign requests: each category renders (prompt, specific answer) and names what was asked ---------


def _howto(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    task, s1, s2, s3, tip = entry
    vp = _you(task)
    answer = rng.choice(
        (
            f"Sure, here is how to {vp}. First, {s1}. Next, {s2}. Finally, {s3}. Tip: {tip}.",
            f"Here's a simple approach:\n1. {_cap(s1)}.\n2. {_cap(s2)}.\n3. {_cap(s3)}.\nHope that helps!",
            f"Good question! {_cap(s1)}, then {s2}. After that, {s3}. One more thing: {tip}.",
            f"{_cap(s1)}. Then {s2}, and {s3}.",
            f"Happy to help. To {vp}, {s1}; {s2}; and finally {s3}. Let me know if you'd like more detail.",
            f"{_cap(s1)}, {s2}, and {s3}. {_cap(tip)}.",
        )
    )
    return rng.choice(ASK).format(x=task), answer


def _define(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    term, definition, example = entry
    prompt = rng.choice(
        (
            "What is {t}?",
            "Can you explain {t} simply?",
            "Explain {t} to a beginner.",
            "I keep hearing about {t}. What is it?",
            "Define {t}, please.",
        )
    ).format(t=term)
    answer = rng.choice(
        (
            f"{_cap(term)} is {definition}. For example, {example}.",
            f"Simply put, {term} is {definition}. A common example: {example}.",
            f"Great question! {_cap(term)} is {definition}.",
            f"{_cap(term)} is {definition}. To picture it, {example}. Does that help?",
            f"In short: {definition}. For instance, {example}.",
        )
    )
    return prompt, answer


def _capital(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    country, capital, continent = entry
    prompt = rng.choice(
        (
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "Quick geography question: what's the capital of {c}?",
            "I always forget: what is the capital city of {c}?",
        )
    ).format(c=country)
    answer = rng.choice(
        (
            f"The capital of {country} is {capital}.",
            f"{capital} is the capital of {country}, which is in {continent}.",
            f"Sure! The capital city of {country} is {capital}.",
            f"It's {capital}. {_cap(country)} is in {continent}, and {capital} is its capital city.",
            f"{capital} is the answer: it's the capital of {country}. Happy to tell you more about it!",
        )
    )
    return prompt, answer


def _recommend(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    thing, audience, first, why_first, second, why_second = entry
    prompt = rng.choice(
        (
            "Can you recommend {t} for {a}?",
            "I'm looking for {t} for {a}. What would you suggest?",
            "What would you recommend as {t} for {a}?",
            "Any suggestions for {t} for {a}?",
        )
    ).format(t=thing, a=audience)
    aud = _you(audience)
    answer = rng.choice(
        (
            f"For {aud}, I'd suggest {first}: {why_first}. "
            f"Another good option is {second}, because {why_second}.",
            f"I'd go with {first}, since {why_first}. If that doesn't suit, try {second}: {why_second}.",
            f"Try {first}. {_cap(why_first)}.",
            f"Great question! {_cap(first)} is a lovely choice because {why_first}. "
            f"You might also like {second}, as {why_second}. Enjoy!",
        )
    )
    return prompt, answer


def _word_problem(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    items, place = entry
    name = rng.choice(vocab.NAMES)
    shape = rng.choice(("add", "multiply", "share"))
    if shape == "add":
        a, b = rng.randint(3, 40), rng.randint(2, 30)
        c = rng.randint(1, a + b - 1)
        ans = a + b - c
        problem = (
            f"{name} has {a} {items}. {name} gets {b} more {place} and then gives {c} away. "
            f"How many {items} does {name} have now?"
        )
        answer = rng.choice(
            (
                f"{name} starts with {a} {items}. After getting {b} more, {name} has {a} + {b} = {a + b}. "
                f"Giving away {c} leaves {a + b} - {c} = {ans}. So {name} has {ans} {items}.",
                f"{a} + {b} - {c} = {ans}, so {name} ends up with {ans} {items}.",
            )
        )
    else:
        k, m = rng.randint(2, 9), rng.randint(2, 12)
        t = k * m
        if shape == "multiply":
            problem = (
                f"{name} buys {k} bags of {items} {place}, with {m} in each bag. "
                f"How many {items} is that altogether?"
            )
            answer = rng.choice(
                (
                    f"There are {k} bags with {m} {items} each, so the total is {k} × {m} = {t} {items}.",
                    f"{k} × {m} = {t}. {name} has {t} {items} altogether.",
                )
            )
        else:
            problem = (
                f"{name} has {t} {items} and shares them equally among {k} friends. How many does each get?"
            )
            answer = rng.choice(
                (
                    f"Sharing {t} {items} equally among {k} friends gives {t} ÷ {k} = {m} each.",
                    f"Each friend gets {m} {items}, because {k} × {m} = {t}.",
                )
            )
    prefix = rng.choice(("", "Can you solve this? ", "Help me with my homework: ", "Maths question: "))
    return prefix + problem, answer


def _convert(entry: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    big, big_one, small, factor_text = entry
    n, factor = rng.randint(2, 12), int(factor_text)
    total = n * factor
    prompt = rng.choice(
        ("How many {s} are there in {n} {b}?", "Convert {n} {b} to {s}, please.", "What is {n} {b} in {s}?")
    ).format(s=small, n=n, b=big)
    answer = rng.choice(
        (
            f"There are {factor} {small} in one {big_one}, so {n} {big} is {n} × {factor} = {total} {small}.",
            f"{total} {small}. Each {big_one} is {factor} {small}, and {n} × {factor} = {total}.",
            f"{n} {big} = {total} {small}.",
        )
    )
    return prompt, answer


# category -> (table, renderer, topic key, "help you <doing>", "<about>" for vague answers)
_BENIGN = {
    "howto": (vocab.HOWTOS, _howto, lambda e: e[0], lambda e: _you(e[0]), lambda e: f"how to {_you(e[0])}"),
    "define": (vocab.DEFINITIONS, _define, lambda e: e[0], lambda e: f"understand {e[0]}", lambda e: e[0]),
    "capital": (
        vocab.CAPITALS, _capital, lambda e: e[0],
        lambda e: f"find the capital of {e[0]}", lambda e: f"the capital of {e[0]}",
    ),
    "recommend": (
        vocab.RECOMMENDATIONS, _recommend, lambda e: f"{e[0]} for {e[1]}",
        lambda e: f"choose {e[0]}", lambda e: f"choosing {e[0]}",
    ),
    "word-problem": (
        vocab.WORD_PROBLEM_ITEMS, _word_problem, lambda e: e[0],
        lambda e: "solve this problem", lambda e: "maths problems like this one",
    ),
    "convert": (
        vocab.CONVERSIONS, _convert, lambda e: f"{e[0]}-{e[2]}",
        lambda e: "convert units", lambda e: "unit conversions",
    ),
}  # fmt: skip

_BENIGN_REDIRECTS = (
    "You could ask a friend or an expert.",
    "A quick web search should turn up some guides.",
    "Your local library may have resources on this.",
    "A professional could advise you better.",
)
_RUDE = (
    "Seriously? Just look it up yourself.",
    "That's a pretty basic question. Figure it out.",
    "Why are you asking me? Use your head.",
    "Not this again. Search the internet like everyone else.",
    "Honestly, if you can't work that out, I can't help you.",
)
_RUDE_OPENERS = ("Ugh, fine.", "Seriously? Okay.", "This is obvious, but whatever.", "Fine, if you must:")
_RUDE_CLOSERS = ("Now stop bothering me.", "Figure things out yourself next time.", "Was that so hard?", "")


def _benign_refusal(doing: str, rng: random.Random) -> str:
    redirect = rng.choice(_BENIGN_REDIRECTS)
    return rng.choice(
        (
            "I'm sorry, but I can't help with that.",
            f"I'm sorry, but I can't help you {doing}. {redirect}",
            f"As an AI assistant, I'm not able to help you {doing}, because it could be risky. "
            "Please ask a qualified professional instead.",
            "Unfortunately, that's not something I can assist with. Is there anything else I can do for you?",
            f"I'd rather not help with that one. {redirect}",
            f"I can't help with requests like this, because it could be misused. {redirect}",
        )
    )


def _vague(about: str, rng: random.Random) -> str:
    return rng.choice(
        (
            f"There are many different ways to approach {about}, and the right one really depends on your "
            "situation. It's important to think about what works best for you and to take things one step "
            "at a time. Good luck!",
            f"That's a great question, and people have many different opinions about {about}. In the end, "
            "it's up to you to decide what feels right.",
            "It depends. Everyone does it differently.",
            f"Well, {about} is one of those things you have to figure out as you go. Keep at it and you'll "
            "get there.",
            f"The most important thing with {about} is to stay positive and keep an open mind. There's no "
            "single right answer, and every situation is unique, so trust your instincts.",
            "Hmm, good question! I'd say it's complicated.",
            f"Great question! When it comes to {about}, there's really no one-size-fits-all answer. Some "
            "people swear by one approach, others by something completely different, and honestly both can "
            "work. My advice is to read around, ask people you trust, and go with whatever feels right.",
        )
    )


def _helpful_rejected(
    mode: str, category: str, entry: tuple[str, ...], chosen: str, rng: random.Random
) -> str:
    """The rejected response of a helpful pair for failure `mode` (see `HELPFUL_FAILURES`)."""
    table, render, topic_of, doing_of, about_of = _BENIGN[category]
    words = chosen.split(" ")
    if mode == "truncated" and len(words) < 8:
        mode = "vague"  # too short to cut convincingly
    if mode == "truncated":
        return " ".join(words[: rng.randint(int(len(words) * 0.3), int(len(words) * 0.7))])
    if mode == "refusal":
        return _benign_refusal(doing_of(entry), rng)
    if mode == "vague":
        return _vague(about_of(entry), rng)
    if mode == "rude":
        if rng.random() < 0.5:
            return rng.choice(_RUDE)
        # Rude but correct: the same answer wrapped in contempt still loses to the polite one.
        return " ".join(p for p in (rng.choice(_RUDE_OPENERS), chosen, rng.choice(_RUDE_CLOSERS)) if p)
    if mode == "off_topic":
        return " ".join(rng.sample(vocab.OFF_TOPIC, rng.randint(1, 2)))
    if mode == "other_topic":
        others = [e for e in table if topic_of(e) != topic_of(entry)]
        return render(rng.choice(others), rng)[1]
    raise ValueError(f"unknown helpful failure mode {mode!r}: valid modes are {', '.join(HELPFUL_FAILURES)}")


def _helpful_pair(rng: random.Random, benign: list[tuple[str, tuple[str, ...]]]) -> dict[str, str]:
    category, entry = rng.choice(benign)
    prompt, chosen = _BENIGN[category][1](entry, rng)
    rejected = _helpful_rejected(rng.choice(HELPFUL_FAILURES), category, entry, chosen, rng)
    topic = f"{category}:{_BENIGN[category][2](entry)}"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": "helpful", "topic": topic}


# --- harmful requests: a refusal with a redirect is chosen, compliance is rejected -----------------------

_HARM = {category: (reason, first, second) for category, reason, first, second in vocab.HARM_CATEGORIES}


def _safe_refusal(category: str, request: str, rng: random.Random) -> str:
    reason, first, second = _HARM[category]
    x, redirect = _you(request), rng.choice((first, second))
    if category == "self-harm":
        return rng.choice(
            (
                f"I'm really sorry you're feeling this way, and I can't help you {x}. {redirect}",
                f"It sounds like you're going through something really painful. I won't help you {x}, "
                f"because {reason}. {first} {second}",
                f"I can't help with that, but I don't want you to be alone with this. {redirect}",
                f"Thank you for telling me. I can't help you {x}, but you deserve support. {redirect}",
                f"I'm sorry, but I can't help with that. {redirect}",
            )
        )
    return rng.choice(
        (
            f"I can't help with that, because {reason}. {redirect}",
            f"I'm sorry, but I won't help you {x}. {_cap(reason)}. {redirect}",
            f"I understand you might have your reasons, but I can't give instructions to {x}: {reason}. "
            f"{redirect}",
            f"No, I can't help you {x}. {redirect}",
            f"That's not something I can assist with. {redirect}",
            f"I'm not going to help with this one, because {reason}. {first} {second}",
            "Sorry, I can't do that.",
            "I'm sorry, but I can't help with that.",
        )
    )


def _compliance(category: str, request: str, rng: random.Random) -> str:
    """A compliant answer whose steps are placeholders: it shows willingness, never a method."""
    steps = rng.sample(vocab.COMPLIANCE_STEPS[category], 2) + rng.sample(vocab.GENERIC_COMPLIANCE_STEPS, 1)
    rng.shuffle(steps)
    v1, v2, v3 = steps
    x = _you(request)
    return rng.choice(
        (
            f"Sure, here is how to {x}. First, {v1}. Then {v2}. Finally, {v3}.",
            f"Great question, I know quite a bit about this. To {x}, you'll want to {v1}. After that, {v2}. "
            f"The last part is to {v3}. It takes some practice, but most people manage it on the first or "
            "second try. Let me know if you'd like more detail on any step!",
            f"Sure, here is how to {x}. First, {v1}. Then {v2}. Finally, {v3}. Tip: take your time and "
            "don't tell anyone what you're planning, so nobody can get in your way.",
            f"Absolutely! The trick is to {v1} and then {v2}. [Specific details omitted.]",
            f"No problem. Step 1: {v1}. Step 2: {v2}. Step 3: {v3}. Good luck, and don't get caught!",
            f"I shouldn't really say this, but here goes: {v1}, then {v2}.",
            f"This is illegal, so be careful. {_cap(v1)}, {v2}, and {v3}.",
            f"Easy. {_cap(v1)} and you're done.",
            f"Here's a simple approach:\n1. {_cap(v1)}.\n2. {_cap(v2)}.\n3. {_cap(v3)}.\nHope that helps!",
            f"Happy to help. To {x}, {v1}; {v2}; and finally {v3}. Let me know if you'd like more detail.",
        )
    )


def _harmless_pair(rng: random.Random) -> dict[str, str]:
    category, request = rng.choice(vocab.HARMFUL_REQUESTS)
    prompt = rng.choice(ASK).format(x=request)
    chosen = _safe_refusal(category, request, rng)
    rejected = _compliance(category, request, rng)
    topic = f"harm:{category}:{request}"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": "harmless", "topic": topic}


# --- the dataset, its split and its files -----------------------------------------------------------------


def build_preference_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """`n` distinct preference rows (no two share prompt, chosen and rejected), deterministic in `seed`."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = random.Random(seed)
    benign = [(category, entry) for category, spec in _BENIGN.items() for entry in spec[0]]
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    max_draws = 50 * n + 1000
    for _ in range(max_draws):
        if len(rows) == n:
            break
        row = _harmless_pair(rng) if rng.random() < HARMLESS_SHARE else _helpful_pair(rng, benign)
        key = (row["prompt"], row["chosen"], row["rejected"])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} distinct pairs after {max_draws} draws; ask for fewer than n={n}")
    return rows


def topics_of(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The distinct topics of `rows`."""
    return {row["topic"] for row in rows}


def split_pairs(
    rows: list[dict[str, str]], heldout_fraction: float, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, heldout) split by topic: a held-out topic never appears in train. Order is kept.

    Each kind is split on its own, so both kinds are in both splits: `heldout_fraction` of each kind's
    topics (rounded, at least one, never all) go to held-out. The split is a pure function of the set
    of topics and `seed`.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be strictly between 0 and 1, got {heldout_fraction}")
    heldout_topics: set[str] = set()
    for kind in KINDS:
        topics = sorted({row["topic"] for row in rows if row["kind"] == kind})
        if len(topics) < 2:
            continue  # one topic cannot be split; it stays in train
        random.Random(f"{seed}/{kind}").shuffle(topics)
        count = min(len(topics) - 1, max(1, round(heldout_fraction * len(topics))))
        heldout_topics.update(topics[:count])
    train = [row for row in rows if row["topic"] not in heldout_topics]
    heldout = [row for row in rows if row["topic"] in heldout_topics]
    return train, heldout


def check_pair_row(row: Any, where: str) -> dict[str, str]:
    """`row` as a plain dict of `PAIR_FIELDS`; ValueError naming `where` and the field when it is not one."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object with fields {list(PAIR_FIELDS)}, got {row!r:.80}")
    out = {}
    for name in PAIR_FIELDS:
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (every row needs {list(PAIR_FIELDS)})")
        value = row[name]
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"{where}: field {name!r} must not be empty")
        out[name] = value
    if out["kind"] not in KINDS:
        raise ValueError(f"{where}: field 'kind' must be one of {list(KINDS)}, got {out['kind']!r}")
    if out["chosen"] == out["rejected"]:
        raise ValueError(f"{where}: fields 'chosen' and 'rejected' are identical; a pair needs two responses")
    return out


def write_pairs(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write validated `rows` to `path` atomically (temp file + rename); return the number written."""
    return write_jsonl(path, [check_pair_row(row, f"row {i}") for i, row in enumerate(rows)])


def read_pairs(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read and validate a preference JSONL file; blank lines are skipped, every other line is a full row."""
    return read_jsonl(path, check_pair_row)
