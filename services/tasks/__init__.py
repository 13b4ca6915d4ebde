"""Datasets and prompt templates: what the policy is asked and what a correct answer is.

Everything here is pure (no ray, grpc, redis or vllm), so splits and prompts can be rebuilt anywhere
from the config alone. `load_task` is the one factory that maps `task.name` to a `Task`
(`services.tasks.problem`): synthetic addition, a local dataset file, or reasoning-gym.
"""

from __future__ import annotations

from typing import Any

from services.tasks.problem import Problem, Task

TASK_NAMES = ("addition", "dataset", "gym")


def load_task(cfg: Any) -> Task:
    """The task named by `cfg.name` (a TaskConfig); ValueError naming the choices on an unknown name."""
    if cfg.name == "addition":
        from services.tasks.arithmetic import AdditionTask

        return AdditionTask(cfg)
    if cfg.name == "dataset":
        from services.tasks.dataset import DatasetTask

        return DatasetTask(cfg)
    if cfg.name == "gym":
        from services.tasks.gym import GymTask

        return GymTask(cfg)
    raise ValueError(f"task.name must be one of {list(TASK_NAMES)}, got {cfg.name!r}")


def load_splits(cfg: Any) -> dict[str, list[Problem]]:
    """Splits ("train", "heldout", "cold_start") of the task named by `cfg.name` (a TaskConfig)."""
    return load_task(cfg).splits()
