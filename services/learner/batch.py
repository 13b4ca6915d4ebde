"""From scored groups to a GRPO training batch: choose which groups train, then lay them out as tensors.

Two pure steps, split so each can be tested on its own:

1. `select_groups` applies the learner's admission rules and counts every group it drops, by reason.
   A group trains at most once (`duplicate`); a dead-letter marker (its task could not be done, see
   `services.rollout.worker`) is counted as `dead_lettered`; a group trains only within the
   staleness bound (`stale`), only when
   every completion was scored (`failed`: "could not score" is never "scored 0", and a group is never
   trained partially), only when it carries a learning signal (`zero_variance`: equal rewards give
   all-zero advantages), and only when it is well formed (`malformed`: an empty prompt, fewer than two
   completions, log-probs that do not match the token ids, which would crash or misalign the step, or
   completions of more than one policy version).
2. `build_batch` turns the kept groups into right-padded `[N, T]` tensors, one row per completion,
   prompt + completion, with the behaviour log-probs placed on the completion positions so that
   position t of every tensor refers to token t (see `services.learner.logprobs`).

The id key `run_id/prompt_id/epoch` is the one the trained-id set (saved with every checkpoint) holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from services.learner.grpo import group_advantages
from services.pb import rollout_pb2
from services.transport.names import group_key

DROP_REASONS = ("duplicate", "dead_lettered", "stale", "malformed", "failed", "zero_variance")


@dataclass
class Selection:
    """The groups admitted for training, and how many were dropped for each reason."""

    groups: list[rollout_pb2.ScoredGroup]
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    # Key of every dropped group with its reason, for logging and dead-lettering.
    dropped_keys: list[tuple[str, str]] = field(default_factory=list)


def _drop_reason(
    group: rollout_pb2.ScoredGroup,
    key: str,
    seen: set[str],
    current_version: int,
    max_staleness: int,
    version_floor: int,
) -> str | None:
    if key in seen:
        return "duplicate"
    if group.dead_letter_reason:
        return "dead_lettered"
    if current_version - group.policy_version > max_staleness or group.policy_version < version_floor:
        return "stale"
    completions = group.completions
    if (
        not group.prompt_token_ids
        or len(completions) < 2
        or any(len(c.logprobs) != len(c.completion_token_ids) for c in completions)
        or any(c.policy_version != group.policy_version for c in completions)
    ):
        return "malformed"
    if any(c.status != rollout_pb2.REWARD_STATUS_OK for c in completions):
        return "failed"
    if len({c.total_reward for c in completions}) == 1:
        return "zero_variance"
    return None


def select_groups(
    groups: Sequence[rollout_pb2.ScoredGroup],
    trained_ids: set[str],
    current_version: int,
    max_staleness: int,
    version_floor: int = 0,
) -> Selection:
    """Split `groups` into the ones to train and counts of dropped ones by reason (see module doc).

    Each group is counted once, under the first reason that applies, in the order of `DROP_REASONS`.
    A second copy of a group within `groups` is a `duplicate` too. `trained_ids` is not modified: the
    caller adds the keys once the step that used them is durable. A group sampled by a version older
    than `version_floor` is stale whatever `max_staleness` says (a restarted learner's floor).
    """
    if max_staleness < 0:
        raise ValueError(f"max_staleness={max_staleness} must be >= 0 (0 means strictly on-policy)")
    seen = set(trained_ids)
    selection = Selection(groups=[])
    for group in groups:
        key = group_key(group.id)
        reason = _drop_reason(group, key, seen, current_version, max_staleness, version_floor)
        seen.add(key)
        if reason is None:
            selection.groups.append(group)
        else:
            selection.dropped[reason] += 1
            selection.dropped_keys.append((key, reason))
    return selection


@dataclass
class GRPOBatch:
    """One GRPO step's data: N = total completions over all groups, T = longest prompt + completion."""

    input_ids: Tensor  # [N, T] long, prompt + completion, right-padded with pad_id
    attention_mask: Tensor  # [N, T] long, 1 on real tokens
    completion_mask: Tensor  # [N, T] float, 1 on completion tokens (the positions the loss uses)
    old_logprobs: Tensor  # [N, T] float, behaviour log-prob of token t at position t; 0 elsewhere
    advantages: Tensor  # [N] float, group-relative advantage of each completion
    rewards: Tensor  # [N] float, total reward of each completion
    group_keys: list[str]  # key of every group in the batch, in order
    group_sizes: list[int]  # completions per group, in order

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def reward_stats(self) -> dict[str, float]:
        """Reward and advantage statistics of the batch, for metrics."""
        lengths = self.completion_mask.sum(dim=1)  # [N]
        return {
            "reward_mean": float(self.rewards.mean()),
            "reward_std": float(self.rewards.std()) if self.num_sequences > 1 else 0.0,
            "reward_max": float(self.rewards.max()),
            "reward_min": float(self.rewards.min()),
            "adv_mean": float(self.advantages.mean()),
            "adv_abs_mean": float(self.advantages.abs().mean()),
            "adv_max": float(self.advantages.max()),
            "adv_min": float(self.advantages.min()),
            "completion_len_mean": float(lengths.mean()),
            "num_groups": float(len(self.group_keys)),
            "num_sequences": float(self.num_sequences),
        }

    def micro_batches(self, size: int) -> Iterator[GRPOBatch]:
        """Micro-batches of at most `size` rows, longest rows first, each trimmed to its own longest row.

        Rows are ordered by length (stable) before they are sliced, so rows of like length share a
        micro-batch and little of it is padding: with 128 completions of 15 to 112 tokens (uniform) in
        micro-batches of 32, the model runs on 26% fewer tokens than in batch order
        (bench/learner_step.py). Every loss here is a sum over rows divided by a whole-batch count, so
        the order changes no gradient beyond float rounding. The longest go first: a micro-batch that
        does not fit in memory fails on the first one."""
        if size < 1:
            raise ValueError(f"micro_batch_size={size} must be >= 1")
        lengths = self.attention_mask.sum(dim=1)  # [N]
        order = torch.argsort(lengths, descending=True, stable=True)  # [N]
        for start in range(0, self.num_sequences, size):
            rows = order[start : start + size]
            width = int(lengths[rows].max())
            yield GRPOBatch(
                input_ids=self.input_ids[rows, :width],
                attention_mask=self.attention_mask[rows, :width],
                completion_mask=self.completion_mask[rows, :width],
                old_logprobs=self.old_logprobs[rows, :width],
                advantages=self.advantages[rows],
                rewards=self.rewards[rows],
                group_keys=[],
                group_sizes=[],
            )

    def to(self, device: str | torch.device) -> GRPOBatch:
        return GRPOBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            completion_mask=self.completion_mask.to(device),
            old_logprobs=self.old_logprobs.to(device),
            advantages=self.advantages.to(device),
            rewards=self.rewards.to(device),
            group_keys=self.group_keys,
            group_sizes=self.group_sizes,
        )


