"""Addition task: exact worked solutions, deterministic disjoint splits, config validation."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from services.config import TaskConfig
from services.tasks import load_splits
from services.tasks.arithmetic import AdditionProblem as Problem
from services.tasks.arithmetic import make_splits, worked_solution


def _key(p: Problem) -> tuple[int, int]:
    return (min(p.a, p.b), max(p.a, p.b))


def test_worked_solution_47_plus_85_matches_the_documented_example():
    # 7+5=12 -> write 2 carry 1; 4+8+1=13 -> write 3 carry 1; carry 1 left over -> 132
    expected = (
        "<think>7+5=12 write 2 carry 1\n4+8+1=13 write 3 carry 1\nfinal carry 1\nresult 132</think>"
        "<answer>132</answer>"
    )
    assert worked_solution(Problem("t", 47, 85)) == expected


def test_worked_solution_single_digit_with_carry():
    # 5+7=12 -> write 2 carry 1, then the final carry makes 12
    expected = "<think>5+7=12 write 2 carry 1\nfinal carry 1\nresult 12</think><answer>12</answer>"
    assert worked_solution(Problem("t", 5, 7)) == expected


def test_worked_solution_carry_ripples_into_a_new_digit():
    # 999+1: 9+1=10, then 9+0+1=10 twice (1 padded with zeros), final carry 1 -> 1000
    expected = (
        "<think>9+1=10 write 0 carry 1\n9+0+1=10 write 0 carry 1\n9+0+1=10 write 0 carry 1\n"
        "final carry 1\nresult 1000</think><answer>1000</answer>"
    )
    assert worked_solution(Problem("t", 999, 1)) == expected


def test_worked_solution_shorter_operand_is_padded_with_zero_and_no_final_carry_line():
    # 305+41: 5+1=6, 0+4=4, 3+0=3 (41 has no hundreds digit) -> 346, no carry anywhere
    expected = (
        "<think>5+1=6 write 6 carry 0\n0+4=4 write 4 carry 0\n3+0=3 write 3 carry 0\nresult 346</think>"
        "<answer>346</answer>"
    )
    assert worked_solution(Problem("t", 305, 41)) == expected
    # Same columns with the operands swapped: the first operand is the padded one.
    swapped = worked_solution(Problem("t", 41, 305))
    assert swapped.startswith("<think>1+5=6 write 6 carry 0\n4+0=4 write 4 carry 0\n0+3=3 write 3 carry 0\n")


def test_worked_solution_written_digits_spell_the_answer():
    rng = random.Random(7)
    for _ in range(200):
        p = Problem("t", rng.randint(1, 99999), rng.randint(1, 99999))
        think = re.fullmatch(r"<think>(.*)</think><answer>(\d+)</answer>", worked_solution(p), re.S)
        assert think is not None and think.group(2) == str(p.a + p.b)
        lines = think.group(1).split("\n")
        written = [re.search(r"write (\d) carry", line).group(1) for line in lines if " write " in line]
        final = [line.split()[-1] for line in lines if line.startswith("final carry")]
        # Digits are written least significant first; the final carry (if any) is the leading digit.
        assert "".join(final) + "".join(reversed(written)) == str(p.a + p.b)
        assert lines[-1] == f"result {p.a + p.b}"


def test_problem_question_and_answer():
    p = Problem("heldout-000007", 47, 85)
    assert (p.question, p.answer) == ("47+85", "132")


def test_splits_are_deterministic_and_depend_on_the_seed():
    cfg = TaskConfig(train_size=300, heldout_size=50, cold_start_size=40, seed=3)
    assert make_splits(cfg) == make_splits(cfg)
    other = make_splits(replace(cfg, seed=4))
    assert other["heldout"] != make_splits(cfg)["heldout"]


def test_splits_have_requested_sizes_ids_and_digit_ranges():
    cfg = TaskConfig(min_digits=2, max_digits=3, train_size=300, heldout_size=50, cold_start_size=40)
    splits = make_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "heldout": 50, "cold_start": 40}
    assert splits["train"][123].prompt_id == "train-000123"
    assert splits["heldout"][7].prompt_id == "heldout-000007"
    assert splits["cold_start"][0].prompt_id == "cold-000000"
    for problems in splits.values():
        for p in problems:
            assert 10 <= p.a <= 999 and 10 <= p.b <= 999
    digit_counts = {len(str(p.a)) for p in splits["train"]}
    assert digit_counts == {2, 3}  # both lengths are drawn, not only the more numerous 3-digit ones


def test_splits_are_pairwise_disjoint_by_unordered_pair():
    cfg = TaskConfig(min_digits=1, max_digits=2, train_size=2000, heldout_size=300, cold_start_size=200)
    splits = make_splits(cfg)
    keys = {name: [_key(p) for p in problems] for name, problems in splits.items()}
    for name, k in keys.items():
        assert len(set(k)) == len(k), f"duplicate problem inside {name}"
    assert not set(keys["heldout"]) & set(keys["train"])
    assert not set(keys["heldout"]) & set(keys["cold_start"])
    assert not set(keys["cold_start"]) & set(keys["train"])


def test_growing_train_keeps_heldout_and_cold_start():
    small = make_splits(TaskConfig(train_size=100, heldout_size=30, cold_start_size=20))
    large = make_splits(TaskConfig(train_size=900, heldout_size=30, cold_start_size=20))
    assert small["heldout"] == large["heldout"]
    assert small["cold_start"] == large["cold_start"]
    assert small["train"] == large["train"][:100]


def test_whole_space_can_be_used_exactly_once():
    # 1-digit operands 1..9: 9*10/2 = 45 unordered pairs (a == b allowed); ask for all of them.
    cfg = TaskConfig(min_digits=1, max_digits=1, train_size=30, heldout_size=10, cold_start_size=5)
    splits = make_splits(cfg)
    keys = [_key(p) for problems in splits.values() for p in problems]
    assert sorted(keys) == sorted((a, b) for a in range(1, 10) for b in range(a, 10))


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"min_digits": 0}, "task.min_digits"),
        ({"min_digits": 3, "max_digits": 2}, "task.max_digits"),
        ({"train_size": -1}, "task.train_size"),
        ({"heldout_size": 2.5}, "task.heldout_size"),
        # 1-digit: only 45 distinct problems, 40 + 5 + 1 = 46 requested
        (
            {"min_digits": 1, "max_digits": 1, "train_size": 40, "heldout_size": 5, "cold_start_size": 1},
            "task.train_size",
        ),
    ],
)
def test_invalid_config_names_the_field(override, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        make_splits(replace(TaskConfig(), **override))


def test_load_splits_rejects_unknown_task_name():
    with pytest.raises(ValueError, match="task.name"):
        load_splits(replace(TaskConfig(), name="multiplication"))
    assert (
        load_splits(TaskConfig(train_size=5, heldout_size=2, cold_start_size=1))["train"][0].prompt_id
        == "train-000000"
    )


def test_cold_start_digits_give_the_pool_its_own_range_disjoint_from_the_rest():
    cfg = TaskConfig(min_digits=1, max_digits=3, cold_start_digits=[1, 2], train_size=400, heldout_size=50)
    splits = make_splits(cfg)
    assert all(len(str(p.a)) <= 2 and len(str(p.b)) <= 2 for p in splits["cold_start"])
    assert max(max(len(str(p.a)), len(str(p.b))) for p in splits["train"]) == 3
    keys = {name: {_key(p) for p in problems} for name, problems in splits.items()}
    assert not keys["cold_start"] & (keys["train"] | keys["heldout"])
    assert make_splits(cfg) == splits
    # Held-out and train do not depend on the pool's range.
    other = make_splits(replace(cfg, cold_start_digits=[1, 1], cold_start_size=10))
    assert other["heldout"] == splits["heldout"] and other["train"] == splits["train"]


@pytest.mark.parametrize("digits", [[0, 2], [2, 1], [1], [1, 2, 3]])
def test_bad_cold_start_digits_are_named(digits):
    with pytest.raises(ValueError, match=re.escape("task.cold_start_digits")):
        make_splits(replace(TaskConfig(), cold_start_digits=digits))


def test_answer_only_cold_start_shows_the_sum_without_reasoning():
    from services.tasks.arithmetic import AdditionTask

    cfg = TaskConfig(train_size=5, heldout_size=2, cold_start_size=3, cold_start_solution="answer")
    for p, raw in zip(AdditionTask(cfg).splits()["cold_start"], make_splits(cfg)["cold_start"]):
        assert p.solution == f"<think>{raw.a}+{raw.b}</think><answer>{raw.a + raw.b}</answer>"
    with pytest.raises(ValueError, match="task.cold_start_solution"):
        AdditionTask(replace(cfg, cold_start_solution="essay"))
