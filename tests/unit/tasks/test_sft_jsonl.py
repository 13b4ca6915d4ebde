"""SFT JSONL rows: round trip, line-numbered errors, cold-start rows from the config."""

from __future__ import annotations

import json
import re

import pytest

from services.config import TaskConfig
from services.tasks.arithmetic import AdditionTask, make_splits
from services.tasks.datasets import cold_start_rows, read_sft_jsonl, write_sft_jsonl
from services.tasks.prompts import render_prompt

ROW = {
    "prompt_id": "cold-000000",
    "prompt": "User: What is 1+2?",
    "completion": "<answer>3</answer>",
    "answer": "3",
}


def test_round_trip_keeps_rows_and_unicode(tmp_path):
    rows = [ROW, {**ROW, "prompt_id": "cold-000001", "completion": "<think>三</think><answer>3</answer>"}]
    path = tmp_path / "sub" / "sft.jsonl"
    assert write_sft_jsonl(path, rows) == 2
    assert read_sft_jsonl(path) == rows
    assert not [p for p in path.parent.iterdir() if p.name != "sft.jsonl"]  # no temp file left


def test_read_names_line_and_missing_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    bad = {k: v for k, v in ROW.items() if k != "completion"}
    path.write_text(json.dumps(ROW) + "\n\n" + json.dumps(bad) + "\n")  # line 2 blank, line 3 bad
    with pytest.raises(ValueError, match=re.escape("bad.jsonl:3: missing field 'completion'")):
        read_sft_jsonl(path)


def test_read_names_line_of_invalid_json_and_wrong_type(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROW) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_sft_jsonl(path)
    path.write_text(json.dumps({**ROW, "answer": 3}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: field 'answer' must be a string"):
        read_sft_jsonl(path)


def test_write_rejects_bad_row_and_leaves_no_file(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=re.escape("row 1: missing field 'prompt'")):
        write_sft_jsonl(path, [ROW, {"prompt_id": "x", "completion": "c", "answer": "a"}])
    assert not path.exists()


def test_cold_start_rows_follow_the_cold_start_split():
    cfg = TaskConfig(train_size=20, heldout_size=10, cold_start_size=6)
    cold = AdditionTask(cfg).splits()["cold_start"]
    rows = cold_start_rows(cold)
    problems = make_splits(cfg)["cold_start"]
    assert [r["prompt_id"] for r in rows] == [p.prompt_id for p in problems]
    first, p = rows[0], problems[0]
    assert first["prompt"] == render_prompt(f"What is {p.a}+{p.b}?")
    assert first["answer"] == str(p.a + p.b)
    assert first["completion"].endswith(f"<answer>{p.a + p.b}</answer>")
    assert cold_start_rows(cold, render=lambda q: f"Q:{q}")[0]["prompt"] == f"Q:What is {p.a}+{p.b}?"


def test_cold_start_rows_refuse_a_problem_without_a_worked_solution():
    bare = AdditionTask(TaskConfig(train_size=5, heldout_size=2, cold_start_size=1)).splits()["train"][:1]
    with pytest.raises(ValueError, match="train-000000.*no worked solution"):
        cold_start_rows(bare)
