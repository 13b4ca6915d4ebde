"""Scorer "accuracy": is the completion's final answer mathematically equal to the reference?

The final answer is the content of the LAST `<answer>…</answer>` block of the completion (the R1
template), or, when there is none, of the last `\\boxed{…}`, or, with `reward.untagged_answer=last_number`,
when there is neither, the last number in the completion. It is compared with the reference
answer by math-verify (`parse` + `verify`), so "1/2", "0.5" and "\\frac{1}{2}" all match. The value
is 1.0 for a match and 0.0 otherwise.

What is checked here, in the parent, before any parsing (cheap string work only, linear in the
input, safe on a 1 MB completion):
* a missing answer is a real 0.0 (status ok): the policy did not answer;
* an empty reference, an over-long answer or reference (`MAX_ANSWER_CHARS`) are status error: a
  100k-digit number is not something to hand to sympy;
* text that is not valid UTF-8 (lone surrogates) has the bad characters replaced.

Parsing and comparison run in `VerifyPool` worker processes with a hard per-item time budget, so a
hanging input ends as status timeout and the next item is scored normally.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus
from services.reward.verify_pool import VerifyPool, score_on_pool
from services.tasks.answers import last_boxed  # one definition for references and completions

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
# Longest answer or reference handed to the parser; real final answers are far shorter.
MAX_ANSWER_CHARS = 2000


def clean_text(text: str) -> str:
    """Replace what is not valid UTF-8 (lone surrogates) with U+FFFD and drop NUL characters."""
    return text.encode("utf-8", "replace").decode("utf-8", "replace").replace("\x00", "")


UNTAGGED_ANSWERS = ("none", "last_number")
# A number as people write one in an answer: sign, digits with thousands separators, decimals.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def check_untagged(untagged: str) -> None:
    if untagged not in UNTAGGED_ANSWERS:
        raise ValueError(f"reward.untagged_answer={untagged!r}: choose one of {list(UNTAGGED_ANSWERS)}")


def extract_answer(completion: str, untagged: str = "none") -> str | None:
    """The final answer of `completion`: the last `<answer>` block, else the last `\\boxed{}`, else (with
    `untagged="last_number"`) the last number, commas dropped ("1,234." -> "1234"), else None."""
    close = completion.rfind(ANSWER_CLOSE)
    if close != -1:
        start = completion.rfind(ANSWER_OPEN, 0, close)
        if start != -1:
            return completion[start + len(ANSWER_OPEN) : close].strip()
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    if untagged == "last_number":
        numbers = _NUMBER.findall(completion)
        return numbers[-1].replace(",", "") if numbers else None
    return None


def precheck(item: ScoreInput, untagged: str = "none") -> ScoreResult | dict:
    """Either a final result that needs no parsing, or the worker request {answer, reference} to verify."""
    reference = clean_text(item.answer).strip()
    if not reference:
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, "no reference answer (answer is empty)")
    if len(reference) > MAX_ANSWER_CHARS:
        detail = f"reference answer too long ({len(reference)} > {MAX_ANSWER_CHARS} chars)"
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, detail)
    answer = completion_answer(item, untagged)
    return answer if isinstance(answer, ScoreResult) else {"answer": answer, "reference": reference}


def completion_answer(item: ScoreInput, untagged: str = "none") -> ScoreResult | str:
    """The completion's final answer, cleaned, or the result that settles the item without a verifier: a
    missing or empty answer is a real 0.0 (the policy did not answer), an over-long one an error."""
    answer = extract_answer(item.completion, untagged)
    if answer is None:
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.OK, "no <answer> block or \\boxed{} found")
    if not answer:
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.OK, "empty answer")
    if len(answer) > MAX_ANSWER_CHARS:
        detail = f"answer too long ({len(answer)} > {MAX_ANSWER_CHARS} chars)"
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, detail)
    return clean_text(answer)


class MathVerifierScorer:
    """Scorer "accuracy": items are prechecked inline, then verified in parallel on the pool."""

    name = "accuracy"

    def __init__(self, num_workers: int, timeout_s: float, untagged: str = "none") -> None:
        check_untagged(untagged)
        self.untagged = untagged
        self.pool = VerifyPool(num_workers=num_workers, timeout_s=timeout_s)
        # One thread per worker process: each thread blocks on its item's pipe.
        self._executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="math-verify")

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        return score_on_pool(items, partial(precheck, untagged=self.untagged), self.pool, self._executor)

    def close(self) -> None:
        self.pool.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
