"""The "dataset" task: problems from one local JSONL or parquet file (GSM8K, MATH or the like).

Real reasoning data comes as files with their own column names and answer conventions, so the task is
configured, not coded: `task.question_field` and `task.answer_field` name the columns, and
`task.answer_format` says how the reference answer is read out of the answer text
(`services.tasks.answers`: GSM8K's "#### 72", MATH's last ``\\boxed{}``, or the whole field).

Reading is strict where a mistake would silently train on garbage, and lenient where real files are
merely imperfect:

* a line that is not JSON, a row without the question or answer field, a field that is not a string or
  is empty: ValueError naming the file, the line (JSONL, 1-based) or row (parquet, 0-based), the field
  and the fix, raised by `load_task`, before anything runs;
* a row whose answer text holds no answer under `answer_format` is skipped, counted and reported
  (`report()` and a warning); a file where every row is skipped is an error;
* a question seen before is dropped and counted (one prompt id per question).

Splits are a pure function of the config and the file's content, never of the file's row order:

* ``heldout``: the rows of `task.heldout_path` when set (a train row with the same question is removed
  from train and counted), else the rows whose question hashes (sha256 of "{seed}:{question}" mapped to
  [0, 1)) below `task.heldout_fraction`; a row's side never changes when rows are added or removed;
* ``cold_start``: of the other rows, in hash order, the first `cold_start_size` with a worked solution
  (from `task.solution_field`, or the answer field's own reasoning: GSM8K's text before "####", a MATH
  solution), carrying it as an R1 completion;
* ``train``: the rest, in hash order; train and held-out are capped at `train_size` / `heldout_size`.

A problem's id is f"{source}-{sha1(question)[:12]}", stable across runs, files and row orders.
Parquet goes through `services.tasks.sft_data.read_records` (the `datasets` library, local files only);
JSONL through the line-numbered `services.tasks.datasets.read_jsonl`, so errors name the line a person
would open.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.paths import resolve_data_path
from services.tasks.answers import GSM8K_MARK, check_format, extract_reference, worked_solution
from services.tasks.datasets import read_jsonl
from services.tasks.problem import SPLITS, Problem

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".parquet")
# Locations listed per counted kind of dropped row in the report (the count is always complete).
REPORT_FIRST = 5


@dataclass(frozen=True)
class Row:
    """One checked row: where it is, its question, its answer text and its solution text (None: none)."""

    where: str
    question: str
    answer_text: str
    solution_text: str | None


@dataclass
class Dropped:
    """Rows left out for one reason: how many, and the first few locations."""

    reason: str
    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, where: str) -> None:
        self.count += 1
        if len(self.first) < REPORT_FIRST:
            self.first.append(where)

    def as_dict(self) -> dict:
        return {"count": self.count, "first": list(self.first), "reason": self.reason}


def validate_dataset_config(cfg: Any) -> None:
    """Raise ValueError naming the field when `cfg` (a TaskConfig) cannot describe a dataset task."""
    if not cfg.path:
        raise ValueError(
            "task.path is unset: task=dataset reads one local JSONL or parquet file; set task.path="
        )
    for name in ("train_size", "heldout_size", "cold_start_size", "seed"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"task.{name} must be an integer, got {value!r}")
    for name in ("train_size", "heldout_size", "cold_start_size"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"task.{name} must be >= 0, got {getattr(cfg, name)}")
    fraction = cfg.heldout_fraction
    if not cfg.heldout_path and (
        not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1
    ):
        raise ValueError(
            f"task.heldout_fraction must be in (0, 1), got {fraction!r} (the share of rows held out when "
            "task.heldout_path is unset)"
        )
    for name in ("question_field", "answer_field"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            raise ValueError(f"task.{name} must name a field, got {getattr(cfg, name)!r}")
    if cfg.question_field == cfg.answer_field:
        raise ValueError(f"task.question_field and task.answer_field are both {cfg.question_field!r}")
    check_format(cfg.answer_format)


def check_file(path: str, key: str) -> Path:
    """`path` as a Path (a relative one from the current directory, else a shipped ``data/...`` file):
    FileNotFoundError naming `task.<key>` unless it is a file, ValueError on a suffix other than .jsonl or
    .parquet."""
    hint = "task=dataset reads one local JSONL or parquet file, never the hub"
    try:
        source = resolve_data_path(path, f"task.{key}")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e} ({hint})") from None
    if not source.is_file():
        raise FileNotFoundError(f"task.{key}={path}: a directory, not a file ({hint})")
    if source.suffix.lower() not in SUFFIXES:
        raise ValueError(
            f"task.{key}={path}: unsupported file type {source.suffix!r}; supported: {list(SUFFIXES)}"
        )
    return source


def read_rows(source: Path, cfg: Any) -> list[Row]:
    """Every row of `source`, checked; ValueError naming file, line or row, and field on a bad one."""
    if source.suffix.lower() == ".jsonl":
        rows = read_jsonl(source, lambda record, where: {"row": check_row(record, where, cfg)})
        rows = [r["row"] for r in rows]
    else:
        from services.tasks.sft_data import read_records

        optional = (cfg.solution_field,) if cfg.solution_field else ()
        records = read_records(
            source,
            (cfg.question_field, cfg.answer_field),
            optional,
            hint="set task.question_field=/task.answer_field= to the columns that hold them",
        )
        rows = [check_row(record, f"{source}: row {i}", cfg) for i, record in enumerate(records)]
    if not rows:
        raise ValueError(f"{source}: no rows (an empty file); task=dataset needs questions with answers")
    return rows


def check_row(record: Any, where: str, cfg: Any) -> Row:
    """The row `record` found at `where`, checked: question and answer present, strings, not empty."""
    if not isinstance(record, Mapping):
        raise ValueError(
            f"{where}: expected a JSON object with fields {[cfg.question_field, cfg.answer_field]}, "
            f"got {record!r:.80}"
        )
    values = {}
    for key in ("question_field", "answer_field"):
        name = getattr(cfg, key)
        value = record.get(name)
        if value is None:
            raise ValueError(
                f"{where}: missing field {name!r} (null or absent; the row has {sorted(record)}; "
                f"set task.{key}= to the field that holds it)"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"{where}: field {name!r} must be a string, got {type(value).__name__} (quote the value)"
            )
        if not value.strip():
            raise ValueError(f"{where}: field {name!r} is empty; every row needs a question and an answer")
        values[key] = value
    solution = record.get(cfg.solution_field) if cfg.solution_field else None
    if solution is not None and not isinstance(solution, str):
        raise ValueError(
            f"{where}: field {cfg.solution_field!r} (task.solution_field) must be a string, got "
            f"{type(solution).__name__}"
        )
    return Row(where, values["question_field"].strip(), values["answer_field"], solution)


def question_hash(seed: int, question: str) -> float:
    """A stable draw in [0, 1) for `question`: sha256 of f"{seed}:{question}"."""
    digest = hashlib.sha256(f"{seed}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def prompt_id(source: str, question: str) -> str:
    """The problem's id, stable across runs and files: f"{source}-{sha1(question)[:12]}"."""
    return f"{source}-{hashlib.sha1(question.encode()).hexdigest()[:12]}"


