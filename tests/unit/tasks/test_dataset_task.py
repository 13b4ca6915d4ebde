"""The dataset task: deterministic disjoint splits, a held-out file, skipped rows reported, named errors."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.config import TaskConfig
from services.tasks import load_task
from services.tasks.dataset import DatasetTask
from services.tasks.problem import SPLITS

ROOT = Path(__file__).resolve().parents[3]
GSM8K_SAMPLE = ROOT / "data" / "tasks" / "gsm8k_sample.jsonl"
MATH_SAMPLE = ROOT / "data" / "tasks" / "math_sample.jsonl"


def gsm8k_row(i: int) -> dict:
    return {
        "question": f"Tom has {i} apples and buys 2 more. How many now?",
        "answer": f"{i}+2 = {i + 2}\n#### {i + 2}",
    }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def task(path, **overrides) -> DatasetTask:
    return load_task(TaskConfig(name="dataset", path=str(path), **overrides))


def ids(problems) -> list[str]:
    return [p.prompt_id for p in problems]


def test_load_task_makes_a_math_verified_dataset_task():
    t = task(GSM8K_SAMPLE, cold_start_size=30)
    assert isinstance(t, DatasetTask)
    assert (t.name, t.accuracy_scorer) == ("dataset", "accuracy")


def test_splits_are_deterministic_disjoint_and_complete():
    splits = task(GSM8K_SAMPLE, cold_start_size=30).splits()
    assert splits == task(GSM8K_SAMPLE, cold_start_size=30).splits()
    assert list(splits) == list(SPLITS)
    sets = [set(ids(splits[name])) for name in SPLITS]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    questions = [p.question for name in SPLITS for p in splits[name]]
    assert len(questions) == len(set(questions)) == 300  # every row lands in exactly one split
    assert len(splits["cold_start"]) == 30
    assert all(p.solution.startswith("<think>") and p.solution.endswith(f"<answer>{p.answer}</answer>")
               for p in splits["cold_start"])  # fmt: skip
    assert all("<<" not in p.solution for p in splits["cold_start"])  # calculator annotations removed
    assert not any(p.solution for name in ("train", "heldout") for p in splits[name])
    assert {p.source for name in SPLITS for p in splits[name]} == {"gsm8k_sample"}
    # Held out by hash: about task.heldout_fraction (0.1) of 300 rows.
    assert 15 <= len(splits["heldout"]) <= 45


def test_prompt_ids_are_source_and_question_hashes():
    t = task(GSM8K_SAMPLE, cold_start_size=30, source="gsm8k")
    p = t.splits()["train"][0]
    assert p.prompt_id == f"gsm8k-{hashlib.sha1(p.question.encode()).hexdigest()[:12]}"
    assert p.source == "gsm8k"


def test_sizes_cap_train_and_heldout_and_the_rest_is_reported(tmp_path):
    rows = [gsm8k_row(i) for i in range(200)]
    t = task(write_jsonl(tmp_path / "d.jsonl", rows), train_size=50, heldout_size=5, cold_start_size=7)
    splits = t.splits()
    assert [len(splits[n]) for n in SPLITS] == [50, 5, 7]
    report = t.report()
    assert report["rows_read"] == 200 and report["rows_used"] == 62
    assert report["beyond_sizes"] == 200 - 62
    assert report["splits"] == {"train": 50, "heldout": 5, "cold_start": 7}


def test_row_order_and_train_size_do_not_move_heldout_or_cold_start(tmp_path):
    rows = [gsm8k_row(i) for i in range(120)]
    forward = task(write_jsonl(tmp_path / "a.jsonl", rows), cold_start_size=10, source="s").splits()
    backward = task(write_jsonl(tmp_path / "b.jsonl", rows[::-1]), cold_start_size=10, source="s").splits()
    assert forward == backward
    small = task(tmp_path / "a.jsonl", cold_start_size=10, train_size=20, source="s").splits()
    assert small["heldout"] == forward["heldout"] and small["cold_start"] == forward["cold_start"]
    assert small["train"] == forward["train"][:20]
    other_seed = task(tmp_path / "a.jsonl", cold_start_size=10, source="s", seed=7).splits()
    assert ids(other_seed["heldout"]) != ids(forward["heldout"])


def test_heldout_path_is_the_heldout_split_and_removes_overlap_from_train(tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", [gsm8k_row(i) for i in range(20)])
    heldout_file = write_jsonl(tmp_path / "test.jsonl", [gsm8k_row(i) for i in range(15, 25)])
    t = task(train_file, heldout_path=str(heldout_file), cold_start_size=4)
    splits = t.splits()
    held = {p.question for p in splits["heldout"]}
    assert held == {gsm8k_row(i)["question"] for i in range(15, 25)}
    trained = {p.question for name in ("train", "cold_start") for p in splits[name]}
    assert trained == {gsm8k_row(i)["question"] for i in range(15)}
    overlap = t.report()["heldout_overlap_removed"]
    assert overlap["count"] == 5
    assert set(overlap["first"]) == {f"{train_file}:{line}" for line in range(16, 21)}
    assert t.report()["rows_read"] == 30


def test_rows_without_an_answer_are_skipped_counted_and_reported(tmp_path, caplog):
    rows = [gsm8k_row(i) for i in range(30)]
    for i in (3, 7, 11, 12, 20, 25, 28):
        rows[i] = {**rows[i], "answer": "no final answer mark"}
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="services.tasks.dataset"):
        t = task(path, answer_format="gsm8k", cold_start_size=2, heldout_fraction=0.3)
    skipped = t.report()["skipped"]
    assert skipped["count"] == 7
    assert skipped["first"] == [f"{path}:{i + 1}" for i in (3, 7, 11, 12, 20)]  # 1-based lines, first five
    assert "task.answer_format='gsm8k'" in skipped["reason"]
    assert t.report()["rows_read"] == 30 and t.report()["rows_used"] == 23
    assert "7 rows left out" in caplog.text and f"{path}:4" in caplog.text


def test_every_row_skipped_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "no mark"}])
    with pytest.raises(ValueError, match=re.escape(f"{path}: no row has an answer in field 'answer'")):
        task(path, answer_format="gsm8k")


def test_repeated_questions_are_dropped_and_counted(tmp_path):
    rows = [gsm8k_row(i) for i in range(30)] + [gsm8k_row(4), {**gsm8k_row(5), "answer": "#### 99"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    t = task(path, cold_start_size=2)
    assert t.report()["duplicates"]["count"] == 2
    assert t.report()["duplicates"]["first"] == [f"{path}:31", f"{path}:32"]
    answers = {p.question: p.answer for name in SPLITS for p in t.splits()[name]}
    assert answers[gsm8k_row(5)["question"]] == "7"  # the first row wins


def test_solution_field_feeds_the_cold_start(tmp_path):
    rows = [{"q": f"What is {i}+1?", "a": str(i + 1), "why": f"{i} and one more"} for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    plain = task(path, question_field="q", answer_field="a", cold_start_size=5)
    assert plain.splits()["cold_start"] == [] and plain.report()["with_solution"] == 0  # a plain answer
    worked = task(path, question_field="q", answer_field="a", solution_field="why", cold_start_size=5)
    cold = worked.splits()["cold_start"]
    assert len(cold) == 5
    assert all(p.solution == f"<think>{int(p.answer) - 1} and one more</think><answer>{p.answer}</answer>"
               for p in cold)  # fmt: skip


def test_math_sample_reads_boxed_fraction_answers():
    splits = task(MATH_SAMPLE, question_field="problem", answer_field="solution", cold_start_size=10).splits()
    problems = [p for name in SPLITS for p in splits[name]]
    assert len(problems) == 100
    assert sum("\\frac" in p.answer for p in problems) > 50
    assert all("\\boxed" in p.solution for p in splits["cold_start"])


def test_parquet_gives_the_same_splits_as_jsonl(tmp_path):
    rows = [gsm8k_row(i) for i in range(60)]
    jsonl = task(write_jsonl(tmp_path / "d.jsonl", rows), cold_start_size=5).splits()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert task(tmp_path / "d.parquet", cold_start_size=5).splits() == jsonl


def test_parquet_errors_name_the_row_and_field(tmp_path):
    rows = [gsm8k_row(0), {"question": "Q?", "answer": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    with pytest.raises(
        ValueError, match=re.escape(f"{tmp_path / 'd.parquet'}: row 1: field 'answer' is empty")
    ):
        task(tmp_path / "d.parquet")
    pq.write_table(pa.Table.from_pylist([{"question": "Q?", "label": "1"}]), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=re.escape("e.parquet: row 0: missing field 'answer'")) as e:
        task(tmp_path / "e.parquet")
    assert "task.answer_field=" in str(e.value)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", ":2: not valid JSON"),
        (json.dumps({"question": "Q?"}), ":2: missing field 'answer'"),
        (json.dumps({"question": "Q?", "answer": 4}), ":2: field 'answer' must be a string, got int"),
        (json.dumps({"question": "  ", "answer": "#### 4"}), ":2: field 'question' is empty"),
        (json.dumps(["Q?", "4"]), ":2: expected a JSON object"),
    ],
    ids=["not-json", "missing-answer", "number-answer", "empty-question", "not-an-object"],
)
def test_bad_rows_name_file_line_and_field(tmp_path, bad_line, message):
    path = write_jsonl(tmp_path / "d.jsonl", [gsm8k_row(0), bad_line, gsm8k_row(1)])
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        task(path)


def test_missing_answer_field_suggests_the_setting(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "Q?", "solution": "\\boxed{1}"}])
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: missing field 'question'")) as e:
        task(path)
    assert "task.question_field=" in str(e.value) and "'problem'" in str(e.value)


def test_missing_file_and_unknown_suffix_name_task_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(f"task.path={missing}: no such file")):
        task(missing)
    with pytest.raises(FileNotFoundError, match=re.escape("task.heldout_path=")):
        task(GSM8K_SAMPLE, heldout_path=str(missing), cold_start_size=5)
    csv = tmp_path / "d.csv"
    csv.write_text("question,answer\nQ,1\n")
    with pytest.raises(ValueError, match=re.escape(f"task.path={csv}: unsupported file type '.csv'")):
        task(csv)
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(ValueError, match=re.escape(f"{empty}: no rows")):
        task(empty)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"answer_format": "latex"}, "task.answer_format must be one of ['auto', 'gsm8k', 'boxed', 'plain']"),
        ({"heldout_fraction": 0.0}, "task.heldout_fraction must be in (0, 1)"),
        ({"heldout_fraction": 1.0}, "task.heldout_fraction must be in (0, 1)"),
        ({"path": None}, "task.path is unset"),
        ({"cold_start_size": -1}, "task.cold_start_size must be >= 0"),
        ({"question_field": "answer"}, "task.question_field and task.answer_field are both 'answer'"),
    ],
)
def test_bad_settings_name_the_setting(overrides, message):
    cfg = TaskConfig(**{"name": "dataset", "path": str(GSM8K_SAMPLE), **overrides})
    with pytest.raises(ValueError, match=re.escape(message)):
        load_task(cfg)


def test_a_split_left_empty_is_an_error_naming_the_fix(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [gsm8k_row(i) for i in range(20)])
    with pytest.raises(ValueError, match=re.escape("no rows left for train")) as e:
        task(path, cold_start_size=300)
    assert "task.cold_start_size=300" in str(e.value)
    with pytest.raises(ValueError, match=re.escape("no held-out rows")):
        task(write_jsonl(tmp_path / "one.jsonl", [gsm8k_row(1)]), heldout_fraction=0.001, cold_start_size=0)
