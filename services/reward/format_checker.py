"""The R1 format reward: does a completion follow `<think>…</think><answer>…</answer>` and nothing else?

DeepSeek-R1 rewards the template separately from correctness so that the policy learns to put its
reasoning and its final answer where the verifier and the reader expect them. The rule here:

* exactly one `<think>` and one `</think>`, then exactly one `<answer>` and one `</answer>`, in that
  order;
* only whitespace before `<think>`, between `</think>` and `<answer>`, and after `</answer>`;
* a non-blank answer (an empty answer block is not an answer).

`strict=False` also accepts a completion that starts inside the think block, for prompts whose
template already ends with `<think>` (the R1-Zero template does).

The check uses string searches only, never a backtracking regex, so a 1 MB completion costs one
linear scan.
"""

from __future__ import annotations

from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def format_score(text: str, strict: bool = True) -> float:
    """Return 1.0 when `text` follows the R1 template exactly, else 0.0."""
    if not strict and text.count(THINK_OPEN) == 0:
        text = THINK_OPEN + text
    if any(text.count(tag) != 1 for tag in _TAGS):
        return 0.0
    think_open = text.index(THINK_OPEN)
    think_close = text.index(THINK_CLOSE)
    answer_open = text.index(ANSWER_OPEN)
    answer_close = text.index(ANSWER_CLOSE)
    if not think_open < think_close < answer_open < answer_close:
        return 0.0
    outside = (
        text[:think_open],
        text[think_close + len(THINK_CLOSE) : answer_open],
        text[answer_close + len(ANSWER_CLOSE) :],
    )
    if any(part.strip() for part in outside):
        return 0.0
    if not text[answer_open + len(ANSWER_OPEN) : answer_close].strip():
        return 0.0
    return 1.0


class FormatScorer:
    """Scorer "format": `format_score` of each completion. Cheap, so it runs inline."""

    name = "format"

    def __init__(self, strict: bool = True) -> None:
        self._strict = strict

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        return [
            ScoreResult(item.sample_index, format_score(item.completion, self._strict), ScoreStatus.OK)
            for item in items
        ]

    def close(self) -> None:
        """Nothing to release."""
