"""SFT datasets on disk: one JSON object per line with prompt_id, prompt, completion and answer.

JSONL is what every SFT trainer in the field reads and what a person can open and grep. The cold-start
pool, rejection-sampled data and distillation sets all use this one row shape, so the learner has one
reader. Reading validates every line and names the line number and the missing or malformed field,
because these files are often written by hand or by other tools. Writing goes through a temporary file
and a rename, so a crash never leaves a half-written dataset that a resumed run would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from services.tasks.problem import Problem
from services.tasks.prompts import render_prompt

SFT_FIELDS = ("prompt_id", "prompt", "completion", "answer")


def check_sft_row(row: Any, where: str) -> dict[str, str]:
    """Return `row` as a plain dict of the SFT fields; ValueError naming `where` and the field if not."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object with fields {list(SFT_FIELDS)}, got {row!r:.80}")
    out = {}
    for name in SFT_FIELDS:
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (every row needs {list(SFT_FIELDS)})")
        value = row[name]
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        out[name] = value
    if not out["prompt_id"]:
        raise ValueError(f"{where}: field 'prompt_id' must not be empty")
    return out


def write_sft_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write `rows` to `path` atomically (validated first); return the number of rows written."""
    checked = [check_sft_row(row, f"row {i}") for i, row in enumerate(rows)]
    return write_jsonl(path, checked)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as JSONL through a temporary file and a rename; return the number written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a dataset is meant to be read by others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def read_sft_jsonl(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read and validate an SFT JSONL file; blank lines are skipped, anything else must be a full row."""
    return read_jsonl(path, check_sft_row)


def read_jsonl(path: str | os.PathLike[str], check: Callable[[Any, str], dict]) -> list[dict]:
    """Rows of a JSONL file, each passed through `check(row, "file:line")`; blank lines are skipped.
    A line that is not JSON, or that `check` rejects, fails with a ValueError naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            rows.append(check(obj, where))
    return rows


def cold_start_rows(
    problems: Iterable[Problem], render: Callable[[str], str] = render_prompt
) -> list[dict[str, str]]:
    """SFT rows teaching the worked format: one per problem of a task's cold_start split.

    `render` turns a question into the prompt text; pass a chat-template renderer for real HF models.
    A problem without a worked solution is an error naming it (a cold start must see the format).
    """
    rows = []
    for p in problems:
        if not p.solution:
            raise ValueError(f"cold-start problem {p.prompt_id!r} ({p.source}) has no worked solution")
        rows.append(
            {
                "prompt_id": p.prompt_id,
                "prompt": render(p.question),
                "completion": p.solution,
                "answer": p.answer,
            }
        )
    return rows
