"""General (non-reasoning) prompts: the user requests of the shipped preference pairs.

R1's second RL stage mixes reasoning prompts, judged by rules, with general prompts, judged by a
reward model for helpfulness and harmlessness. The general prompts here are the distinct requests of
the preference training pairs (`services.tasks.preferences`); they have no reference answer.
"""

from __future__ import annotations

import os

from services.tasks.preferences import read_pairs
from services.tasks.problem import Problem


def general_prompts(path: str | os.PathLike[str], limit: int | None = None) -> list[Problem]:
    """The distinct prompts of a preference-pairs file, in file order, at most `limit`."""
    seen: dict[str, None] = {}
    for row in read_pairs(path):
        seen.setdefault(row["prompt"], None)
    prompts = [Problem(f"general-{i:05d}", text, "", "general") for i, text in enumerate(seen)]
    if not prompts:
        raise ValueError(f"{path}: no general prompts")
    return prompts[:limit] if limit else prompts
