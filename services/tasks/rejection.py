"""Rejection sampling (DeepSeek-R1 stage 3): keep the RL policy's good completions as SFT data.

The recipe: sample k completions per prompt from the RL checkpoint, score them (verifier, format
checker, language-consistency scorer), keep those every named scorer accepts, drop repeats, keep at
most `max_per_prompt` per prompt, and mix in general, non-reasoning data (R1 used about 600k reasoning
and 200k general rows, a general ratio of 0.25) so the SFT stage does not forget how to answer
plainly. The output rows are the project's SFT rows plus per-row provenance.

A sample is a plain dict, the shape `r1forge score` writes (`services.reward.batch_score`)::

    {"prompt_id", "prompt", "answer", "completion", "source": str, "policy_version": int,
     "sample_index": int, "rewards": {name: {"value": float, "status": "ok" | "timeout" | ..., "detail"}}}

Every function here is pure: no protobuf, ray or redis. Order is kept wherever nothing says otherwise,
and the one shuffle (`mix`) is seeded, so the same samples and seed give the same file.

Provenance: an output row is `SFT_FIELDS` plus `PROVENANCE_FIELDS`. `check_sft_row` and
`read_sft_jsonl` ignore (drop) extra keys, so the learner reads these rows unchanged; but
`write_sft_jsonl` writes only the SFT fields, so write them with `write_selected` to keep provenance.
General rows carry `policy_version` and `sample_index` None and empty `rewards`, so every row has the
same keys (and a columnar reader sees one schema).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from services.tasks.datasets import SFT_FIELDS, check_sft_row, write_jsonl
from services.tasks.preferences import check_pair_row

log = logging.getLogger(__name__)

PROVENANCE_FIELDS = ("source", "policy_version", "sample_index", "rewards")


# --- one sample -------------------------------------------------------------------------------------------


def check_sample(sample: Any, where: str) -> None:
    """ValueError naming `where` and the field unless `sample` has the sample shape (module doc)."""
    check_sft_row(sample, where)  # prompt_id, prompt, completion, answer: strings, prompt_id non-empty
    if not isinstance(sample.get("source"), str) or not sample["source"]:
        raise ValueError(f"{where}: field 'source' must be a non-empty string, got {sample.get('source')!r}")
    for name in ("policy_version", "sample_index"):
        value = sample.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}: field {name!r} must be an integer >= 0, got {value!r}")
    rewards = sample.get("rewards")
    if not isinstance(rewards, Mapping):
        raise ValueError(f"{where}: field 'rewards' must be an object of scorer name -> component")


def _where(sample: Mapping[str, Any]) -> str:
    return f"sample {sample.get('prompt_id')!r}#{sample.get('sample_index')}"


def _rejection(sample: Mapping[str, Any], min_scores: Mapping[str, float]) -> tuple[str, str] | None:
    """(kind, reason) for the first scorer in `min_scores` that does not accept `sample`; None if all do."""
    if not min_scores:
        raise ValueError("min_scores is empty, so every sample would pass; name at least one scorer")
    for name, minimum in min_scores.items():
        if not isinstance(minimum, int | float) or isinstance(minimum, bool):
            raise ValueError(f"min_scores[{name!r}] must be a number, got {minimum!r}")
    rewards = sample.get("rewards")
    if not isinstance(rewards, Mapping):
        raise ValueError(f"{_where(sample)}: field 'rewards' must be an object of scorer name -> component")
    for name, minimum in min_scores.items():
        component = rewards.get(name)
        if component is None:
            return f"{name} missing", f"{name} missing"
        if not isinstance(component, Mapping) or "status" not in component or "value" not in component:
            raise ValueError(
                f"{_where(sample)}: rewards[{name!r}] must be an object with 'value' and 'status'"
            )
        status = component["status"]
        if status != "ok":
            # "Could not score" is not "scored 0", but neither is good enough to train on.
            return f"{name} status {status}", f"{name} status {status}"
        value = component["value"]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{_where(sample)}: rewards[{name!r}]['value'] must be a number, got {value!r}")
        if not value >= minimum:  # `not >=` so that NaN is rejected too
            return f"{name} below minimum", f"{name} {value} < {minimum}"
    return None


def accepts(sample: Mapping[str, Any], min_scores: Mapping[str, float]) -> tuple[bool, str]:
    """(True, "") when every scorer named in `min_scores` has a component with status "ok" and value >= its
    minimum; else (False, reason) for the first failing scorer in `min_scores` order, e.g. "accuracy 0.0 <
    1.0", "language missing", "format status timeout".
    """
    rejection = _rejection(sample, min_scores)
    return (True, "") if rejection is None else (False, rejection[1])


def to_sft_row(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The SFT row of an accepted sample, with its provenance (`PROVENANCE_FIELDS`) kept."""
    check_sample(sample, _where(sample))
    row: dict[str, Any] = {name: sample[name] for name in SFT_FIELDS}
    row.update(
        source=sample["source"],
        policy_version=sample["policy_version"],
        sample_index=sample["sample_index"],
        rewards={name: dict(component) for name, component in sample["rewards"].items()},
    )
    return row


