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


def status_name(status: int) -> str:
    """A proto RewardStatus as the lower-case word files and logs use ("ok", "timeout", ...)."""
    return rollout_pb2.RewardStatus.Name(status).removeprefix("REWARD_STATUS_").lower()


def component_dict(r: rollout_pb2.RewardComponent) -> dict:
    """One reward component as plain JSON: value (6 digits: it is a float32 on the wire), status, detail."""
    return {"value": round(r.value, 6), "status": status_name(r.status), "detail": r.detail}


def reward_weights(cfg, stage: str = "", source: str = "") -> dict[str, float]:
    """Scorer name -> weight in the total for prompts of `source` issued by `stage`.

    `cfg.source_weights[source]` wins (general prompts have no reference answer, so they are weighted
    differently wherever they appear), then `cfg.stage_weights[stage]`, then every scorer in
    `cfg.scorers` with its `w_<name>` default.
    """
    for table, key in ((cfg.source_weights, source), (cfg.stage_weights, stage)):
        if table and key in table:
            return {name: float(w) for name, w in table[key].items()}
    return {name: float(getattr(cfg, f"w_{name}")) for name in cfg.scorers}


def task_weights(task: rollout_pb2.PromptTask, cfg) -> dict[str, float]:
    """The weights a task carries, or the configured defaults when it carries none."""
    return dict(task.reward_weights) if task.reward_weights else reward_weights(cfg)


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
