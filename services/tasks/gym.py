"""reasoning-gym tasks: procedurally generated problems, each judged by its own dataset's check.

`GymTask` draws problems from one reasoning-gym dataset (`task.gym_name`) or a weighted mix
(`task.gym_weights`, name -> weight; each split is shared out by largest remainder). reasoning-gym is
pure Python and offline: `create_dataset(name, seed=, size=, **kwargs)` generates item i from a
`Random(seed + i)`, so a split is a pure function of the config and nothing is stored or downloaded.

Splits, per dataset:
* train: `create_dataset(name, seed=task.seed, size=its share of task.train_size, **task.gym_kwargs[name])`;
* held-out and cold-start: the same generator at seeds derived from (task.seed, name, split) by hash,
  far from each other and from task.seed, so the three index ranges (and their items) are disjoint by
  construction. The procedural space can still produce the same question twice (a small config asks
  "Calculate 3 + 4." again), so a held-out item whose question is in train, and a cold-start item whose
  question is in train or held-out (or earlier in its own split), is dropped and the next candidate taken;
  `report()` counts the drops, and any shortfall when the space ran out.
A mix interleaves its datasets in each split by a seeded shuffle, so any prefix of held-out (the eval
reads the first `eval.num_prompts`) is representative.

Each `Problem` carries the whole reasoning-gym entry as `metadata_json` (JSON-safe: tuples become lists),
which the "gym" reward scorer hands back to the dataset's `score_answer`. The answer is
`str(entry["answer"])`.

Cold start: reasoning-gym has no worked solutions in general, so the gym cold-start examples teach the
R1 format and the answers only. Their think text is brief and honest: the expression and its value when
the metadata has an expression (basic_arithmetic, chain_sum: "5 - 3 - 6 = -4"), else a plain statement of
the answer. It is not a chain of thought to imitate; the reasoning has to come from RL.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

from services.tasks.problem import SPLITS, Problem

# Configuration arguments the task sets itself (task.seed and the split sizes), never gym_kwargs.
_RESERVED_KWARGS = ("seed", "size")
# Derived seeds stay below 2**31 (some generators seed numpy, which wants 32 bits) minus room for indices.
_SEED_SPACE = 2**31 - 2**24
# Candidates drawn for a held-out or cold-start split of n items before giving up: n * factor + slack.
_CANDIDATE_FACTOR, _CANDIDATE_SLACK = 4, 64


def dataset_names() -> list[str]:
    """Every dataset name reasoning-gym registers, sorted."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def json_safe(value: Any) -> Any:
    """`value` with tuples (and sets) turned into lists and keys into strings, so JSON round-trips it."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=repr)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def cold_start_solution(entry: dict) -> str:
    """The R1-format completion a cold-start example teaches: a brief think text, then the answer."""
    answer = _answer_text(entry)
    expression = entry.get("metadata", {}).get("expression")
    if isinstance(expression, str) and expression.strip() and expression.strip() != answer:
        think = f"{expression.strip()} = {answer}"
    else:
        think = f"The answer is {answer}."
    return f"<think>{think}</think><answer>{answer}</answer>"


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` shared out in proportion to `weights` (largest remainders; ties go to the earlier name)."""
    weight_sum = sum(weights.values())
    raw = {name: total * w / weight_sum for name, w in weights.items()}
    counts = {name: int(x) for name, x in raw.items()}
    order = sorted(weights, key=lambda name: raw[name] - counts[name], reverse=True)
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def derived_seed(seed: int, name: str, split: str) -> int:
    """A seed for (`name`, `split`) that is a pure function of `seed`, far from it and from the others."""
    digest = hashlib.sha256(f"r1forge-gym/{seed}/{name}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_SPACE


def _answer_text(entry: dict) -> str:
    answer = entry.get("answer")
    return "" if answer is None else str(answer)


def _plain(value: Any) -> Any:
    """A plain dict/list copy of an OmegaConf node (or the value itself)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a project dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class GymTask:
    """The `Task` over reasoning-gym datasets; scored by the "gym" reward service."""

    name = "gym"
    accuracy_scorer = "gym"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.weights = _mix_weights(cfg)
        self.kwargs = _dataset_kwargs(cfg, self.weights)
        for field in ("train_size", "heldout_size", "cold_start_size", "seed"):
            value = getattr(cfg, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"task.{field} must be a non-negative integer, got {value!r}")
        for name in self.weights:
            _check_kwargs(name, self.kwargs[name])
        self._splits: dict[str, list[Problem]] | None = None
        self._report: dict[str, dict] = {}

    def splits(self) -> dict[str, list[Problem]]:
        if self._splits is None:
            self._splits = self._build()
        return {split: list(problems) for split, problems in self._splits.items()}

    def report(self) -> dict:
        self.splits()
        unused = sorted(set(_plain(self.cfg.gym_kwargs) or {}) - set(self.weights))
        report = {"task": self.name, "weights": dict(self.weights), "datasets": self._report}
        return {**report, "unused_gym_kwargs": unused} if unused else report

    def _build(self) -> dict[str, list[Problem]]:
        sizes = {
            "train": self.cfg.train_size,
            "heldout": self.cfg.heldout_size,
            "cold_start": self.cfg.cold_start_size,
        }
        shares = {split: largest_remainder(size, self.weights) for split, size in sizes.items()}
        seen: set[str] = set()  # questions of the splits built so far (train, then held-out, then cold-start)
        splits: dict[str, list[Problem]] = {split: [] for split in SPLITS}
        for split in SPLITS:  # train first: held-out and cold-start yield to it, never the other way round
            taken: set[str] = set()
            for name in self.weights:
                problems, counts = self._draw(name, split, shares[split][name], seen)
                taken.update(p.question for p in problems)
                splits[split] += problems
                self._report.setdefault(name, {}).update(counts)
            seen |= taken
            if sizes[split] and not splits[split]:
                raise ValueError(
                    f"task=gym: the {split} split is empty (task.{split}_size={sizes[split]}): every "
                    f"question {list(self.weights)} can make with these options is already in an earlier "
                    "split. Widen the dataset (task.gym_kwargs, e.g. more digits or terms), lower "
                    f"task.train_size, or set task.{split}_size=0 if the pipeline does not use it"
                )
            if len(self.weights) > 1:
                random.Random(f"{self.cfg.seed}/{split}").shuffle(splits[split])
        return splits

    def _draw(self, name: str, split: str, size: int, seen: set[str]) -> tuple[list[Problem], dict]:
        """`size` problems of dataset `name` for `split`, skipping questions in `seen`; and the counts."""
        import reasoning_gym

        if size == 0:
            return [], {split: 0}
        if split == "train":
            dataset = reasoning_gym.create_dataset(name, seed=self.cfg.seed, size=size, **self.kwargs[name])
            entries = [dataset[i] for i in range(size)]
            return [_problem(name, split, i, e) for i, e in enumerate(entries)], {split: size}
        seed = derived_seed(self.cfg.seed, name, split)
        budget = size * _CANDIDATE_FACTOR + _CANDIDATE_SLACK
        dataset = reasoning_gym.create_dataset(name, seed=seed, size=budget, **self.kwargs[name])
        problems: list[Problem] = []
        questions: set[str] = set()
        dropped = 0
        for i in range(budget):
            if len(problems) == size:
                break
            entry = dataset[i]
            if entry["question"] in seen or entry["question"] in questions:
                dropped += 1
                continue
            questions.add(entry["question"])
            problems.append(_problem(name, split, len(problems), entry))
        counts = {split: len(problems), f"{split}_dropped_duplicates": dropped}
        if len(problems) < size:
            counts[f"{split}_short"] = size - len(problems)
        return problems, counts


def _problem(name: str, split: str, index: int, entry: dict) -> Problem:
    safe = json_safe(entry)
    try:
        metadata_json = json.dumps(safe)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"reasoning-gym dataset {name!r} made an entry the gym scorer cannot receive (not JSON: {exc}); "
            "pick another dataset in task.gym_name/task.gym_weights"
        ) from exc
    return Problem(
        prompt_id=f"{name}-{split}-{index:06d}",
        question=safe["question"],
        answer=_answer_text(safe),
        source=name,
        solution=cold_start_solution(safe) if split == "cold_start" else "",
        metadata_json=metadata_json,
    )


def _mix_weights(cfg: Any) -> dict[str, float]:
    """name -> weight: {gym_name: 1} or the validated gym_weights; exactly one of the two must be set."""
    name, weights = cfg.gym_name, dict(_plain(cfg.gym_weights) or {})
    if bool(name) == bool(weights):
        given = "both are set" if name else "neither is set"
        raise ValueError(
            f"task=gym needs exactly one of task.gym_name (one dataset) and task.gym_weights (a mix, "
            f"name -> weight), but {given}; e.g. task.gym_name=basic_arithmetic, or "
            "task.gym_name=null +task.gym_weights.chain_sum=1 +task.gym_weights.basic_arithmetic=1"
        )
    valid = dataset_names()
    field = "task.gym_name" if name else "task.gym_weights"
    weights = {name: 1.0} if name else weights
    for dataset, weight in weights.items():
        if dataset not in valid:
            raise ValueError(
                f"{field} names {dataset!r}, which is not a reasoning-gym dataset; valid names: "
                f"{', '.join(valid)}"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"task.gym_weights.{dataset} must be a number >= 0, got {weight!r}")
    if sum(weights.values()) <= 0:
        raise ValueError(f"task.gym_weights must have a positive weight, got {weights}")
    return {dataset: float(weight) for dataset, weight in weights.items()}


def _dataset_kwargs(cfg: Any, weights: dict[str, float]) -> dict[str, dict]:
    """name -> the config arguments of that dataset (task.gym_kwargs), each checked for reserved names.

    Entries for datasets outside the task are ignored (configs/task/gym.yaml keeps its basic_arithmetic
    arguments when task.gym_name=chain_sum picks another dataset); `report()` lists them.
    """
    given = dict(_plain(cfg.gym_kwargs) or {})
    kwargs = {}
    for name in weights:
        args = dict(_plain(given.get(name)) or {})
        reserved = sorted(set(args) & set(_RESERVED_KWARGS))
        if reserved:
            raise ValueError(
                f"task.gym_kwargs.{name} sets {reserved}: the task sets those itself, "
                "from task.seed and task.train_size/heldout_size/cold_start_size; remove them"
            )
        kwargs[name] = args
    return kwargs


def _check_kwargs(name: str, kwargs: dict) -> None:
    """Build one item with `kwargs`, so a bad argument fails here naming task.gym_kwargs.<name>."""
    import reasoning_gym

    try:
        reasoning_gym.create_dataset(name, seed=0, size=1, **kwargs)[0]
    except Exception as exc:  # noqa: BLE001 - reasoning-gym raises TypeError, AssertionError, ValueError...
        raise ValueError(
            f"task.gym_kwargs.{name}={kwargs} is not a valid {name} config: {type(exc).__name__}: {exc}"
        ) from exc
