"""Reward components and totals on a Completion: weighted sums when all OK, never a silent zero."""

from __future__ import annotations

import pytest

from services.config_loader import load_config
from services.pb import rollout_pb2
from services.reward.combine import apply_scores, reward_weights, task_weights
from services.reward.scorer import ScoreResult, ScoreStatus

OK, TIMEOUT, ERROR, UNAVAILABLE = (
    rollout_pb2.REWARD_STATUS_OK,
    rollout_pb2.REWARD_STATUS_TIMEOUT,
    rollout_pb2.REWARD_STATUS_ERROR,
    rollout_pb2.REWARD_STATUS_UNAVAILABLE,
)
WEIGHTS = {"accuracy": 1.0, "format": 0.2}


def _scored(**results: ScoreResult) -> rollout_pb2.Completion:
    completion = rollout_pb2.Completion(sample_index=0)
    apply_scores(completion, results, WEIGHTS)
    return completion


def test_all_ok_total_is_the_weighted_sum():
    c = _scored(
        accuracy=ScoreResult(0, 1.0, ScoreStatus.OK),
        format=ScoreResult(0, 0.5, ScoreStatus.OK, "missing </answer>"),
    )
    assert c.status == OK
    assert c.total_reward == pytest.approx(1.1)  # 1.0 * 1.0 + 0.2 * 0.5
    assert [(r.name, r.value, r.status, r.detail) for r in c.rewards] == [
        ("accuracy", 1.0, OK, ""),
        ("format", 0.5, OK, "missing </answer>"),
    ]


def test_wrong_answer_with_good_format_scores_only_the_format_weight():
    c = _scored(accuracy=ScoreResult(0, 0.0, ScoreStatus.OK), format=ScoreResult(0, 1.0, ScoreStatus.OK))
    assert c.status == OK
    assert c.total_reward == pytest.approx(0.2)  # 1.0 * 0.0 + 0.2 * 1.0


def test_unavailable_component_marks_the_completion_unscored():
    c = _scored(
        accuracy=ScoreResult(0, 0.0, ScoreStatus.UNAVAILABLE, "accuracy service at 127.0.0.1:1 unreachable"),
        format=ScoreResult(0, 1.0, ScoreStatus.OK),
    )
    assert c.status == UNAVAILABLE  # "could not score", not "scored 0"
    assert c.total_reward == 0.0
    # Both components are kept with their own status, the OK one with its value, for the metrics.
    by_name = {r.name: r for r in c.rewards}
    assert (by_name["accuracy"].status, by_name["accuracy"].detail) == (
        UNAVAILABLE,
        "accuracy service at 127.0.0.1:1 unreachable",
    )
    assert (by_name["format"].status, by_name["format"].value) == (OK, 1.0)


def test_first_failure_decides_the_completion_status():
    c = _scored(
        accuracy=ScoreResult(0, 0.0, ScoreStatus.TIMEOUT, "verifier passed 2.0s"),
        format=ScoreResult(0, 0.0, ScoreStatus.ERROR, "boom"),
    )
    assert c.status == TIMEOUT
    assert c.total_reward == 0.0
    assert [r.status for r in c.rewards] == [TIMEOUT, ERROR]


def test_reward_weights_come_from_the_stage_config():
    cfg = load_config(["reward.scorers=[format]", "reward.w_format=0.5"])
    assert reward_weights(cfg.reward) == {"format": 0.5}
    cfg = load_config(["reward.w_accuracy=2.0"])
    assert reward_weights(cfg.reward) == {"accuracy": 2.0, "format": 0.2, "language": 0.1}


def test_weights_come_from_the_source_then_the_stage_then_the_defaults():
    cfg = load_config(
        [
            "reward.scorers=[accuracy,format,language,reward_model]",
            "+reward.stage_weights.rl={accuracy:1.0,format:0.2,language:0.1}",
            "+reward.source_weights.general={reward_model:1.0,format:0.2}",
        ]
    ).reward
    assert reward_weights(cfg, "rl", "addition") == {"accuracy": 1.0, "format": 0.2, "language": 0.1}
    assert reward_weights(cfg, "rl_general", "general") == {"reward_model": 1.0, "format": 0.2}
    # No entry for the stage: every started scorer with its w_<name> default (config defaults).
    assert reward_weights(cfg, "eval", "addition") == {
        "accuracy": 1.0,
        "format": 0.2,
        "language": 0.1,
        "reward_model": 0.5,
    }


def test_task_weights_win_over_the_config():
    cfg = load_config([]).reward
    task = rollout_pb2.PromptTask(reward_weights={"format": 2.0})
    assert task_weights(task, cfg) == {"format": 2.0}
    assert task_weights(rollout_pb2.PromptTask(), cfg) == {"accuracy": 1.0, "format": 0.2, "language": 0.1}
