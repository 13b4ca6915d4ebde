"""The R1 format reward: exactly `<think>…</think><answer>…</answer>`, whitespace aside."""

import pytest

from services.reward.format_checker import FormatScorer, format_score
from services.reward.scorer import ScoreInput, ScoreStatus

GOOD = [
    "<think>3 + 4 = 7</think><answer>7</answer>",
    "<think>\nadd the units\n</think>\n<answer>\n7\n</answer>\n",
    "  <think>x</think>   <answer>1/2</answer>  ",
]

BAD = [
    ("", "empty"),
    ("7", "no tags"),
    ("<answer>7</answer>", "no think block"),
    ("<think>7</think>", "no answer block"),
    ("<answer>7</answer><think>x</think>", "blocks in the wrong order"),
    ("<think>a</think><think>b</think><answer>7</answer>", "two think blocks"),
    ("<think>a</think><answer>7</answer><answer>8</answer>", "two answer blocks"),
    ("<think>a</think>so the answer is<answer>7</answer>", "text between the blocks"),
    ("Sure! <think>a</think><answer>7</answer>", "text before think"),
    ("<think>a</think><answer>7</answer> hope that helps", "text after answer"),
    ("<think>a</think><answer>   </answer>", "blank answer"),
    ("<think>a<answer>7</answer></think>", "answer nested in think"),
    ("<think>a</think><answer>7", "unclosed answer"),
    ("<think>a</answer><answer>7</think>", "tags crossed"),
]


@pytest.mark.parametrize("text", GOOD)
def test_template_scores_one(text: str) -> None:
    assert format_score(text) == 1.0


@pytest.mark.parametrize(("text", "why"), BAD, ids=[why for _, why in BAD])
def test_broken_template_scores_zero(text: str, why: str) -> None:
    assert format_score(text) == 0.0, why


def test_non_strict_accepts_think_opened_by_the_prompt() -> None:
    # The R1-Zero prompt ends with "<think>", so the completion starts inside the think block.
    text = "3 + 4 = 7</think><answer>7</answer>"
    assert format_score(text, strict=False) == 1.0
    assert format_score(text, strict=True) == 0.0
    # Non-strict still rejects everything strict rejects once the opening tag is in place.
    assert format_score("7</think><answer>7</answer> extra", strict=False) == 0.0


def test_one_megabyte_completion_is_scored() -> None:
    text = "<think>" + "a" * 1_000_000 + "</think><answer>7</answer>"
    assert format_score(text) == 1.0
    assert format_score("x" * 1_000_000) == 0.0


def test_scorer_keeps_order_and_indices() -> None:
    items = [
        ScoreInput(sample_index=5, prompt="p", completion=GOOD[0]),
        ScoreInput(sample_index=2, prompt="p", completion="7"),
    ]
    results = FormatScorer().score(items)
    assert [(r.sample_index, r.value, r.status) for r in results] == [
        (5, 1.0, ScoreStatus.OK),
        (2, 0.0, ScoreStatus.OK),
    ]


PARTIAL = [
    # (text, rules met out of think/answer/order/clean, why)
    ("<think>a</think><answer>7</answer>", 4, "the whole template"),
    ("<think>a</think>so<answer>7</answer>", 3, "text between the blocks: all but clean"),
    ("<answer>7</answer><think>x</think>", 2, "both blocks, wrong order (order and clean fail)"),
    ("<think>a</think> 7", 1, "a think block only"),
    ("<answer>7</answer>", 1, "an answer block only"),
    ("<think>a</think><answer> </answer>", 1, "blank answer: think only"),
    ("7", 0, "no tags"),
]


@pytest.mark.parametrize(("text", "met", "why"), PARTIAL, ids=[why for *_, why in PARTIAL])
def test_partial_credit_is_a_quarter_per_rule(text: str, met: int, why: str) -> None:
    assert format_score(text, partial_credit=True) == met / 4, why
    # Without partial credit only the whole template scores.
    assert format_score(text) == (1.0 if met == 4 else 0.0)


def test_scorer_detail_names_the_broken_rules() -> None:
    items = [ScoreInput(0, "p", "<think>a</think>so<answer>7</answer>"), ScoreInput(1, "p", GOOD[0])]
    partial, whole = FormatScorer(partial_credit=True).score(items)
    assert (partial.value, partial.detail) == (0.75, "missing: clean")
    assert (whole.value, whole.detail) == (1.0, "")
