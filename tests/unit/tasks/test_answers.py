"""Reference answers and worked solutions out of GSM8K, MATH and plain answer texts."""

from __future__ import annotations

import pytest

from services.reward import math_verifier
from services.tasks.answers import (
    boxed_answer,
    extract_reference,
    gsm8k_answer,
    last_boxed,
    reasoning_text,
    worked_solution,
)

GSM8K = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 in all.\n#### 72"
MATH = "We have $\\frac{1}{4} + \\frac{1}{4} = \\boxed{\\frac{1}{2}}$."


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("#### 1,234", "1234"),
        ("so 12,345,678 in all\n#### 12,345,678", "12345678"),
        ("#### $5.", "5"),
        ("#### -3.5", "-3.5"),
        ("first #### 1\nthen #### 2", "2"),  # the last mark
        ("#### 7\n", "7"),
        ("#### 1, 2", "1, 2"),  # not a thousands separator: kept
        ("no mark here", None),
        ("####   ", None),
    ],
)
def test_gsm8k_answer(text, answer):
    assert gsm8k_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{1} then \\boxed{ 2 }", "2"),  # the last one, stripped
        ("\\boxed{a{b}c", None),  # unbalanced: no guess
        ("\\boxed{}", None),
        ("no box", None),
    ],
)
def test_boxed_answer(text, answer):
    assert boxed_answer(text) == answer


def test_math_verifier_uses_the_same_last_boxed():
    assert math_verifier.last_boxed is last_boxed


def test_auto_prefers_gsm8k_then_boxed_then_plain():
    assert extract_reference("\\boxed{3}\n#### 4", "auto") == "4"
    assert extract_reference(MATH, "auto") == "\\frac{1}{2}"
    assert extract_reference("  42 \n", "auto") == "42"
    assert extract_reference("   ", "auto") is None


def test_explicit_formats_do_not_fall_back():
    assert extract_reference(MATH, "gsm8k") is None
    assert extract_reference(GSM8K, "boxed") is None
    assert extract_reference(GSM8K, "gsm8k") == "72"
    assert extract_reference(" \\boxed{3} ", "plain") == "\\boxed{3}"


def test_unknown_format_names_the_setting_and_choices():
    with pytest.raises(
        ValueError, match=r"task\.answer_format must be one of \['auto', 'gsm8k', 'boxed', 'plain'\]"
    ):
        extract_reference("1", "latex")


def test_gsm8k_worked_solution_drops_the_calculator_annotations():
    assert worked_solution(GSM8K, "auto", "72") == (
        "<think>Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 in all.</think><answer>72</answer>"
    )


def test_math_worked_solution_is_the_solution_as_is():
    assert (
        worked_solution(MATH, "boxed", "\\frac{1}{2}")
        == f"<think>{MATH}</think><answer>\\frac{{1}}{{2}}</answer>"
    )


def test_no_reasoning_no_worked_solution():
    assert worked_solution("42", "auto", "42") is None  # a plain answer teaches nothing
    assert worked_solution("#### 42", "gsm8k", "42") is None  # nothing before the mark
    assert reasoning_text("<<2*3=6>>\n#### 6", "gsm8k") is None  # only an annotation
