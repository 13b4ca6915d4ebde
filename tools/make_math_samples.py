"""Write the shipped sample math files: data/tasks/gsm8k_sample.jsonl and data/tasks/math_sample.jsonl.

They let `task=dataset` run out of the box, with no download, on files shaped exactly like the public
sets: GSM8K rows ({"question", "answer": reasoning with <<a*b=c>> calculator annotations, then
"#### N"}) and MATH rows ({"problem", "solution": worked text ending in \\boxed{...}, "level", "type"}).
The problems are templated from random numbers: grade-school word problems of two or three steps, and
fraction and equation exercises whose answers are fractions ("\\frac{7}{12}"), so that math-verify's
equivalence (7/12 = \\frac{7}{12}) matters. Everything is ASCII and short, because the default policy
reads characters.

The defaults reproduce the checked-in files byte for byte (a unit test compares them), so the data is
a build product of this script, never hand-edited:

    python tools/make_math_samples.py            # rewrite data/tasks/ from the defaults
    python tools/make_math_samples.py --check    # fail when the shipped files differ from the defaults
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import random
import sys
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

from services.tasks.datasets import write_jsonl  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "tasks"
GSM8K_FILE, MATH_FILE = "gsm8k_sample.jsonl", "math_sample.jsonl"
DEFAULT_GSM8K_N, DEFAULT_MATH_N = 300, 100
DEFAULT_SEED = 0

log = logging.getLogger("make_math_samples")

NAMES = ("Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kim", "Leo", "Mia", "Ned")
# Each name's pronoun, so "She gives away..." reads right.
PRONOUN = dict(
    zip(NAMES, ("she", "he", "she", "he", "she", "he", "she", "he", "she", "he", "she", "he", "she", "he"))
)


def _step(text: str, expr: str, value: int) -> str:
    """One GSM8K reasoning line: "... 3*4 = <<3*4=12>>12 ..." where `text` has {calc} for the calculation."""
    return text.format(calc=f"{expr} = <<{expr}={value}>>{value}")


def _who(rng: random.Random) -> tuple[str, str, str]:
    """A name, its pronoun, and the pronoun capitalised."""
    name = rng.choice(NAMES)
    return name, PRONOUN[name], PRONOUN[name].capitalize()


# --- GSM8K-style word problems: each returns (question, reasoning lines, answer) ----------------------


def _pencils(rng):
    name, p, cap = _who(rng)
    a, b = rng.randint(2, 9), rng.randint(3, 12)
    c = rng.randint(1, a * b - 1)
    q = (
        f"{name} buys {a} boxes of pencils with {b} pencils in each box. "
        f"{cap} gives away {c}. How many pencils are left?"
    )
    return (
        q,
        [
            _step("{calc} pencils in all.", f"{a}*{b}", a * b),
            _step("{calc} are left.", f"{a * b}-{c}", a * b - c),
        ],
        a * b - c,
    )


def _wages(rng):
    name, p, _ = _who(rng)
    a, b, c = rng.randint(5, 20), rng.randint(2, 8), rng.randint(2, 6)
    q = f"{name} earns ${a} an hour and works {b} hours a day. How much does {p} earn in {c} days?"
    return (
        q,
        [
            _step("In a day: {calc} dollars.", f"{a}*{b}", a * b),
            _step("In all: {calc} dollars.", f"{a * b}*{c}", a * b * c),
        ],
        a * b * c,
    )


def _stickers(rng):
    name, p, cap = _who(rng)
    a, b = 2 * rng.randint(5, 40), rng.randint(2, 30)
    q = (
        f"{name} had {a} stickers. "
        f"{cap} gave half to a friend and then bought {b} more. How many stickers does {p} have now?"
    )
    return (
        q,
        [
            _step("{calc} after giving half away.", f"{a}/2", a // 2),
            _step("{calc} now.", f"{a // 2}+{b}", a // 2 + b),
        ],
        a // 2 + b,
    )


def _shop(rng):
    name, p, _ = _who(rng)
    a, b, c = rng.randint(2, 9), rng.randint(3, 15), rng.randint(2, 6)
    q = (
        f"A pen costs ${a} and a notebook costs ${b}. "
        f"{name} buys {c} pens and one notebook. How much does {p} spend?"
    )
    return (
        q,
        [
            _step("The pens cost {calc} dollars.", f"{c}*{a}", a * c),
            _step("In all: {calc} dollars.", f"{a * c}+{b}", a * c + b),
        ],
        a * c + b,
    )


def _bus(rng):
    a = rng.randint(10, 50)
    b, c = rng.randint(1, a - 1), rng.randint(1, 30)
    q = (
        f"A bus has {a} people on it. "
        f"At the first stop {b} get off and {c} get on. How many people are on the bus now?"
    )
    lines = [
        _step(f"After {b} get off: {{calc}}.", f"{a}-{b}", a - b),
        _step("Now: {calc}.", f"{a - b}+{c}", a - b + c),
    ]
    return q, lines, a - b + c


def _garden(rng):
    name, _, _ = _who(rng)
    a, b = rng.randint(2, 9), rng.randint(4, 12)
    c = rng.randint(1, a * b - 1)
    q = (
        f"{name} plants {a} rows of {b} tomato plants. {c} of the plants die. "
        f"How many tomato plants are left?"
    )
    return (
        q,
        [_step("{calc} plants.", f"{a}*{b}", a * b), _step("{calc} are left.", f"{a * b}-{c}", a * b - c)],
        a * b - c,
    )


def _reading(rng):
    name, _, _ = _who(rng)
    a, b = rng.randint(5, 30), rng.randint(2, 7)
    c = a * b + rng.randint(10, 120)
    q = f"{name} reads {a} pages a day for {b} days. The book has {c} pages. How many pages are left to read?"
    return (
        q,
        [
            _step("{calc} pages read.", f"{a}*{b}", a * b),
            _step("{calc} pages left.", f"{c}-{a * b}", c - a * b),
        ],
        c - a * b,
    )


def _cookies(rng):
    name, _, _ = _who(rng)
    c, k, b = rng.randint(2, 8), rng.randint(2, 9), rng.randint(1, 12)
    a = b + c * k
    q = (
        f"{name} bakes {a} cookies, eats {b}, "
        f"and shares the rest equally among {c} friends. How many cookies does each friend get?"
    )
    return (
        q,
        [_step("{calc} cookies to share.", f"{a}-{b}", a - b), _step("Each gets {calc}.", f"{a - b}/{c}", k)],
        k,
    )


def _savings(rng):
    name, p, _ = _who(rng)
    a, b = rng.randint(3, 20), rng.randint(3, 10)
    c = rng.randint(1, a * b - 1)
    q = f"{name} saves ${a} each week. After {b} weeks {p} spends ${c} on a game. How much money is left?"
    return (
        q,
        [
            _step("Saved: {calc} dollars.", f"{a}*{b}", a * b),
            _step("Left: {calc} dollars.", f"{a * b}-{c}", a * b - c),
        ],
        a * b - c,
    )


def _marbles(rng):
    name, _, _ = _who(rng)
    other = rng.choice([n for n in NAMES if n != name])
    a, b = rng.randint(5, 40), rng.randint(2, 20)
    q = (
        f"{name} has {a} marbles. {other} has {b} more marbles than {name}. "
        f"How many marbles do they have together?"
    )
    lines = [
        _step(f"{other} has {{calc}}.", f"{a}+{b}", a + b),
        _step("Together: {calc}.", f"{a}+{a + b}", 2 * a + b),
    ]
    return q, lines, 2 * a + b


def _balloons(rng):
    name, _, _ = _who(rng)
    a, m = rng.randint(2, 15), rng.randint(2, 4)
    word = {2: "twice", 3: "three times", 4: "four times"}[m]
    q = (
        f"{name} has {a} red balloons and {word} as many blue balloons. "
        f"How many balloons does {name} have in all?"
    )
    return (
        q,
        [_step("Blue: {calc}.", f"{a}*{m}", a * m), _step("In all: {calc}.", f"{a}+{a * m}", a + a * m)],
        a + a * m,
    )


def _apples(rng):
    b, k, c = rng.randint(3, 8), rng.randint(2, 9), rng.randint(2, 6)
    a = b * k
    q = (
        f"A farmer picks {a} apples, puts them in bags of {b}, "
        f"and sells each bag for ${c}. How much money does he make?"
    )
    return (
        q,
        [_step("{calc} bags.", f"{a}/{b}", k), _step("He makes {calc} dollars.", f"{k}*{c}", k * c)],
        k * c,
    )


def _pizza(rng):
    a, b = rng.randint(2, 5), rng.choice([6, 8, 10, 12])
    n = rng.choice([d for d in range(2, 9) if (a * b) % d == 0])
    k = a * b // n
    q = f"{n} friends share {a} pizzas. Each pizza has {b} slices. How many slices does each friend get?"
    return (
        q,
        [_step("{calc} slices.", f"{a}*{b}", a * b), _step("Each friend gets {calc}.", f"{a * b}/{n}", k)],
        k,
    )


def _class(rng):
    a = rng.randint(15, 35)
    b, c = rng.randint(3, a - 3), rng.randint(2, 5)
    q = (
        f"A class has {a} students and {b} of them are boys. "
        f"Each girl gets {c} pencils. How many pencils do the girls get?"
    )
    return (
        q,
        [_step("{calc} girls.", f"{a}-{b}", a - b), _step("{calc} pencils.", f"{a - b}*{c}", (a - b) * c)],
        (a - b) * c,
    )


def _running(rng):
    name, p, _ = _who(rng)
    a, b, c = rng.randint(2, 9), rng.randint(2, 5), rng.randint(5, 15)
    q = f"{name} runs {a} km on each of {b} weekdays and {c} km on Sunday. How many km does {p} run in all?"
    return (
        q,
        [
            _step("Weekdays: {calc} km.", f"{a}*{b}", a * b),
            _step("In all: {calc} km.", f"{a * b}+{c}", a * b + c),
        ],
        a * b + c,
    )


def _eggs(rng):
    a, b = rng.randint(3, 12), rng.randint(2, 6)
    c = rng.randint(1, a * b // 2)
    d = rng.randint(1, a * b - c)
    q = f"{a} hens lay {b} eggs each. {c} eggs break and {d} are sold. How many eggs are left?"
    lines = [
        _step("{calc} eggs laid.", f"{a}*{b}", a * b),
        _step("{calc} after the broken ones.", f"{a * b}-{c}", a * b - c),
        _step("{calc} left.", f"{a * b - c}-{d}", a * b - c - d),
    ]
    return q, lines, a * b - c - d


def _tickets(rng):
    name, p, _ = _who(rng)
    a, b, c, d = rng.randint(2, 6), rng.randint(5, 15), rng.randint(2, 4), rng.randint(3, 10)
    q = f"{name} buys {a} adult tickets at ${b} and {c} child tickets at ${d}. How much does {p} pay?"
    lines = [
        _step("Adults: {calc} dollars.", f"{a}*{b}", a * b),
        _step("Children: {calc} dollars.", f"{c}*{d}", c * d),
        _step("In all: {calc} dollars.", f"{a * b}+{c * d}", a * b + c * d),
    ]
    return q, lines, a * b + c * d


GSM8K_TEMPLATES: tuple[Callable, ...] = (
    _pencils, _wages, _stickers, _shop, _bus, _garden, _reading, _cookies,
    _savings, _marbles, _balloons, _apples, _pizza, _class, _running, _eggs, _tickets,
)  # fmt: skip


def gsm8k_rows(n: int = DEFAULT_GSM8K_N, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """`n` distinct GSM8K-format rows, the templates taken in turn, numbers drawn from `seed`."""
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        question, lines, answer = GSM8K_TEMPLATES[len(rows) % len(GSM8K_TEMPLATES)](rng)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"question": question, "answer": "\n".join(lines) + f"\n#### {answer}"})
    return rows


# --- MATH-style exercises: each returns (problem, solution, level, type) -----------------------------


def tex(value: Fraction) -> str:
    """`value` as MATH writes an answer: "3", "\\frac{7}{12}", "-\\frac{1}{2}"."""
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _proper(rng: random.Random, top: int = 9) -> Fraction:
    """A fraction a/b with 1 <= a < b <= top, not reducible to an integer."""
    b = rng.randint(2, top)
    return Fraction(rng.randint(1, b - 1), b)


def _frac_add(rng):
    x, y = _proper(rng), _proper(rng)
    xs, ys = f"\\frac{{{x.numerator}}}{{{x.denominator}}}", f"\\frac{{{y.numerator}}}{{{y.denominator}}}"
    d = x.denominator * y.denominator
    num = x.numerator * y.denominator + y.numerator * x.denominator
    problem = f"Compute ${xs} + {ys}$. Express your answer in simplest form."
    solution = f"Over a common denominator, ${xs} + {ys} = \\frac{{{num}}}{{{d}}} = \\boxed{{{tex(x + y)}}}$."
    return problem, solution, "Level 1", "Prealgebra"


def _frac_sub(rng):
    x, y = sorted((_proper(rng), _proper(rng)), reverse=True)
    if x == y:
        y = Fraction(y.numerator, y.denominator + 1)
    xs, ys = f"\\frac{{{x.numerator}}}{{{x.denominator}}}", f"\\frac{{{y.numerator}}}{{{y.denominator}}}"
    d = x.denominator * y.denominator
    num = x.numerator * y.denominator - y.numerator * x.denominator
    problem = f"Compute ${xs} - {ys}$. Express your answer in simplest form."
    solution = f"Over a common denominator, ${xs} - {ys} = \\frac{{{num}}}{{{d}}} = \\boxed{{{tex(x - y)}}}$."
    return problem, solution, "Level 1", "Prealgebra"


def _frac_mul(rng):
    x, y = _proper(rng), _proper(rng)
    xs, ys = f"\\frac{{{x.numerator}}}{{{x.denominator}}}", f"\\frac{{{y.numerator}}}{{{y.denominator}}}"
    num, d = x.numerator * y.numerator, x.denominator * y.denominator
    problem = f"Compute ${xs} \\cdot {ys}$."
    solution = f"Multiply across: ${xs} \\cdot {ys} = \\frac{{{num}}}{{{d}}} = \\boxed{{{tex(x * y)}}}$."
    return problem, solution, "Level 1", "Prealgebra"


def _linear(rng):
    a = rng.randint(2, 9)
    b, c = rng.randint(-9, 9), rng.randint(-9, 20)
    x = Fraction(c - b, a)
    lhs = f"{a}x + {b}" if b >= 0 else f"{a}x - {-b}"
    move = f"Subtracting {b} from" if b >= 0 else f"Adding {-b} to"
    problem = f"Solve for $x$: ${lhs} = {c}$."
    solution = f"{move} both sides gives ${a}x = {c - b}$, so $x = \\boxed{{{tex(x)}}}$."
    return problem, solution, "Level 2", "Algebra"


def _part_of(rng):
    x = _proper(rng)
    n = rng.randint(2, 30)
    xs = f"\\frac{{{x.numerator}}}{{{x.denominator}}}"
    problem = f"What is ${xs}$ of ${n}$?"
    solution = (
        f"${xs} \\cdot {n} = \\frac{{{x.numerator * n}}}{{{x.denominator}}} = \\boxed{{{tex(x * n)}}}$."
    )
    return problem, solution, "Level 1", "Prealgebra"


def _simplify(rng):
    x = _proper(rng, top=12)
    k = rng.randint(2, 9)
    m, n = x.numerator * k, x.denominator * k
    problem = f"Simplify $\\frac{{{m}}}{{{n}}}$."
    solution = f"Both {m} and {n} are divisible by {k}, so $\\frac{{{m}}}{{{n}}} = \\boxed{{{tex(x)}}}$."
    return problem, solution, "Level 1", "Number Theory"


def _mean(rng):
    values = [rng.randint(1, 20) for _ in range(3)]
    total = sum(values)
    mean = Fraction(total, 3)
    listed = ", ".join(map(str, values))
    problem = f"What is the mean of {listed}?"
    solution = (
        f"The sum is {'+'.join(map(str, values))} = {total}, "
        f"so the mean is $\\frac{{{total}}}{{3}} = \\boxed{{{tex(mean)}}}$."
    )
    return problem, solution, "Level 2", "Prealgebra"


def _proportion(rng):
    a, b, c = rng.randint(2, 9), rng.randint(1, 9), rng.randint(2, 9)
    x = Fraction(a * b, c)
    problem = f"If $\\frac{{x}}{{{a}}} = \\frac{{{b}}}{{{c}}}$, what is $x$?"
    solution = f"Multiplying both sides by {a} gives $x = \\frac{{{a * b}}}{{{c}}} = \\boxed{{{tex(x)}}}$."
    return problem, solution, "Level 2", "Algebra"


def _reciprocals(rng):
    a, b = rng.sample(range(2, 10), 2)
    total = Fraction(1, a) + Fraction(1, b)
    problem = f"Compute $\\frac{{1}}{{{a}}} + \\frac{{1}}{{{b}}}$."
    solution = (
        f"$\\frac{{1}}{{{a}}} + \\frac{{1}}{{{b}}} = \\frac{{{a + b}}}{{{a * b}}} = \\boxed{{{tex(total)}}}$."
    )
    return problem, solution, "Level 1", "Prealgebra"


def _divide(rng):
    x, y = _proper(rng), _proper(rng)
    xs, ys = f"\\frac{{{x.numerator}}}{{{x.denominator}}}", f"\\frac{{{y.numerator}}}{{{y.denominator}}}"
    flipped = f"\\frac{{{y.denominator}}}{{{y.numerator}}}"
    problem = f"Compute ${xs} \\div {ys}$."
    solution = (
        f"Dividing is multiplying by the reciprocal: ${xs} \\cdot {flipped} = \\boxed{{{tex(x / y)}}}$."
    )
    return problem, solution, "Level 2", "Prealgebra"


MATH_TEMPLATES: tuple[Callable, ...] = (
    _frac_add, _frac_sub, _frac_mul, _linear, _part_of, _simplify, _mean, _proportion, _reciprocals, _divide,
)  # fmt: skip


def math_rows(n: int = DEFAULT_MATH_N, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """`n` distinct MATH-format rows, the templates taken in turn, numbers drawn from `seed`."""
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        problem, solution, level, kind = MATH_TEMPLATES[len(rows) % len(MATH_TEMPLATES)](rng)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append({"problem": problem, "solution": solution, "level": level, "type": kind})
    return rows


def write_samples(out_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Write both sample files under `out_dir`; return rows written per file."""
    return {
        GSM8K_FILE: write_jsonl(out_dir / GSM8K_FILE, gsm8k_rows(DEFAULT_GSM8K_N, seed)),
        MATH_FILE: write_jsonl(out_dir / MATH_FILE, math_rows(DEFAULT_MATH_N, seed)),
    }


def _same(fresh: Path, shipped: Path) -> bool:
    return shipped.is_file() and filecmp.cmp(fresh, shipped, shallow=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.check:
        counts = write_samples(args.out, args.seed)
        log.info("wrote %s under %s", counts, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write_samples(Path(tmp), args.seed)
        names = (GSM8K_FILE, MATH_FILE)
        stale = [name for name in names if not _same(Path(tmp) / name, args.out / name)]
    if stale:
        log.error("%s differ from the generator; run `python tools/make_math_samples.py`", stale)
        return 1
    log.info("%s are up to date", [GSM8K_FILE, MATH_FILE])
    return 0


if __name__ == "__main__":
    sys.exit(main())
