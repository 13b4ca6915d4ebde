"""A short `r1forge task=dataset` run on the shipped GSM8K sample, through the real entry point.

It checks the wiring, not learning: the dataset task's splits reach the cold-start SFT, both
evaluations and GRPO (prompts with GSM8K questions, references read from "#### N", judged by
math-verify), the run exits 0, and summary.json carries the task's report (rows read, used, skipped).
The step counts are the smallest that pass through every stage, so the run stays near a minute.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.e2e

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "tasks" / "gsm8k_sample.jsonl"
RL_STEPS = 3
OVERRIDES = [
    "task=dataset",
    f"task.path={SAMPLE}",
    "task.cold_start_size=16",
    "task.train_size=32",
    "task.heldout_size=4",
    "pipeline.stages=[cold_start_sft,eval,rl,eval]",
    # Enough of a cold start that most completions follow the format and GRPO has groups to train on:
    # a stage that trains no group fails the run (12 groups of 8 all scoring alike is very unlikely).
    "learner.sft_steps=60",
    "learner.sft_batch_size=8",
    f"learner.rl_steps={RL_STEPS}",
    "learner.prompts_per_step=4",
    "rollout.group_size=8",
    "rollout.temperature=0.7",
    # A worked GSM8K solution of the sample is at most ~150 characters (one token each).
    "rollout.max_new_tokens=192",
    "eval.num_prompts=4",
    "eval.num_samples=2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_r1forge):
    runner = make_r1forge(tmp_path_factory.mktemp("dataset"))
    result = runner(OVERRIDES, timeout_s=300)
    assert result.returncode == 0, f"r1forge failed:\n{result.output[-6000:]}"
    return SimpleNamespace(result=result, dir=runner.run_dir, runner=runner)


def test_both_evaluations_report_pass1(run):
    for label in ("sft", "rl"):
        result = json.loads((run.dir / f"eval_{label}.json").read_text())
        assert 0.0 <= result["pass1"] <= 1.0, result


def test_summary_carries_the_task_report(run):
    summary = json.loads((run.dir / "summary.json").read_text())
    task = summary["task"]
    assert task["task"] == "dataset" and task["source"] == "gsm8k_sample"
    assert task["rows_read"] == 300 and task["skipped"]["count"] == 0
    assert task["splits"] == {"train": 32, "heldout": 4, "cold_start": 16}
    assert task["rows_used"] == 52
    assert summary["rl_steps"] == RL_STEPS
    assert "sft_pass1" in summary and "rl_pass1" in summary


def test_cold_start_data_is_the_worked_gsm8k_solutions(run):
    rows = [json.loads(line) for line in (run.dir / "data" / "cold_start.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    for row in rows:
        assert row["prompt_id"].startswith("gsm8k_sample-")
        assert row["completion"].startswith("<think>") and "<<" not in row["completion"]
        assert row["completion"].endswith(f"<answer>{row['answer']}</answer>")


def test_no_process_left_behind(run):
    run.runner.assert_nothing_left_behind(run.result, grace_s=30)
