"""The gym scorer: the item's own reasoning-gym dataset judges the answer, in killable worker processes.

The scorer tests run the real `gym_worker` processes, as the math verifier's tests do: the time budget
is only real if a process is really killed. A hanging input is real too: countdown hands the answer to
sympy's `parse_expr`, which tries to evaluate `9**9**9**9`.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import reasoning_gym

from services.config import RewardConfig
from services.reward.gym_scorer import GymScorer
from services.reward.gym_worker import handle_line
from services.reward.scorer import ScoreInput, ScoreStatus, make_scorer
from services.reward.verify_pool import Verdict, reply_verdict
from services.tasks.gym import json_safe

TIMEOUT_S = 2.0
HANGING = "9**9**9**9"


def entry(name: str, index: int = 0) -> dict:
    return json_safe(reasoning_gym.create_dataset(name, seed=11, size=index + 1)[index])


def item(
    completion: str, gym_entry: dict | None, index: int = 0, metadata_json: str | None = None
) -> ScoreInput:
    if metadata_json is None:
        metadata_json = json.dumps(gym_entry)
    answer = str(gym_entry["answer"]) if gym_entry else ""
    return ScoreInput(
        index, gym_entry["question"] if gym_entry else "", completion, answer, "en", metadata_json
    )


def tagged(answer: str) -> str:
    return f"<think>work</think><answer>{answer}</answer>"


@pytest.fixture(scope="module")
def scorer():
    scorer = make_scorer("gym", replace(RewardConfig(), verify_workers=2, verify_timeout_s=TIMEOUT_S))
    assert isinstance(scorer, GymScorer) and scorer.name == "gym"
    yield scorer
    scorer.close()


def test_correct_and_wrong_answers(scorer: GymScorer) -> None:
    chain = entry("chain_sum")
    wrong = str(int(chain["answer"]) + 1)
    countdown = entry("countdown")
    results = scorer.score(
        [
            item(tagged(chain["answer"]), chain, 0),
            item(tagged(wrong), chain, 1),
            item(f"so \\boxed{{{chain['answer']}}}", chain, 2),  # the math verifier's \boxed{} fallback
            item(tagged(countdown["answer"]), countdown, 3),
        ]
    )
    assert [(r.sample_index, r.status, r.value) for r in results] == [
        (0, ScoreStatus.OK, 1.0),
        (1, ScoreStatus.OK, 0.0),
        (2, ScoreStatus.OK, 1.0),
        (3, ScoreStatus.OK, 1.0),
    ]


def test_no_answer_block_is_a_real_zero(scorer: GymScorer) -> None:
    chain = entry("chain_sum")
    no_block, empty = scorer.score(
        [item(f"the answer is {chain['answer']}", chain, 0), item(tagged(""), chain, 1)]
    )
    assert (no_block.status, no_block.value) == (ScoreStatus.OK, 0.0)
    assert "no <answer>" in no_block.detail
    assert (empty.status, empty.value, empty.detail) == (ScoreStatus.OK, 0.0, "empty answer")


@pytest.mark.parametrize(
    ("metadata_json", "says"),
    [
        ("", "metadata_json is empty"),
        ("{not json", "not valid JSON"),
        ('{"question": "q", "answer": "1"}', "'metadata' object"),
        ('{"metadata": {}}', "source_dataset"),
    ],
    ids=["empty", "invalid-json", "no-metadata", "no-source"],
)
def test_bad_metadata_is_an_error_naming_the_problem(
    scorer: GymScorer, metadata_json: str, says: str
) -> None:
    [result] = scorer.score([item(tagged("1"), entry("chain_sum"), metadata_json=metadata_json)])
    assert result.status is ScoreStatus.ERROR and says in result.detail


def test_unknown_dataset_in_metadata_is_an_error_from_the_worker(scorer: GymScorer) -> None:
    bad = {**entry("chain_sum"), "metadata": {"source_dataset": "nope"}}
    [result] = scorer.score([item(tagged("1"), bad)])
    assert result.status is ScoreStatus.ERROR and "'nope'" in result.detail


def test_hanging_check_times_out_and_the_worker_is_replaced() -> None:
    scorer = GymScorer(num_workers=1, timeout_s=TIMEOUT_S)
    countdown = entry("countdown")
    try:
        [first] = scorer.score([item(tagged(countdown["answer"]), countdown)])
        assert (first.status, first.value) == (ScoreStatus.OK, 1.0)
        [pid] = scorer.pool.live_pids()
        [hung] = scorer.score([item(tagged(HANGING), countdown)])
        assert (hung.status, hung.value) == (ScoreStatus.TIMEOUT, 0.0)
        assert "reward.verify_timeout_s" in hung.detail
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung worker was killed, not left spinning
        [again] = scorer.score([item(tagged(countdown["answer"]), countdown)])
        assert (again.status, again.value) == (ScoreStatus.OK, 1.0)
        assert scorer.pool.live_pids() != [pid]
    finally:
        scorer.close()


def test_worker_protocol_replies_with_a_score_or_an_error() -> None:
    chain = entry("chain_sum")
    assert handle_line(json.dumps({"answer": chain["answer"], "entry": chain})) == {"score": 1.0}
    assert handle_line(json.dumps({"answer": None, "entry": chain})) == {"score": 0.0}
    assert "error" in handle_line(json.dumps({"answer": "1", "entry": {"metadata": {}}}))
    assert "error" in handle_line("{not json")


def test_reply_verdicts_refuse_made_up_scores() -> None:
    assert reply_verdict({"score": 0.25}) == Verdict(ScoreStatus.OK, 0.25)
    assert reply_verdict({"equal": True}) == Verdict(ScoreStatus.OK, 1.0)
    for bad in ({"score": 1.5}, {"score": "1"}, {"score": float("nan")}, {"error": "boom"}):
        assert reply_verdict(bad).status is ScoreStatus.ERROR, bad
