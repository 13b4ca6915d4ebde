"""Synthetic multi-digit addition: the task a tiny policy can learn to reason about on a CPU.

Every split is a pure function of the `TaskConfig` (``cfg.seed`` and the sizes), so a run, its
evaluation and a resumed run all see the same prompts without storing them. The three splits are
pairwise disjoint by the *unordered* operand pair: "47+85" and "85+47" are one problem, and a
held-out problem never appears in train or cold_start in either order. Cold-start is disjoint from
train as well (not only from held-out), so the SFT warm-up never pre-teaches an RL prompt and the three
splits can be reasoned about independently.

Splits are drawn in the order held-out, cold-start, train from one seeded generator, so growing
``train_size`` never changes the held-out set or the cold-start pool (as long as the draw strategy
stays the same, see `_draw_pairs`).

``cold_start_digits`` gives the cold-start pool a digit range of its own (say 1-2 digit operands while
RL and the held-out set use 1-3): then held-out and train are drawn first from the task's range, and the
pool from its own range with a generator of its own, skipping every pair already drawn.

`worked_solution` writes the chain of thought a cold-start example teaches: column addition from the
right, one line per column, in the R1 ``<think>...</think><answer>...</answer>`` format. It is kept
short because the default policy tokenizes characters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from services.tasks.problem import Problem

SPLITS = ("train", "heldout", "cold_start")
# Prompt-id prefix of each split: "train-000123", "heldout-000007", "cold-000042".
_ID_PREFIX = {"train": "train", "heldout": "heldout", "cold_start": "cold"}
# Draw the whole space and shuffle it when more than this share of it is requested; below it, rejection
# sampling is fast and never materialises the (possibly huge) space of pairs.
_ENUMERATE_ABOVE_FRACTION = 0.25


@dataclass(frozen=True)
class AdditionProblem:
    """One addition problem; `prompt_id` is unique within its split and stable across runs."""

    prompt_id: str
    a: int
    b: int

    @property
    def question(self) -> str:
        """The problem as the prompt shows it, for example "47+85"."""
        return f"{self.a}+{self.b}"

    @property
    def answer(self) -> str:
        """The reference answer the verifier compares against, as text."""
        return str(self.a + self.b)


def worked_solution(problem: AdditionProblem) -> str:
    """Chain-of-thought completion for `problem`: column addition from the right.

    For 47+85 this is::

        <think>7+5=12 write 2 carry 1
        4+8+1=13 write 3 carry 1
        final carry 1
        result 132</think><answer>132</answer>

    A column with a carry-in shows it as "+1"; a missing digit of the shorter operand counts as 0; the
    "final carry" line appears only when the last column carries.
    """
    if problem.a < 0 or problem.b < 0:
        raise ValueError(f"worked_solution: operands must be non-negative, got {problem.a} and {problem.b}")
    digits_a, digits_b = str(problem.a)[::-1], str(problem.b)[::-1]
    lines = []
    carry = 0
    for i in range(max(len(digits_a), len(digits_b))):
        da = int(digits_a[i]) if i < len(digits_a) else 0
        db = int(digits_b[i]) if i < len(digits_b) else 0
        total = da + db + carry
        terms = f"{da}+{db}+{carry}" if carry else f"{da}+{db}"
        carry = total // 10
        lines.append(f"{terms}={total} write {total % 10} carry {carry}")
    if carry:
        lines.append(f"final carry {carry}")
    lines.append(f"result {problem.answer}")
    think = "\n".join(lines)
    return f"<think>{think}</think><answer>{problem.answer}</answer>"


def validate_task_config(cfg: Any) -> None:
    """Raise ValueError naming the field when `cfg` (a TaskConfig) cannot produce its splits."""
    for name in ("min_digits", "max_digits", "train_size", "heldout_size", "cold_start_size", "seed"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"task.{name} must be an integer, got {value!r}")
    if cfg.cold_start_solution not in SOLUTIONS:
        raise ValueError(
            f"task.cold_start_solution must be one of {list(SOLUTIONS)}, got {cfg.cold_start_solution!r}"
        )
    cold = cfg.cold_start_digits
    if cold is not None and (
        len(cold) != 2 or not all(isinstance(d, int) for d in cold) or not 1 <= cold[0] <= cold[1]
    ):
        raise ValueError(f"task.cold_start_digits must be [min, max] with 1 <= min <= max, got {cold!r}")
    if cfg.min_digits < 1:
        raise ValueError(f"task.min_digits must be >= 1, got {cfg.min_digits}")
    if cfg.max_digits < cfg.min_digits:
        raise ValueError(f"task.max_digits ({cfg.max_digits}) must be >= task.min_digits ({cfg.min_digits})")
    for name in ("train_size", "heldout_size", "cold_start_size"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"task.{name} must be >= 0, got {getattr(cfg, name)}")
    requested = cfg.train_size + cfg.heldout_size + cfg.cold_start_size
    available = _num_unordered_pairs(cfg.min_digits, cfg.max_digits)
    if requested > available:
        raise ValueError(
            f"task.train_size + task.heldout_size + task.cold_start_size = {requested} exceeds the "
            f"{available} distinct problems with {cfg.min_digits}..{cfg.max_digits} digit operands; "
            "lower the sizes or raise task.max_digits"
        )


def make_splits(cfg: Any) -> dict[str, list[AdditionProblem]]:
    """Return {"train", "heldout", "cold_start"} problem lists, pairwise disjoint by unordered pair.

    Deterministic in `cfg` (a TaskConfig): the same config always yields the same problems in the same
    order.
    """
    validate_task_config(cfg)
    if cfg.cold_start_digits is not None:
        return _splits_with_own_cold_start_range(cfg)
    sizes = {"heldout": cfg.heldout_size, "cold_start": cfg.cold_start_size, "train": cfg.train_size}
    rng = random.Random(cfg.seed)
    pairs = _draw_pairs(rng, cfg.min_digits, cfg.max_digits, sum(sizes.values()))
    splits: dict[str, list[AdditionProblem]] = {}
    start = 0
    # Held-out first, then cold-start: neither changes when train_size grows (same draw strategy).
    for split, size in sizes.items():
        chunk = pairs[start : start + size]
        start += size
        prefix = _ID_PREFIX[split]
        splits[split] = [AdditionProblem(f"{prefix}-{i:06d}", a, b) for i, (a, b) in enumerate(chunk)]
    return {name: splits[name] for name in SPLITS}


def _splits_with_own_cold_start_range(cfg: Any) -> dict[str, list[AdditionProblem]]:
    """Held-out then train from the task's digit range, then the pool from `cold_start_digits`."""
    rng = random.Random(cfg.seed)
    pairs = _draw_pairs(rng, cfg.min_digits, cfg.max_digits, cfg.heldout_size + cfg.train_size)
    low, high = cfg.cold_start_digits
    taken = {(min(a, b), max(a, b)) for a, b in pairs}
    lo, hi = _operand_range(low)[0], _operand_range(high)[1]
    taken_in_range = sum(lo <= a and b <= hi for a, b in taken)
    if cfg.cold_start_size > _num_unordered_pairs(low, high) - taken_in_range:
        raise ValueError(
            f"task.cold_start_size={cfg.cold_start_size} may exceed the {low}..{high} digit problems left "
            "after held-out and train; lower it or widen task.cold_start_digits"
        )
    cold = _draw_pairs(random.Random(f"{cfg.seed}/cold_start"), low, high, cfg.cold_start_size, taken)
    chunks = {"heldout": pairs[: cfg.heldout_size], "cold_start": cold, "train": pairs[cfg.heldout_size :]}
    return {
        split: [
            AdditionProblem(f"{_ID_PREFIX[split]}-{i:06d}", a, b) for i, (a, b) in enumerate(chunks[split])
        ]
        for split in SPLITS
    }


