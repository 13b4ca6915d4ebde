"""The task interface: what every prompt source (synthetic, a local dataset, reasoning-gym) provides.

A task yields `Problem`s and splits them deterministically into three disjoint lists:

* ``train``: the RL prompts (question + reference answer only);
* ``heldout``: never trained on, used by every evaluation;
* ``cold_start``: the small labelled pool the cold-start SFT sees, problems that carry a worked
  ``solution`` (the whole completion, in the R1 ``<think>...</think><answer>...</answer>`` format).

A task also names the reward scorer that judges correctness for it (`accuracy_scorer`): math answers
go to the math-verify service ("accuracy"), reasoning-gym items to the "gym" service, which calls the
item's own dataset with the item's metadata. The metadata travels as a JSON object in
`PromptTask.metadata_json` (protobuf, never pickle), so any process can score an item it did not make.

`source` is the task's name (or, in a mix, the sub-task's), stamped on every PromptTask and group, so
metrics and evaluations can be split per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SPLITS = ("train", "heldout", "cold_start")


@dataclass(frozen=True)
class Problem:
    """One problem; `prompt_id` is unique within the task and stable across runs."""

    # Stable id, unique within the task ("train-000123", "gsm8k-3f2a...").
    prompt_id: str
    # The problem as the user turn states it, without the format instruction ("What is 47+85?").
    question: str
    # Reference answer the task's scorer compares against, as text ("" for prompts without one).
    answer: str
    # Task (or sub-task) the problem comes from, for per-source metrics ("addition", "gsm8k", "chain_sum").
    source: str
    # A worked completion in the R1 format for the cold start ("" when the task has none for it).
    solution: str = ""
    # JSON object the scorer needs besides the answer (a reasoning-gym entry); "" when none.
    metadata_json: str = ""


class Task(Protocol):
    """A source of problems with a verifiable answer."""

    # Name of the task, also the default `source` of its problems.
    name: str
    # Reward scorer whose score is this task's correctness ("accuracy" = math-verify, "gym" = reasoning-gym).
    accuracy_scorer: str

    def splits(self) -> dict[str, list[Problem]]:
        """{"train", "heldout", "cold_start"}: pairwise disjoint, a pure function of the task's config."""
        ...

    def report(self) -> dict:
        """What loading the task found worth saying (rows read, rows skipped and why); JSON-ready."""
        ...
