"""Eval metrics by hand: unbiased pass@k, maj@k, the task's accuracy scorer, and the per-source split."""

from __future__ import annotations

import math

import pytest

from services.orchestrator.evaluation import evaluate_groups, pass_at_k, standard_error
from services.pb import rollout_pb2

OK = rollout_pb2.REWARD_STATUS_OK


def _group(source: str, scores: list[float | None], answers: list[str], scorer: str = "accuracy"):
    g = rollout_pb2.ScoredGroup(source=source)
    for i, (score, answer) in enumerate(zip(scores, answers)):
        c = g.completions.add(sample_index=i, text=f"<think>x</think><answer>{answer}</answer>")
        c.completion_token_ids.extend([1] * (i + 1))
        if score is None:  # the scorer could not judge it
            c.rewards.add(name=scorer, status=rollout_pb2.REWARD_STATUS_TIMEOUT)
        else:
            c.rewards.add(name=scorer, value=score, status=OK)
        c.rewards.add(name="format", value=1.0, status=OK)
    return g


def test_pass_at_k_matches_the_combinatorial_definition():
    # n=4 samples, c=1 correct: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; pass@4 = 1.
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0
    # n=16, c=2, k=8: 1 - C(14,8)/C(16,8) = 1 - 3003/12870
    assert pass_at_k(16, 2, 8) == pytest.approx(1 - 3003 / 12870)
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(4, 5, 1)


def test_metrics_of_two_prompts_by_hand():
    groups = [
        _group("addition", [1.0, 0.0, 0.0, 0.0], ["5", "6", "6", "7"]),  # majority "6" is wrong
        _group("addition", [1.0, 1.0, 0.0, 1.0], ["9", "9", "8", "9"]),  # majority "9" is right
    ]
    out = evaluate_groups(groups)
    assert out["pass1"] == pytest.approx((0.25 + 0.75) / 2)
    # pass@2: prompt 1: 1 - C(3,2)/C(4,2) = 0.5; prompt 2: 1 - C(1,2)/C(4,2) = 1.
    assert out["pass@2"] == pytest.approx(0.75)
    assert out["pass@4"] == 1.0
    assert out["maj@4"] == 0.5
    # per-prompt pass@1 0.25 and 0.75: sample std sqrt(2 * 0.25**2 / 1) = 0.3536, over sqrt(2) prompts
    assert out["pass1_stderr"] == pytest.approx(0.25)
    assert out["format_rate"] == 1.0 and out["unscored"] == 0
    assert "by_source" not in out


def test_unscored_samples_are_counted_not_wrong():
    out = evaluate_groups([_group("addition", [1.0, None, None, 0.0], ["1", "1", "1", "2"])])
    assert out["unscored"] == 2
    assert out["pass1"] == 0.5  # over the two scored samples
    assert out["pass@2"] == 1.0  # n=2 scored, c=1: 1 - C(1,2)/C(2,2) = 1
    assert "pass@4" not in out  # no prompt had 4 scored samples


def test_the_tasks_own_scorer_judges_and_sources_are_split():
    groups = [
        _group("chain_sum", [1.0, 1.0], ["3", "3"], scorer="gym"),
        _group("countdown", [0.0, 0.5], ["x", "y"], scorer="gym"),
    ]
    assert evaluate_groups(groups)["pass1"] == 0.0  # no "accuracy" component: nothing scored
    out = evaluate_groups(groups, accuracy="gym")
    assert out["pass1"] == pytest.approx((1.0 + 0.25) / 2)  # a partial score counts at its value
    assert out["by_source"]["chain_sum"]["pass@2"] == 1.0
    assert out["by_source"]["countdown"]["pass@2"] == 0.0  # 0.5 is not correct
    assert out["by_source"]["countdown"]["num_prompts"] == 1
    assert math.isclose(out["by_source"]["chain_sum"]["maj@2"], 1.0)


def test_standard_error_of_the_mean():
    assert standard_error([]) == 0.0 and standard_error([0.5]) == 0.0
    assert standard_error([1.0, 1.0, 1.0]) == 0.0
    # values 0, 1, 0, 1: mean 0.5, sample variance 4 * 0.25 / 3 = 1/3, stderr sqrt(1/3 / 4)
    assert standard_error([0.0, 1.0, 0.0, 1.0]) == pytest.approx(math.sqrt(1 / 12))


def test_maj_at_k_reads_untagged_answers_only_when_asked():
    g = rollout_pb2.ScoredGroup(source="addition")
    for i, (text, score) in enumerate([("3+9 = 12", 1.0), ("it is 12", 1.0), ("13", 0.0), ("so 13.", 0.0)]):
        c = g.completions.add(sample_index=i, text=text)
        c.rewards.add(name="accuracy", value=score, status=OK)
    assert evaluate_groups([g])["maj@4"] == 0.0  # no tags: no votes
    # "12" and "13" tie at two votes each; the first one seen ("12") wins, and it is right.
    assert evaluate_groups([g], untagged="last_number")["maj@4"] == 1.0
