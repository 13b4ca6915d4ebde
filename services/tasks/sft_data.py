"""SFT rows from local JSONL, JSON or parquet files, read through the Hugging Face `datasets` library.

Public SFT sets (distilled reasoning traces, general chat data) ship as parquet or JSON with their own
column names; `load_sft_rows` turns one local file into the project's SFT row shape
(`services.tasks.datasets.SFT_FIELDS`: prompt_id, prompt, completion, answer) so the learner keeps one
reader. Every returned row is checked, and errors name the file, the 0-based row index and the field.
`read_records` is the reading underneath, shared with the dataset task (`services.tasks.dataset`), which
reads its parquet files through it: one place for the rules below.

Local only, never the hub:
- the path must be an existing file (FileNotFoundError naming it otherwise), checked before `datasets`
  is called at all;
- only the packaged "json"/"parquet" builders are used, which `datasets` resolves without the hub, with
  `DownloadConfig(local_files_only=True)` as a second guard;
- `datasets` reads `data_files` as a glob pattern, so "train[1].jsonl" would silently load
  "train1.jsonl"; the absolute path is passed through `glob.escape` so it names exactly one file.

The cache: `datasets` converts the file to Arrow files under a cache directory (by default
~/.cache/huggingface/datasets). Here the default is a fresh temporary directory removed before the
function returns (the rows are plain Python lists by then, so nothing still maps those files). Pass
`cache_dir` to keep the Arrow copy between runs: a second call on an unchanged file then skips the
conversion.

Column types: `datasets` infers one type per column. Within one read chunk (10 MB) a column that
mixes strings with numbers becomes a `Json` column, decoded without quotes ("007" comes back as 7);
that is refused with the first offending row. Across chunks a later chunk is cast to the first
chunk's type, so in a large file a stray number after many strings silently arrives as a string.

`datasets` is imported inside the function: it is needed only by whoever loads such files.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from services.tasks.datasets import check_sft_row

# File suffix -> packaged `datasets` builder.
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_sft_rows(
    path: str | os.PathLike[str],
    *,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, str]]:
    """The first `limit` rows (all when None) of a local file as SFT rows, in file order.

    `prompt_field` and `completion_field` name the columns that hold the prompt and the completion.
    `prompt_id` comes from a "prompt_id" column when the file has one (a null cell counts as absent),
    else f"{file stem}-{row index}"; `answer` from an "answer" column, "" when absent or null. Other
    columns are ignored. Rows are 0-based over the file's records (blank JSONL lines are not records).
    """
    if prompt_field == completion_field:
        raise ValueError(f"prompt_field and completion_field are both {prompt_field!r}; name two columns")
    records = read_records(
        path,
        (prompt_field, completion_field),
        ("prompt_id", "answer"),
        limit=limit,
        cache_dir=cache_dir,
        hint="pass prompt_field=/completion_field= to read others",
    )
    source = Path(path)
    return [_row(record, i, source, prompt_field, completion_field) for i, record in enumerate(records)]


def read_records(
    path: str | os.PathLike[str],
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hint: str = "",
) -> list[dict[str, Any]]:
    """The first `limit` records (all when None) of one local JSONL/JSON/parquet file, in file order.

    Each record is a dict of the `required` columns (the file must have them; a null cell comes back
    as None) and of those `optional` columns the file has; other columns are never converted. `hint`
    ends the missing-column error (how the caller names other columns). The one reader behind
    `load_sft_rows` and the dataset task's parquet files, with the safety rules of the module docstring.
    """
    source = Path(path)
    if not source.is_file():
        what = "a directory, not a file" if source.is_dir() else "no such file"
        raise FileNotFoundError(f"{source}: {what} (only one local file is read, never the hub)")
    builder = BUILDERS.get(source.suffix.lower())
    if builder is None:
        raise ValueError(f"{source}: unsupported file type {source.suffix!r}; supported: {sorted(BUILDERS)}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if builder == "json" and _blank(source):
        raise ValueError(f"{source}: empty file, no rows")  # `datasets` would say 'Instruction "train" ...'
    return _load(source, builder, cache_dir, tuple(required), tuple(optional), limit, hint)


def _load(
    source: Path,
    builder: str,
    cache_dir: str | os.PathLike[str] | None,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    limit: int | None,
    hint: str,
) -> list[dict[str, Any]]:
    """The first `limit` records of `source` as dicts of the wanted columns, read by `builder`."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            "reading local dataset files needs the `datasets` package: pip install datasets"
        ) from e

    temp = tempfile.TemporaryDirectory(prefix="r1forge-datasets-") if cache_dir is None else nullcontext()
    with temp as temp_dir:
        try:
            ds = datasets.load_dataset(
                builder,
                data_files=glob.escape(str(source.resolve())),
                split="train",
                cache_dir=str(cache_dir if cache_dir is not None else temp_dir),
                download_config=datasets.DownloadConfig(local_files_only=True),
            )
        except OSError:
            raise  # unreadable file, disk full: the OS error already says what and where
        except Exception as e:  # DatasetGenerationError, ArrowInvalid, StopIteration: the file's content
            raise ValueError(f"{source}: not readable as {builder} ({_root_cause(e)})") from e
        if len(ds) == 0:
            raise ValueError(f"{source}: no rows")
        for name in required:
            if name not in ds.column_names:
                raise ValueError(
                    f"{source}: row 0: missing field {name!r} (the file has no such column; its columns are "
                    f"{ds.column_names}{'; ' + hint if hint else ''})"
                )
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        # Convert only the columns used: a file's other columns (chat transcripts, metadata) can be large.
        wanted = [c for c in ds.column_names if c in (*required, *optional)]
        for name in wanted:
            if isinstance(ds.features[name], datasets.Json):
                raise _mixed_column_error(source, name)
        return ds.select_columns(wanted).to_list()


