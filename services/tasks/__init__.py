"""Datasets and prompt templates: what the policy is asked and what a correct answer is.

Everything here is pure (no ray, grpc, redis or vllm), so splits and prompts can be rebuilt anywhere
from the config alone. `load_splits` is the one factory that maps `task.name` to a generator.
"""

from __future__ import annotations

from typing import Any

from services.tasks.arithmetic import Problem, make_splits

TASK_NAMES = ("addition",)


def load_splits(cfg: Any) -> dict[str, list[Problem]]:
    """Splits ("train", "heldout", "cold_start") of the task named by `cfg.name` (a TaskConfig)."""
    if cfg.name == "addition":
        return make_splits(cfg)
    raise ValueError(f"task.name must be one of {list(TASK_NAMES)}, got {cfg.name!r}")