def _operand_range(digits: int) -> tuple[int, int]:
    """Smallest and largest operand with exactly `digits` digits (1 digit: 1..9, no zero operand)."""
    return 10 ** (digits - 1), 10**digits - 1


def _num_operands(min_digits: int, max_digits: int) -> int:
    return 10**max_digits - 10 ** (min_digits - 1)


def _num_unordered_pairs(min_digits: int, max_digits: int) -> int:
    n = _num_operands(min_digits, max_digits)
    return n * (n + 1) // 2  # pairs {a, b} with a <= b, a == b allowed


def _draw_pairs(
    rng: random.Random, min_digits: int, max_digits: int, count: int, exclude: set | frozenset = frozenset()
) -> list[tuple[int, int]]:
    """`count` ordered pairs whose unordered versions are all distinct and not in `exclude`.

    Rejection sampling picks each operand's digit count uniformly, then the operand, so short operands
    are as common as long ones. When most of the space is requested, rejection would crawl, so the
    whole space is enumerated and shuffled instead.
    """
    if count > _ENUMERATE_ABOVE_FRACTION * _num_unordered_pairs(min_digits, max_digits):
        lo, hi = _operand_range(min_digits)[0], _operand_range(max_digits)[1]
        space = [(a, b) for a in range(lo, hi + 1) for b in range(a, hi + 1) if (a, b) not in exclude]
        rng.shuffle(space)
        return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in space[:count]]
    seen: set[tuple[int, int]] = set(exclude)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        a = rng.randint(*_operand_range(rng.randint(min_digits, max_digits)))
        b = rng.randint(*_operand_range(rng.randint(min_digits, max_digits)))
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            pairs.append((a, b))
    return pairs


class AdditionTask:
    """The `Task` over `make_splits`: every problem is asked as "What is a+b?" and verified by math-verify;
    cold-start problems carry their `worked_solution`, or with `cold_start_solution="answer"` the sum alone
    (`answer_solution`)."""

    name = "addition"
    accuracy_scorer = "accuracy"

    def __init__(self, cfg: Any) -> None:
        validate_task_config(cfg)
        self.cfg = cfg

    def splits(self) -> dict[str, list[Problem]]:
        return {
            split: [
                _as_problem(p, self.cfg.cold_start_solution if split == "cold_start" else "")
                for p in problems
            ]
            for split, problems in make_splits(self.cfg).items()
        }

    def report(self) -> dict:
        digits = [self.cfg.min_digits, self.cfg.max_digits]
        return {
            "task": self.name,
            "digits": digits,
            "cold_start_digits": list(self.cfg.cold_start_digits or digits),
            "cold_start_solution": self.cfg.cold_start_solution,
        }


def answer_solution(problem: AdditionProblem) -> str:
    """The cold-start completion without reasoning: "<think>47+85</think><answer>132</answer>"."""
    return f"<think>{problem.question}</think><answer>{problem.answer}</answer>"


def mixed_solution(problem: AdditionProblem) -> str:
    """Either kind, alternating over the pool by problem index: even ones worked, odd ones the bare sum."""
    index = int(problem.prompt_id.rsplit("-", 1)[1])
    return worked_solution(problem) if index % 2 == 0 else answer_solution(problem)


SOLUTIONS = {"worked": worked_solution, "answer": answer_solution, "mixed": mixed_solution}


def _as_problem(p: AdditionProblem, solution: str) -> Problem:
    solution = SOLUTIONS[solution](p) if solution else ""
    return Problem(p.prompt_id, f"What is {p.question}?", p.answer, "addition", solution)
