"""Turn per-scorer results into reward components and a total on each Completion (pure).

"Could not score" is not "scored 0": a component that failed keeps its status, the completion's
status becomes that failure, and its total is left at 0 *with* a non-OK status, which the learner
never trains on (a group with any non-OK completion is retried or dead-lettered whole).
"""

from __future__ import annotations

from services.pb import rollout_pb2

STATUS = {
    "ok": rollout_pb2.REWARD_STATUS_OK,
    "timeout": rollout_pb2.REWARD_STATUS_TIMEOUT,
    "error": rollout_pb2.REWARD_STATUS_ERROR,
    "unavailable": rollout_pb2.REWARD_STATUS_UNAVAILABLE,
}


def reward_weights(cfg) -> dict[str, float]:
    """Scorer name -> weight in the total, for the scorers this stage uses."""
    weights = {name: float(getattr(cfg, f"w_{name}")) for name in cfg.scorers}
    return weights


def apply_scores(
    completion: rollout_pb2.Completion, scores: dict[str, object], weights: dict[str, float]
) -> None:
    """Attach every scorer's result (name -> ScoreResult-like) to `completion` and set its total."""
    total, status = 0.0, rollout_pb2.REWARD_STATUS_OK
    for name, result in scores.items():
        value = float(result.value)
        comp_status = STATUS[str(getattr(result.status, "value", result.status))]
        completion.rewards.append(
            rollout_pb2.RewardComponent(
                name=name, value=value, status=comp_status, detail=result.detail or ""
            )
        )
        if comp_status != rollout_pb2.REWARD_STATUS_OK:
            if status == rollout_pb2.REWARD_STATUS_OK:
                status = comp_status
            continue
        total += weights[name] * value
    completion.status = status
    completion.total_reward = total if status == rollout_pb2.REWARD_STATUS_OK else 0.0
