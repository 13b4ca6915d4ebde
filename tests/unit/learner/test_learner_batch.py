"""Group admission (every drop reason) and the tensor layout of a GRPO batch."""

from __future__ import annotations

import pytest
import torch

from services.learner.batch import DROP_REASONS, build_batch, select_groups
from services.pb import rollout_pb2
from services.transport.names import group_key

OK = rollout_pb2.REWARD_STATUS_OK


def make_group(prompt_id, rewards, version=0, prompt=(5, 6, 7), completions=None, statuses=None, epoch=0):
    completions = completions or [([8 + i], [-0.5]) for i in range(len(rewards))]
    statuses = statuses or [OK] * len(rewards)
    group = rollout_pb2.ScoredGroup(
        id=rollout_pb2.TaskId(run_id="run", prompt_id=prompt_id, epoch=epoch),
        prompt_token_ids=list(prompt),
        policy_version=version,
    )
    for i, (reward, (ids, logprobs), status) in enumerate(zip(rewards, completions, statuses, strict=True)):
        group.completions.add(
            sample_index=i, completion_token_ids=ids, logprobs=logprobs, total_reward=reward,
            status=status, policy_version=version,
        )  # fmt: skip
    return group


def test_group_key():
    assert (
        group_key(rollout_pb2.TaskId(run_id="r1", prompt_id="train-000123", epoch=2)) == "r1/train-000123/2"
    )


def test_select_groups_counts_every_drop_reason():
    current, max_staleness = 5, 1
    good = make_group("good", [1.0, 0.0], version=5)
    edge = make_group("edge", [1.0, 0.0], version=4)  # 5 - 4 = 1 <= 1: kept
    groups = [
        good,
        make_group("trained", [1.0, 0.0], version=5),  # key already in trained_ids -> duplicate
        make_group("good", [0.0, 1.0], version=5),  # second copy of "good" in this call -> duplicate
        make_group("old", [1.0, 0.0], version=3),  # 5 - 3 = 2 > 1 -> stale
        make_group(
            "bad-lp", [1.0, 0.0], version=5, completions=[([8, 9], [-0.1]), ([8], [-0.1])]
        ),  # malformed
        make_group("one", [1.0], version=5),  # a single completion has no baseline -> malformed
        make_group("timeout", [1.0, 0.0], version=5, statuses=[OK, rollout_pb2.REWARD_STATUS_TIMEOUT]),
        make_group("unset", [1.0, 0.0], version=5, statuses=[rollout_pb2.REWARD_STATUS_UNSPECIFIED, OK]),
        make_group("flat", [0.5, 0.5, 0.5], version=5),  # -> zero_variance
        edge,
    ]
    mixed = make_group("mixed", [1.0, 0.0], version=5)
    mixed.completions[1].policy_version = 4  # two policy versions in one group -> malformed
    dead = rollout_pb2.ScoredGroup(  # a dead-letter marker: no completions, a reason
        id=rollout_pb2.TaskId(run_id="run", prompt_id="dead", epoch=0), dead_letter_reason="scoring failed"
    )
    dead_trained = rollout_pb2.ScoredGroup(id=good.id, dead_letter_reason="late marker")  # -> duplicate
    groups += [mixed, dead, dead_trained]
    trained = {"run/trained/0"}
    selection = select_groups(groups, trained, current, max_staleness)
    assert [group_key(g.id) for g in selection.groups] == ["run/good/0", "run/edge/0"]
    assert selection.dropped == {
        "duplicate": 3, "dead_lettered": 1, "stale": 1, "malformed": 3, "failed": 2, "zero_variance": 1
    }  # fmt: skip
    assert set(selection.dropped) == set(DROP_REASONS)
    assert ("run/flat/0", "zero_variance") in selection.dropped_keys
    assert trained == {"run/trained/0"}  # the caller's set is not modified


def test_select_groups_on_policy_and_epochs():
    # max_staleness=0: only the current version trains. A new epoch of the same prompt is a new group.
    groups = [make_group("p", [1.0, 0.0], version=2), make_group("p", [1.0, 0.0], version=2, epoch=1)]
    selection = select_groups(groups, {"run/p/0"}, current_version=2, max_staleness=0)
    assert [group_key(g.id) for g in selection.groups] == ["run/p/1"]
    assert select_groups(groups, set(), current_version=3, max_staleness=0).dropped["stale"] == 2
    with pytest.raises(ValueError, match="max_staleness"):
        select_groups(groups, set(), 0, -1)


def test_select_groups_version_floor_makes_older_groups_stale():
    # A learner restarted at v7 (floor 7) with max_staleness=2: a v6 group is within the bound but was
    # sampled by weights from before the restart, so it is stale; v7 trains.
    groups = [make_group("before", [1.0, 0.0], version=6), make_group("after", [1.0, 0.0], version=7)]
    selection = select_groups(groups, set(), current_version=7, max_staleness=2, version_floor=7)
    assert [group_key(g.id) for g in selection.groups] == ["run/after/0"]
    assert selection.dropped_keys == [("run/before/0", "stale")]
    assert len(select_groups(groups, set(), current_version=7, max_staleness=2).groups) == 2