# --- filters over many samples ------------------------------------------------------------------------------


def _normalised(text: str) -> str:
    return " ".join(text.split())


def dedupe(samples: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`samples` without those whose completion (whitespace collapsed, stripped) repeats an earlier one for
    the same prompt_id; the first occurrence stays, order is kept."""
    seen: set[tuple[str, str]] = set()
    out = []
    for sample in samples:
        key = (sample["prompt_id"], _normalised(sample["completion"]))
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


def cap_per_prompt(samples: Iterable[Mapping[str, Any]], max_per_prompt: int) -> list[Mapping[str, Any]]:
    """The first `max_per_prompt` samples of each prompt_id, order kept (so one easy prompt with k good
    samples does not outweigh hard prompts with one)."""
    if not isinstance(max_per_prompt, int) or isinstance(max_per_prompt, bool) or max_per_prompt < 1:
        raise ValueError(f"max_per_prompt must be an integer >= 1, got {max_per_prompt!r}")
    kept: Counter[str] = Counter()
    out = []
    for sample in samples:
        if kept[sample["prompt_id"]] < max_per_prompt:
            kept[sample["prompt_id"]] += 1
            out.append(sample)
    return out


# --- general data and the mix ---------------------------------------------------------------------------


def general_rows(
    pairs: Sequence[Mapping[str, Any]],
    n: int,
    seed: int,
    source: str = "general",
    render: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """SFT rows from `n` preference pairs (all of them when fewer), picked with `seed`: the pair's prompt
    and its `chosen` response, which answers plainly (or refuses a harmful request with a redirect).

    prompt_id is f"{topic}-{index in pairs}", answer "" (nothing to verify). `render` turns the raw
    request into the prompt text, e.g. a chat template, so general prompts look like reasoning ones.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    checked = [check_pair_row(pair, f"pair {i}") for i, pair in enumerate(pairs)]
    picked = random.Random(seed).sample(range(len(checked)), min(n, len(checked)))
    return [
        {
            "prompt_id": f"{checked[i]['topic']}-{i}",
            "prompt": render(checked[i]["prompt"]) if render else checked[i]["prompt"],
            "completion": checked[i]["chosen"],
            "answer": "",
            "source": source,
            "policy_version": None,  # not sampled from the policy
            "sample_index": None,
            "rewards": {},
        }
        for i in picked
    ]


def general_count(num_reasoning: int, general_ratio: float) -> int:
    """How many general rows make them `general_ratio` of the total with `num_reasoning` reasoning rows.

    g / (r + g) = ratio gives g = ratio * r / (1 - ratio); of the two integers around it, the one whose
    share is nearer the ratio (the smaller on a tie).
    """
    if not isinstance(general_ratio, int | float) or not 0.0 <= general_ratio < 1.0:
        raise ValueError(f"general_ratio must be in [0, 1), got {general_ratio!r} (0 = no general data)")
    if num_reasoning == 0 or general_ratio == 0.0:
        return 0
    exact = general_ratio * num_reasoning / (1.0 - general_ratio)
    candidates = (math.floor(exact), math.ceil(exact))
    return min(candidates, key=lambda g: (abs(g / (num_reasoning + g) - general_ratio), g))


def mix(
    reasoning_rows: Sequence[Mapping[str, Any]],
    general_rows: Sequence[Mapping[str, Any]],
    general_ratio: float,
    seed: int,
) -> list[Mapping[str, Any]]:
    """All reasoning rows plus general rows making up `general_ratio` of the total (`general_count`),
    picked and then shuffled together with `seed`. With too few general rows, all are used (a warning is
    logged; `select` reports it in its stats)."""
    wanted = general_count(len(reasoning_rows), general_ratio)
    if wanted > len(general_rows):
        log.warning(
            "general_ratio=%s wants %d general rows for %d reasoning rows, only %d available: using all",
            general_ratio, wanted, len(reasoning_rows), len(general_rows),
        )  # fmt: skip
    rng = random.Random(seed)
    out = list(reasoning_rows) + rng.sample(list(general_rows), min(wanted, len(general_rows)))
    rng.shuffle(out)
    return out


# --- the whole selection ------------------------------------------------------------------------------------


def select(
    samples: Sequence[Mapping[str, Any]],
    min_scores: Mapping[str, float],
    max_per_prompt: int | None,
    general: Sequence[Mapping[str, Any]],
    general_ratio: float,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, stats): accept -> dedupe -> cap per prompt -> SFT rows with provenance -> mix with `general`
    (SFT rows, e.g. from `general_rows`). `max_per_prompt` None keeps every distinct accepted sample.

    stats: samples, prompts (distinct prompt_ids sampled), accepted, rejected_by ({kind: count}, one
    kind per rejected sample: its first failing scorer), duplicates, capped, prompts_with_any (prompts
    with an accepted sample), reasoning_rows, general_rows (used), general_wanted.
    """
    for i, sample in enumerate(samples):
        check_sample(sample, f"sample {i}")
    general_checked = [_general_row(row, f"general row {i}") for i, row in enumerate(general)]
    general_count(0, general_ratio)  # validate the ratio before any work
    accepted = []
    rejected_by: Counter[str] = Counter()
    for sample in samples:
        rejection = _rejection(sample, min_scores)
        if rejection is None:
            accepted.append(sample)
        else:
            rejected_by[rejection[0]] += 1
    distinct = dedupe(accepted)
    kept = distinct if max_per_prompt is None else cap_per_prompt(distinct, max_per_prompt)
    reasoning = [to_sft_row(sample) for sample in kept]
    rows = mix(reasoning, general_checked, general_ratio, seed)
    stats = {
        "samples": len(samples),
        "prompts": len({s["prompt_id"] for s in samples}),
        "accepted": len(accepted),
        "rejected_by": dict(sorted(rejected_by.items())),
        "duplicates": len(accepted) - len(distinct),
        "capped": len(distinct) - len(kept),
        "prompts_with_any": len({s["prompt_id"] for s in accepted}),
        "reasoning_rows": len(reasoning),
        "general_rows": len(rows) - len(reasoning),
        "general_wanted": general_count(len(reasoning), general_ratio),
    }
    return [dict(row) for row in rows], stats


def _general_row(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A general SFT row with the provenance keys every output row has (defaults for plain SFT rows)."""
    out: dict[str, Any] = check_sft_row(row, where)
    out.update(
        source=row.get("source") or "general",
        policy_version=row.get("policy_version"),
        sample_index=row.get("sample_index"),
        rewards=dict(row.get("rewards") or {}),
    )
    return out


def write_selected(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write selected rows as JSONL atomically, provenance included (`write_sft_jsonl` would drop it)."""
    rows = list(rows)
    for i, row in enumerate(rows):
        check_sft_row(row, f"row {i}")
    return write_jsonl(path, rows)
