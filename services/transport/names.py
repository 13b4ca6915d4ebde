"""Names every process agrees on: stream names per stage, the readers' consumer group, a task's key."""

from __future__ import annotations

# Consumer group of every reader of a groups stream (learner, eval and rejection-sampling collectors).
GROUP_READERS = "readers"


def groups_stream_for(base: str, stage: str) -> str:
    """RL groups go to the learner's stream; other stages (eval, rejection sampling) get their own."""
    return base if stage in ("", "rl") else f"{base}:{stage}"


def group_key(task_id) -> str:
    """Stable key of a task and of the group made from it (a `TaskId`): `run_id/prompt_id/epoch`."""
    return f"{task_id.run_id}/{task_id.prompt_id}/{task_id.epoch}"