def test_staleness_histogram_counts_groups_by_lag():
    from services.learner.service import staleness_histogram

    groups = [make_group(f"p{i}", [1.0, 0.0], version=v) for i, v in enumerate([5, 4, 4, 3])]
    groups.append(rollout_pb2.ScoredGroup(dead_letter_reason="x"))  # a marker was never sampled
    assert staleness_histogram(groups, 5) == {
        "staleness_0": 1, "staleness_1": 2, "staleness_2": 1, "policy_lag_max": 2
    }  # fmt: skip
    assert staleness_histogram(groups[-1:], 5) == {}


def test_build_batch_aligns_old_logprobs_to_completion_positions():
    g1 = make_group("a", [1.0, 0.0], prompt=(5, 6, 7), completions=[([8, 9], [-0.1, -0.2]), ([10], [-0.3])])
    g2_completions = [([12], [-0.4]), ([13, 14, 15, 16], [-0.5, -0.6, -0.7, -0.8]), ([17], [-0.9])]
    g2 = make_group("b", [2.0, 0.0, 1.0], prompt=(11,), completions=g2_completions)
    batch = build_batch([g1, g2], pad_id=0, eps=0.0)
    # Rows: prompt + completion, right-padded to the longest (1 + 4 = 5 tokens).
    assert batch.input_ids.tolist() == [
        [5, 6, 7, 8, 9],
        [5, 6, 7, 10, 0],
        [11, 12, 0, 0, 0],
        [11, 13, 14, 15, 16],
        [11, 17, 0, 0, 0],
    ]
    assert batch.attention_mask.tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
        [1] * 5,
        [1, 1, 0, 0, 0],
    ]
    assert batch.completion_mask.tolist() == [
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 1, 1],
        [0, 1, 0, 0, 0],
    ]
    # Completion token j of a row with prompt length P sits at position P + j, with its log-prob there.
    expected_lp = [
        [0, 0, 0, -0.1, -0.2],
        [0, 0, 0, -0.3, 0],
        [0, -0.4, 0, 0, 0],
        [0, -0.5, -0.6, -0.7, -0.8],
        [0, -0.9, 0, 0, 0],
    ]
    torch.testing.assert_close(batch.old_logprobs, torch.tensor(expected_lp))
    # Group a: rewards [1, 0], mean .5, std sqrt(.5) = .70711 -> ±.70711.
    # Group b: rewards [2, 0, 1], mean 1, std sqrt((1 + 1 + 0) / 2) = 1 -> [1, -1, 0].
    torch.testing.assert_close(
        batch.advantages, torch.tensor([0.70711, -0.70711, 1.0, -1.0, 0.0]), atol=1e-4, rtol=0
    )
    assert batch.group_keys == ["run/a/0", "run/b/0"] and batch.group_sizes == [2, 3]
    assert batch.num_tokens == 2 + 1 + 1 + 4 + 1
    stats = batch.reward_stats()
    assert stats["reward_mean"] == pytest.approx(4.0 / 5)  # (1 + 0 + 2 + 0 + 1) / 5
    assert stats["completion_len_mean"] == pytest.approx(9 / 5)


def test_micro_batches_put_rows_of_like_length_together_longest_first():
    # Row lengths (prompt 1 + completion): 2, 2, 4, 2; then 3 and 2 from a third group.
    g1 = make_group("a", [1.0, 0.0], prompt=(5,), completions=[([8], [-0.1]), ([9], [-0.2])])
    g2 = make_group("b", [1.0, 0.0], prompt=(5,), completions=[([8, 8, 8], [-0.1] * 3), ([9], [-0.2])])
    g3 = make_group("c", [1.0, 0.0], prompt=(5,), completions=[([7, 7], [-0.3] * 2), ([6], [-0.4])])
    batch = build_batch([g1, g2, g3], pad_id=0, eps=1e-6)
    parts = list(batch.micro_batches(2))
    # Longest first (4, 3), then the 2-long rows in batch order (a0 a1, b1 c1): each trimmed to its longest.
    assert [p.input_ids.shape for p in parts] == [torch.Size([2, 4]), torch.Size([2, 2]), torch.Size([2, 2])]
    order = [2, 4, 0, 1, 3, 5]
    torch.testing.assert_close(torch.cat([p.advantages for p in parts]), batch.advantages[order])
    torch.testing.assert_close(torch.cat([p.rewards for p in parts]), batch.rewards[order])
    for p, rows in zip(parts, ([2, 4], [0, 1], [3, 5])):
        width = p.input_ids.shape[1]
        assert torch.equal(p.input_ids, batch.input_ids[rows, :width])
        torch.testing.assert_close(p.old_logprobs, batch.old_logprobs[rows, :width])
        torch.testing.assert_close(p.completion_mask, batch.completion_mask[rows, :width])
        assert batch.attention_mask[rows, width:].sum() == 0  # nothing but padding was cut
    assert sum(int(p.completion_mask.sum()) for p in parts) == batch.num_tokens
    with pytest.raises(ValueError, match="micro_batch_size"):
        next(batch.micro_batches(0))


def test_build_batch_rejects_no_groups():
    with pytest.raises(ValueError, match="at least one group"):
        build_batch([], pad_id=0, eps=1e-6)
