"""Reference answers and worked solutions read out of a dataset's answer text (pure string work).

Public math sets state the answer inside a solution: GSM8K ends its reasoning with "#### 72", MATH
puts it in the last ``\\boxed{...}`` of a worked solution. The reward's math-verify scorer needs the
bare answer as the reference, and the cold start needs the reasoning as an R1 completion
(``<think>...</think><answer>...</answer>``), so both are read here, once, by `answer_format`:

* ``gsm8k``: what follows the last "####" (thousands separators, "$" and a trailing "." removed);
* ``boxed``: the content of the last balanced ``\\boxed{...}``;
* ``plain``: the whole field, stripped (the field holds only the answer);
* ``auto``: gsm8k when there is a "####", else boxed when there is a ``\\boxed{}``, else plain.

`last_boxed` lives here and the math-verify scorer imports it, so a dataset's reference and a
completion's answer are cut out of ``\\boxed{}`` by the same code.
"""

from __future__ import annotations

import re

ANSWER_FORMATS = ("auto", "gsm8k", "boxed", "plain")
GSM8K_MARK = "####"
BOXED = "\\boxed{"
# GSM8K's calculator annotations, "<<48/2=24>>": tool-use markup, not reasoning a reader would write.
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# A comma between digit groups, "1,234,567": a thousands separator, not a list.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{…}` in `text`, or None."""
    start = text.rfind(BOXED)
    if start == -1:
        return None
    depth = 0
    for pos in range(start + len(BOXED) - 1, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + len(BOXED) : pos]
    return None


def gsm8k_answer(text: str) -> str | None:
    """The answer after the last "####" ("#### 1,234" -> "1234", "#### $5." -> "5"), or None."""
    mark = text.rfind(GSM8K_MARK)
    if mark == -1:
        return None
    lines = text[mark + len(GSM8K_MARK) :].strip().splitlines()
    answer = lines[0].strip() if lines else ""
    answer = _THOUSANDS.sub("", answer).removeprefix("$").strip().removesuffix(".").strip()
    return answer or None


def boxed_answer(text: str) -> str | None:
    """The last balanced `\\boxed{...}`'s content, stripped: "\\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}"."""
    boxed = last_boxed(text)
    if boxed is None:
        return None
    return boxed.strip() or None


def resolve_format(text: str, fmt: str) -> str:
    """The concrete format ("gsm8k", "boxed" or "plain") `fmt` means for `text`; checks `fmt`."""
    check_format(fmt)
    if fmt != "auto":
        return fmt
    if GSM8K_MARK in text:
        return "gsm8k"
    if last_boxed(text) is not None:
        return "boxed"
    return "plain"


def check_format(fmt: str) -> None:
    """ValueError naming task.answer_format and the choices unless `fmt` is one of them."""
    if fmt not in ANSWER_FORMATS:
        raise ValueError(f"task.answer_format must be one of {list(ANSWER_FORMATS)}, got {fmt!r}")


def extract_reference(text: str, fmt: str) -> str | None:
    """The reference answer in `text` under `fmt` (see the module docstring), or None when it has none."""
    concrete = resolve_format(text, fmt)
    if concrete == "gsm8k":
        return gsm8k_answer(text)
    if concrete == "boxed":
        return boxed_answer(text)
    return text.strip() or None


def reasoning_text(text: str, fmt: str) -> str | None:
    """The worked reasoning in `text`: GSM8K's text before "####" without its calculator annotations,
    a MATH solution as it is; None for a plain answer or when nothing is left."""
    concrete = resolve_format(text, fmt)
    if concrete == "gsm8k":
        reasoning = _CALCULATOR.sub("", text[: text.rfind(GSM8K_MARK)])
    elif concrete == "boxed":
        reasoning = text
    else:
        return None
    return reasoning.strip() or None


def worked_solution(text: str, fmt: str, answer: str) -> str | None:
    """The R1 completion `<think>{reasoning}</think><answer>{answer}</answer>` that `text` works out,
    or None when `text` holds no reasoning (a plain answer)."""
    reasoning = reasoning_text(text, fmt)
    if reasoning is None:
        return None
    return f"<think>{reasoning}</think><answer>{answer}</answer>"
