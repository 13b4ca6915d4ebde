"""Score a JSONL file of prompt/completion rows through reward services: the core of `r1forge score`.

Users need it to check a dataset before training on it and to run rejection sampling by hand. Each
input row is an object with `prompt` and `completion` (strings), and optionally `answer` (the reference
for the verifier, "" when there is none) and `language` (target language of the reasoning, "" = the
prompt's); every other field is copied through untouched. Each output row is the input row plus

    "rewards": {"<scorer>": {"value": 1.0, "status": "ok", "detail": ""}, ...},
    "total_reward": 1.2,        # weighted sum of the OK components (0 when status is not ok)
    "reward_status": "ok"       # the first non-OK component's status, else "ok"

combined exactly as the rollout workers combine rewards for training (`services.reward.combine`).
The whole input is validated before anything is scored, so a bad line fails fast with its line
number and nothing is half-written; the output is written atomically (`services.tasks.datasets.write_jsonl`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from services.pb import rollout_pb2
from services.reward.combine import apply_scores, component_dict, status_name
from services.reward.scorer import ScoreInput, ScoreResult

REQUIRED = ("prompt", "completion")
OPTIONAL = ("answer", "language")


class ScoreClient(Protocol):
    def score(self, items: list[ScoreInput]) -> list[ScoreResult]: ...


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate the rows of a JSONL file; ValueError naming the line and field otherwise."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file (r1forge score reads a JSONL file)")
    rows = []
    with source.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{source}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            rows.append(check_row(row, where))
    if not rows:
        raise ValueError(f"{source}: no rows to score")
    return rows


def check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object with {list(REQUIRED)}, got {type(row).__name__}")
    for name in REQUIRED:
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (every row needs {list(REQUIRED)})")
    for name in REQUIRED + OPTIONAL:
        if name in row and not isinstance(row[name], str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    return dict(row)


def score_rows(
    rows: list[dict[str, Any]],
    clients: Mapping[str, ScoreClient],
    weights: Mapping[str, float],
    chunk: int = 64,
) -> list[dict[str, Any]]:
    """Score every row with every client (one call per scorer per chunk, scorers in parallel)."""
    out = []
    with ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            items = [
                ScoreInput(i, r["prompt"], r["completion"], r.get("answer", ""), r.get("language", ""))
                for i, r in enumerate(part)
            ]
            futures = {name: pool.submit(c.score, items) for name, c in clients.items()}
            results = {name: f.result() for name, f in futures.items()}
            out += [_scored(row, {n: results[n][i] for n in results}, weights) for i, row in enumerate(part)]
    return out


def _scored(row: dict[str, Any], results: dict[str, ScoreResult], weights: Mapping[str, float]) -> dict:
    completion = rollout_pb2.Completion()
    apply_scores(completion, results, dict(weights))
    rewards = {r.name: component_dict(r) for r in completion.rewards}
    return {
        **row,
        "rewards": rewards,
        "total_reward": round(completion.total_reward, 6),  # float32 on the wire: 6 digits are real
        "reward_status": status_name(completion.status),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-scorer mean over OK values and count of non-OK ones, for the line `r1forge score` prints."""
    names = sorted({n for r in rows for n in r["rewards"]})
    out: dict[str, Any] = {"rows": len(rows), "not_ok": sum(r["reward_status"] != "ok" for r in rows)}
    for name in names:
        ok = [r["rewards"][name]["value"] for r in rows if r["rewards"][name]["status"] == "ok"]
        out[name] = sum(ok) / len(ok) if ok else None
    return out
