"""The shipped sample math files: what tools/make_math_samples.py generates, with an answer in every row."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import pytest

from services.tasks.answers import extract_reference, worked_solution

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "data" / "tasks"


def _tool():
    """tools/make_math_samples.py as a module (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_math_samples", ROOT / "tools" / "make_math_samples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def tool():
    return _tool()


def test_shipped_files_are_what_the_tool_generates(tool):
    assert _read(tool.GSM8K_FILE) == tool.gsm8k_rows()
    assert _read(tool.MATH_FILE) == tool.math_rows()


def test_tool_check_passes_on_the_shipped_files_and_fails_on_a_stale_copy(tool, tmp_path):
    assert tool.main(["--check"]) == 0
    tool.write_samples(tmp_path)
    (tmp_path / tool.MATH_FILE).write_text("{}\n")
    assert tool.main(["--check", "--out", str(tmp_path)]) == 1


def test_same_seed_same_rows_other_seed_other_rows(tool):
    assert tool.gsm8k_rows(50, seed=3) == tool.gsm8k_rows(50, seed=3) != tool.gsm8k_rows(50, seed=4)
    assert tool.math_rows(30, seed=3) == tool.math_rows(30, seed=3) != tool.math_rows(30, seed=4)


def test_gsm8k_rows_are_short_ascii_with_a_correct_answer_and_reasoning(tool):
    rows = _read(tool.GSM8K_FILE)
    assert len(rows) == 300 and len({r["question"] for r in rows}) == 300
    for row in rows:
        assert list(row) == ["question", "answer"]
        assert row["question"].isascii() and row["answer"].isascii()
        assert len(row["question"]) < 200
        answer = extract_reference(row["answer"], "gsm8k")
        assert answer is not None and answer.isdigit(), row
        lines = row["answer"].splitlines()
        assert 3 <= len(lines) <= 4 and lines[-1] == f"#### {answer}"  # two or three steps, then the answer
        for line in lines[:-1]:  # every calculator annotation is right: <<a*b=c>>c
            expr, value = line.split("<<")[1].split(">>")[0].split("=")
            assert Fraction(eval(expr)) == int(value), line  # noqa: S307 (digits and + - * / only)
        assert worked_solution(row["answer"], "auto", answer).endswith(f"<answer>{answer}</answer>")


def test_math_rows_have_boxed_answers_many_of_them_fractions(tool):
    rows = _read(tool.MATH_FILE)
    assert len(rows) == 100 and len({r["problem"] for r in rows}) == 100
    answers = []
    for row in rows:
        assert list(row) == ["problem", "solution", "level", "type"]
        assert all(value.isascii() for value in row.values())
        answers.append(extract_reference(row["solution"], "boxed"))
        assert answers[-1] is not None, row
    assert sum(a.startswith(("\\frac", "-\\frac")) for a in answers) > 60