def solution_of(row: Row, answer: str, cfg: Any) -> str:
    """The worked R1 completion for `row` ("" when it has none): from task.solution_field when set, else
    from the answer field's own reasoning."""
    if cfg.solution_field:
        if row.solution_text is None:
            return ""
        fmt = "gsm8k" if GSM8K_MARK in row.solution_text else "boxed"  # free text: all of it is reasoning
        return worked_solution(row.solution_text, fmt, answer) or ""
    return worked_solution(row.answer_text, cfg.answer_format, answer) or ""


class DatasetTask:
    """The `Task` over one local file: see the module docstring. The file is read, checked and split when
    the task is made, so `load_task` fails on bad input before anything starts."""

    name = "dataset"
    accuracy_scorer = "accuracy"

    def __init__(self, cfg: Any) -> None:
        validate_dataset_config(cfg)
        self.cfg = cfg
        self.source = cfg.source or Path(cfg.path).stem
        self._splits, self._report = self._build()

    def splits(self) -> dict[str, list[Problem]]:
        return {name: list(problems) for name, problems in self._splits.items()}

    def report(self) -> dict:
        return dict(self._report)

    def _problems(
        self, source: Path, dropped: dict[str, Dropped]
    ) -> tuple[list[Problem], dict[str, str], int]:
        """Problems of the file `source` in row order (rows without an answer and repeated questions left
        out), where each problem's row is, and the number of rows read."""
        cfg, where_of, problems = self.cfg, {}, []
        rows = read_rows(source, cfg)
        for row in rows:
            answer = extract_reference(row.answer_text, cfg.answer_format)
            if answer is None:
                dropped["no_answer"].add(row.where)
                continue
            pid = prompt_id(self.source, row.question)
            if pid in where_of:
                dropped["duplicate"].add(row.where)
                continue
            where_of[pid] = row.where
            problems.append(Problem(pid, row.question, answer, self.source, solution_of(row, answer, cfg)))
        if not problems:
            raise ValueError(
                f"{source}: no row has an answer in field {cfg.answer_field!r} under task.answer_format="
                f"{cfg.answer_format!r} (first: {rows[0].where}); set task.answer_format= or "
                "task.answer_field="
            )
        return problems, where_of, len(rows)

    def _build(self) -> tuple[dict[str, list[Problem]], dict]:
        cfg = self.cfg
        dropped = {
            "no_answer": Dropped(f"field {cfg.answer_field!r} has no answer under task.answer_format="
                                 f"{cfg.answer_format!r}"),
            "duplicate": Dropped("the question appeared on an earlier row"),
            "heldout_overlap": Dropped("the question is in task.heldout_path"),
        }  # fmt: skip
        problems, where_of, rows_read = self._problems(check_file(cfg.path, "path"), dropped)
        problems.sort(key=self._order)
        if cfg.heldout_path:
            heldout, _, heldout_read = self._problems(check_file(cfg.heldout_path, "heldout_path"), dropped)
            rows_read += heldout_read
            heldout.sort(key=self._order)
            held_questions = {p.question for p in heldout}
            rest = []
            for p in problems:
                if p.question in held_questions:
                    dropped["heldout_overlap"].add(where_of[p.prompt_id])
                else:
                    rest.append(p)
        else:
            heldout = [p for p in problems if self._order(p)[0] < cfg.heldout_fraction]
            rest = [p for p in problems if self._order(p)[0] >= cfg.heldout_fraction]
        cold = [p for p in rest if p.solution][: cfg.cold_start_size]
        cold_ids = {p.prompt_id for p in cold}
        train = [_without_solution(p) for p in rest if p.prompt_id not in cold_ids]
        splits = {
            "train": train[: cfg.train_size],
            "heldout": [_without_solution(p) for p in heldout[: cfg.heldout_size]],
            "cold_start": cold,
        }
        self._check_sizes(splits, len(problems), len(heldout))
        beyond = len(train) - len(splits["train"]) + len(heldout) - len(splits["heldout"])
        report = self._make_report(rows_read, splits, dropped, beyond, sum(bool(p.solution) for p in rest))
        return {name: splits[name] for name in SPLITS}, report

    def _order(self, p: Problem) -> tuple[float, str]:
        """Sort key of a problem: its question's stable hash, then the question (ties never decided by
        row order)."""
        return question_hash(self.cfg.seed, p.question), p.question

    def _check_sizes(self, splits: dict[str, list[Problem]], usable: int, held: int) -> None:
        """A requested split that came out empty is an error: a run would fail later, less clearly."""
        cfg = self.cfg
        if cfg.train_size > 0 and not splits["train"]:
            raise ValueError(
                f"task.path={cfg.path}: no rows left for train ({usable} usable rows: {held} held out, "
                f"{len(splits['cold_start'])} in the cold start); lower task.cold_start_size="
                f"{cfg.cold_start_size} or task.heldout_fraction, or add rows"
            )
        if cfg.heldout_size > 0 and not splits["heldout"]:
            raise ValueError(
                f"task.path={cfg.path}: no held-out rows ({usable} usable rows, none hashed below "
                f"task.heldout_fraction={cfg.heldout_fraction}); raise it, add rows or set task.heldout_path="
            )

    def _make_report(
        self, rows_read: int, splits: dict, dropped: dict[str, Dropped], beyond: int, with_solution: int
    ) -> dict:
        cfg = self.cfg
        sizes = {name: len(splits[name]) for name in SPLITS}
        for d in dropped.values():
            if d.count:
                log.warning(
                    "task %s: %d rows left out: %s (first: %s)", self.source, d.count, d.reason, d.first
                )
        if cfg.cold_start_size > len(splits["cold_start"]):
            log.warning(
                "task %s: %d of the %d requested cold-start rows have a worked solution",
                self.source,
                len(splits["cold_start"]),
                cfg.cold_start_size,
            )
        return {
            "task": self.name,
            "source": self.source,
            "path": str(cfg.path),
            "heldout_path": str(cfg.heldout_path) if cfg.heldout_path else None,
            "answer_format": cfg.answer_format,
            "rows_read": rows_read,
            "rows_used": sum(sizes.values()),
            "skipped": dropped["no_answer"].as_dict(),
            "duplicates": dropped["duplicate"].as_dict(),
            "heldout_overlap_removed": dropped["heldout_overlap"].as_dict(),
            "with_solution": with_solution,
            "splits": sizes,
            # Usable rows left out only because train_size / heldout_size are smaller.
            "beyond_sizes": beyond,
        }


def _without_solution(p: Problem) -> Problem:
    """`p` as an RL or evaluation prompt: no worked solution travels with it."""
    if not p.solution:
        return p
    return Problem(p.prompt_id, p.question, p.answer, p.source, "", p.metadata_json)
