"""The R1 format reward: does a completion follow `<think>…</think><answer>…</answer>` and nothing else?

DeepSeek-R1 rewards the template separately from correctness so that the policy learns to put its
reasoning and its final answer where the verifier and the reader expect them. The rule here:

* exactly one `<think>` and one `</think>`, then exactly one `<answer>` and one `</answer>`, in that
  order;
* only whitespace before `<think>`, between `</think>` and `<answer>`, and after `</answer>`;
* a non-blank answer (an empty answer block is not an answer).

`partial_credit=True` gives a quarter per rule met instead of all-or-nothing (`format_checks`).
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


def format_checks(text: str, strict: bool = True) -> dict[str, bool]:
    """The four rules of the template, each True when `text` meets it.

    * `think`: exactly one `<think>` and one `</think>`, in that order;
    * `answer`: exactly one `<answer>` and one `</answer>`, in that order, around a non-blank answer;
    * `order`: the think block closes before the answer block opens;
    * `clean`: only whitespace outside the blocks (before, between, after).
    """
    if not strict and THINK_OPEN not in text:
        text = THINK_OPEN + text
    counts = {tag: text.count(tag) for tag in _TAGS}
    think = counts[THINK_OPEN] == counts[THINK_CLOSE] == 1 and text.index(THINK_OPEN) < text.index(
        THINK_CLOSE
    )
    answer = counts[ANSWER_OPEN] == counts[ANSWER_CLOSE] == 1
    if answer:
        a_open, a_close = text.index(ANSWER_OPEN), text.index(ANSWER_CLOSE)
        answer = a_open < a_close and bool(text[a_open + len(ANSWER_OPEN) : a_close].strip())
    order = think and answer and text.index(THINK_CLOSE) < text.index(ANSWER_OPEN)
    clean = order and not any(
        part.strip()
        for part in (
            text[: text.index(THINK_OPEN)],
            text[text.index(THINK_CLOSE) + len(THINK_CLOSE) : text.index(ANSWER_OPEN)],
            text[text.index(ANSWER_CLOSE) + len(ANSWER_CLOSE) :],
        )
    )
    return {"think": think, "answer": answer, "order": order, "clean": clean}


def format_score(text: str, strict: bool = True, partial_credit: bool = False) -> float:
    """1.0 when `text` follows the R1 template exactly; otherwise 0.0, or with `partial_credit` a
    quarter for each rule of `format_checks` it meets (so 1.0 still means exactly the template)."""
    checks = format_checks(text, strict)
    if partial_credit:
        return sum(checks.values()) / len(checks)
    return 1.0 if all(checks.values()) else 0.0


class FormatScorer:
    """Scorer "format": `format_score` of each completion. Cheap, so it runs inline.

    The detail names the rules a completion broke ("missing: answer, clean"), for `r1forge score`.
    """

    name = "format"

    def __init__(self, strict: bool = True, partial_credit: bool = False) -> None:
        self._strict, self._partial = strict, partial_credit

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        out = []
        for item in items:
            checks = format_checks(item.completion, self._strict)
            broken = [rule for rule, ok in checks.items() if not ok]
            value = format_score(item.completion, self._strict, self._partial)
            detail = f"missing: {', '.join(broken)}" if broken else ""
            out.append(ScoreResult(item.sample_index, value, ScoreStatus.OK, detail))
        return out

    def close(self) -> None:
        """Nothing to release."""
