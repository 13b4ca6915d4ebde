"""Soft-target datasets on disk: a teacher's completions with its top-k log-probs per generated token.

The distillation stage generates once with the teacher and trains students many times, so the teacher's
output is kept as a dataset: JSONL, one completion per row, the same on-disk habits as the SFT files in
`services.tasks.datasets` (a person can open and grep it; writing is atomic; reading validates every
line and names `file:line` and the field). A row:

    {"prompt_id": str, "prompt": str, "completion": str,
     "prompt_token_ids": [int], "completion_token_ids": [int],
     "topk_ids": [[int] * k per completion token], "topk_logprobs": [[float] * k per completion token],
     "teacher": str, "teacher_version": int, "k": int}

`topk_ids[j]` / `topk_logprobs[j]` are the teacher's k most likely tokens at the step that generated
`completion_token_ids[j]`, with log-probs normalised over the full vocabulary (vLLM's raw log-probs).
They need not be sorted, and the sampled token need not be among them. vLLM's `logprobs=k` returns up to
k + 1 entries per position (the sampled token is added when it is outside the top-k): keep the k with
rank <= k so every row has exactly k. Keep only completions that ended naturally (with the teacher's
EOS): a completion cut at the token limit would teach the student to stop, or not, where the teacher
never decided to.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.tasks.datasets import read_jsonl, write_jsonl

SOFT_TARGET_FIELDS = (
    "prompt_id", "prompt", "completion", "prompt_token_ids", "completion_token_ids",
    "topk_ids", "topk_logprobs", "teacher", "teacher_version", "k",
)  # fmt: skip
# Top-k probabilities normalised over the full vocabulary sum to at most 1; allow float rounding only.
_MASS_TOLERANCE = 1e-3


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_token_ids(value: Any, name: str, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: field {name!r} must be a non-empty list of token ids")
    for j, tok in enumerate(value):
        if not _is_int(tok) or tok < 0:
            raise ValueError(f"{where}: field {name!r}[{j}] must be a non-negative int, got {tok!r:.40}")
    return value


def _check_topk(row: Mapping[str, Any], k: int, length: int, where: str) -> None:
    """Both top-k fields: one list of exactly k per completion token, ids distinct, log-probs <= 0."""
    for name in ("topk_ids", "topk_logprobs"):
        value = row[name]
        if not isinstance(value, list) or len(value) != length:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise ValueError(
                f"{where}: field {name!r} must be a list with one entry per completion token "
                f"({length} = len(completion_token_ids)), got {got}"
            )
        for j, inner in enumerate(value):
            if not isinstance(inner, list) or len(inner) != k:
                got = len(inner) if isinstance(inner, list) else type(inner).__name__
                raise ValueError(
                    f"{where}: field {name!r}[{j}] must be a list of exactly k={k} entries, got {got}"
                )
    for j, (ids, lps) in enumerate(zip(row["topk_ids"], row["topk_logprobs"])):
        for m, tok in enumerate(ids):
            if not _is_int(tok) or tok < 0:
                raise ValueError(
                    f"{where}: field 'topk_ids'[{j}][{m}] must be a non-negative int, got {tok!r:.40}"
                )
        if len(set(ids)) != k:
            raise ValueError(
                f"{where}: field 'topk_ids'[{j}] repeats a token id ({ids}); the top-k are distinct"
            )
        for m, lp in enumerate(lps):
            if not isinstance(lp, int | float) or isinstance(lp, bool) or not math.isfinite(lp) or lp > 0:
                raise ValueError(
                    f"{where}: field 'topk_logprobs'[{j}][{m}] must be a finite log-prob <= 0, got {lp!r:.40}"
                )
        if sum(math.exp(lp) for lp in lps) > 1.0 + _MASS_TOLERANCE:
            raise ValueError(
                f"{where}: field 'topk_logprobs'[{j}] has probabilities summing past 1; they must be "
                "log-probs normalised over the full vocabulary (log_softmax), not logits"
            )


def check_soft_target_row(row: Any, where: str) -> dict[str, Any]:
    """Return `row` as a plain dict of the soft-target fields; ValueError naming `where` and the field."""
    if not isinstance(row, Mapping):
        raise ValueError(
            f"{where}: expected a JSON object with fields {list(SOFT_TARGET_FIELDS)}, got {row!r:.80}"
        )
    for name in SOFT_TARGET_FIELDS:
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (every row needs {list(SOFT_TARGET_FIELDS)})")
    for name in ("prompt_id", "prompt", "completion", "teacher"):
        if not isinstance(row[name], str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    for name in ("prompt_id", "teacher"):
        if not row[name]:
            raise ValueError(f"{where}: field {name!r} must not be empty")
    if not _is_int(row["teacher_version"]) or row["teacher_version"] < 0:
        raise ValueError(
            f"{where}: field 'teacher_version' must be a non-negative int, got {row['teacher_version']!r:.40}"
        )
    k = row["k"]
    if not _is_int(k) or k < 1:
        raise ValueError(f"{where}: field 'k' must be an int >= 1, got {k!r:.40}")
    _check_token_ids(row["prompt_token_ids"], "prompt_token_ids", where)
    completion = _check_token_ids(row["completion_token_ids"], "completion_token_ids", where)
    _check_topk(row, k, len(completion), where)
    return {name: row[name] for name in SOFT_TARGET_FIELDS}


def write_soft_targets(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write `rows` to `path` atomically (all validated first); return the number of rows written."""
    checked = [check_soft_target_row(row, f"row {i}") for i, row in enumerate(rows)]
    return write_jsonl(path, checked)


def read_soft_targets(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a soft-target JSONL file; blank lines are skipped, anything else must be a row."""
    return read_jsonl(path, check_soft_target_row)


def distill_examples(
    rows: Sequence[Mapping[str, Any]],
) -> list[tuple[list[int], list[int], list[list[int]], list[list[float]]]]:
    """The `(prompt_token_ids, completion_token_ids, topk_ids, topk_logprobs)` tuples that
    `services.learner.distill.build_distill_batch` takes, from validated rows (all with the same k)."""
    ks = {row["k"] for row in rows}
    if len(ks) > 1:
        raise ValueError(f"soft-target rows mix k values {sorted(ks)}; one batch layout needs one k")
    return [
        (row["prompt_token_ids"], row["completion_token_ids"], row["topk_ids"], row["topk_logprobs"])
        for row in rows
    ]