def build_batch(groups: Sequence[rollout_pb2.ScoredGroup], pad_id: int, eps: float) -> GRPOBatch:
    """Lay out admitted groups (see `select_groups`) as right-padded tensors with advantages.

    Row i is prompt + completion i. The completion token j sits at position P + j (P = prompt length),
    and its behaviour log-prob goes to `old_logprobs[i, P + j]`, matching `token_logprobs`, whose
    position t is log p(x_t | x_<t).
    """
    if not groups:
        raise ValueError("build_batch needs at least one group; select_groups admitted none")
    rows: list[list[int]] = []
    spans: list[tuple[int, list[float]]] = []  # (prompt length, completion log-probs) per row
    advantages: list[Tensor] = []
    rewards: list[float] = []
    for group in groups:
        prompt = list(group.prompt_token_ids)
        group_rewards = torch.tensor([[c.total_reward for c in group.completions]])  # [1, G]
        advantages.append(group_advantages(group_rewards, eps)[0])  # [G]
        for completion in group.completions:
            rows.append(prompt + list(completion.completion_token_ids))
            spans.append((len(prompt), list(completion.logprobs)))
            rewards.append(completion.total_reward)

    n, width = len(rows), max(len(r) for r in rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((n, width), dtype=torch.long)  # [N, T]
    completion_mask = torch.zeros((n, width), dtype=torch.float32)  # [N, T]
    old_logprobs = torch.zeros((n, width), dtype=torch.float32)  # [N, T]
    for i, (row, (prompt_len, logprobs)) in enumerate(zip(rows, spans, strict=True)):
        end = len(row)
        input_ids[i, :end] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, :end] = 1
        completion_mask[i, prompt_len:end] = 1.0
        old_logprobs[i, prompt_len:end] = torch.tensor(logprobs, dtype=torch.float32)
    return GRPOBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        completion_mask=completion_mask,
        old_logprobs=old_logprobs,
        advantages=torch.cat(advantages),  # [N]
        rewards=torch.tensor(rewards, dtype=torch.float32),  # [N]
        group_keys=[group_key(g.id) for g in groups],
        group_sizes=[len(g.completions) for g in groups],
    )
