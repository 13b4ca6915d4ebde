"""Scorer "gym": the reasoning-gym item's own dataset judges the completion's final answer.

A gym problem carries its whole reasoning-gym entry (question, answer, metadata with `source_dataset`)
as `metadata_json` (`services.tasks.gym`); this scorer hands the completion's final answer and that
entry to the dataset's `score_answer`, which returns a float in [0, 1] (1 = correct; some datasets give
partial credit, countdown 0.05 for a well-formed wrong expression).

The final answer is extracted exactly as the math verifier does (`math_verifier.extract_answer`: the
last `<answer>` block, else the last `\\boxed{}`, else with `reward.untagged_answer=last_number` the last
number), so both tasks reward the same template. In the parent,
before any library code runs:
* a missing or empty answer is a real 0.0 (status ok): the policy did not answer;
* an empty or invalid `metadata_json` is status error naming the problem: without the entry no dataset
  can judge the item, and a 0 would punish the policy for a data bug;
* an over-long answer is status error (`MAX_ANSWER_CHARS`), as for the math verifier.

`score_answer` runs in the same killable worker-process pool as math-verify (`VerifyPool` with the
`gym_worker` module), under the same `reward.verify_timeout_s` and `reward.verify_workers`, so a hanging
check (countdown's sympy `parse_expr` on `9**9**9**9`) ends as status timeout and the next item is
scored normally.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from services.reward.math_verifier import check_untagged, completion_answer
from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus
from services.reward.verify_pool import VerifyPool, score_on_pool

GYM_WORKER_MODULE = "services.reward.gym_worker"


def entry_of(metadata_json: str) -> dict | str:
    """The reasoning-gym entry in `metadata_json`, or a reason it is unusable."""
    if not metadata_json.strip():
        return "no reasoning-gym entry: metadata_json is empty (gym items come from task=gym problems)"
    try:
        entry = json.loads(metadata_json)
    except ValueError as exc:
        return f"metadata_json is not valid JSON ({exc})"
    if not isinstance(entry, dict) or not isinstance(entry.get("metadata"), dict):
        return "metadata_json is not a reasoning-gym entry (a JSON object with a 'metadata' object)"
    if not isinstance(entry["metadata"].get("source_dataset"), str):
        return "metadata_json has no metadata.source_dataset naming the reasoning-gym dataset"
    return entry


def precheck(item: ScoreInput, untagged: str = "none") -> ScoreResult | dict:
    """Either a final result that needs no library call, or the request for a gym worker."""
    entry = entry_of(item.metadata_json)
    if isinstance(entry, str):
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, entry)
    answer = completion_answer(item, untagged)
    return answer if isinstance(answer, ScoreResult) else {"answer": answer, "entry": entry}


class GymScorer:
    """Scorer "gym": items are prechecked inline, then scored in parallel on the worker pool."""

    name = "gym"

    def __init__(self, num_workers: int, timeout_s: float, untagged: str = "none") -> None:
        check_untagged(untagged)
        self.untagged = untagged
        self.pool = VerifyPool(
            num_workers=num_workers,
            timeout_s=timeout_s,
            worker_module=GYM_WORKER_MODULE,
            label="reasoning-gym verifier",
        )
        # One thread per worker process: each thread blocks on its item's pipe.
        self._executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="gym-verify")

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        return score_on_pool(items, partial(precheck, untagged=self.untagged), self.pool, self._executor)

    def close(self) -> None:
        self.pool.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