def _mixed_column_error(source: Path, name: str) -> ValueError:
    """The error for a JSON column whose values mix strings with numbers, lists or objects.

    `datasets` stores such a column as JSON text and decodes it back without the quotes, so the
    string "007" comes back as the number 7: the values can no longer be trusted, nor the row told
    from the dataset. The file is scanned again (only on this error path) for the first bad row.
    """
    with source.open(encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    row, got = None, "?"
    for i, record in enumerate(records):
        value = record.get(name) if isinstance(record, dict) else None
        if value is not None and not isinstance(value, str):
            row, got = i, type(value).__name__
            break
    return ValueError(
        f"{source}: row {row}: field {name!r} must be a string, got {got} (the column mixes strings with "
        "other JSON types, which `datasets` reads lossily: quote every value)"
    )


def _blank(source: Path, chunk_bytes: int = 1 << 16) -> bool:
    """Whether the file holds only whitespace; stops at the first other byte (one read for a real file)."""
    with source.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            if chunk.strip():
                return False
    return True


def _root_cause(error: BaseException) -> str:
    """The innermost explicit cause's message: pyarrow's "JSON parse error ... in row 1", not the wrapper."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _row(record: dict[str, Any], i: int, source: Path, prompt_field: str, completion_field: str) -> dict:
    where = f"{source}: row {i}"
    values = {}
    for name in (prompt_field, completion_field):
        value = record.get(name)
        if value is None:
            raise ValueError(f"{where}: missing field {name!r} (null or absent in this row)")
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"{where}: field {name!r} is empty; an SFT row needs a prompt and a completion")
        values[name] = value
    for name in ("prompt_id", "answer"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    prompt_id = record.get("prompt_id")
    row = {
        "prompt_id": f"{source.stem}-{i}" if prompt_id is None else prompt_id,
        "prompt": values[prompt_field],
        "completion": values[completion_field],
        "answer": record.get("answer") or "",
    }
    return check_sft_row(row, where)  # one definition of a valid row: an empty prompt_id fails here
