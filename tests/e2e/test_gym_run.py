"""A reasoning-gym run through the real `r1forge` entry point: task=gym with the gym reward service.

The run goes through every real piece, as in test_pipeline_run.py, at the smallest step counts: the
cold start on gym items (format and answers only), an eval judged by the "gym" service (each item's own
dataset, with the entry carried in metadata_json across Redis and gRPC), one GRPO step, a second eval.
The checks are about wiring, not learning: the run exits 0, both evals have pass@1 and every completion
was scored by the gym service, and the prompts are basic_arithmetic items.

A second case is bad input: an unknown dataset name fails before anything starts, naming task.gym_name.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

OVERRIDES = [
    "task=gym",
    "task.gym_name=basic_arithmetic",
    "task.train_size=16",
    "task.heldout_size=4",
    "task.cold_start_size=8",
    "pipeline.stages=[cold_start_sft,eval,rl,eval]",
    # Enough of a cold start that most completions follow the format and GRPO has groups to train on:
    # a stage that trains no group fails the run (12 groups of 8 all scoring alike is very unlikely).
    "learner.sft_steps=100",
    "learner.rl_steps=3",
    "learner.prompts_per_step=4",
    "rollout.group_size=8",
    "rollout.temperature=0.7",
    # The longest default cold-start completion, "<think>99 - 10 + 99 = 188</think><answer>188</answer>",
    # is under 60 characters.
    "rollout.max_new_tokens=64",
    "eval.num_prompts=4",
    "eval.num_samples=2",
]


def test_gym_run_scores_with_the_gym_service(tmp_path_factory, make_r1forge):
    runner = make_r1forge(tmp_path_factory.mktemp("gym"))
    result = runner(OVERRIDES, timeout_s=600)
    assert result.returncode == 0, f"r1forge failed:\n{result.output[-6000:]}"
    run_dir = runner.run_dir
    for label in ("sft", "rl"):
        evaluation = json.loads((run_dir / f"eval_{label}.json").read_text())
        assert 0.0 <= evaluation["pass1"] <= 1.0, evaluation
        # Every completion got a real verdict from the gym service (an ERROR or TIMEOUT would be unscored).
        assert evaluation["unscored"] == 0, evaluation
        assert evaluation["num_prompts"] == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"]["task"] == "gym"
    assert list(summary["task"]["datasets"]) == ["basic_arithmetic"], summary["task"]
    rows = [json.loads(line) for line in (run_dir / "data" / "cold_start.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["prompt_id"].startswith("basic_arithmetic-cold_start-") for r in rows)
    trained = json.loads((run_dir / "checkpoints" / "rl" / "r1forge_state.json").read_text())[
        "trained_group_ids"
    ]
    assert all("basic_arithmetic-train-" in group_id for group_id in trained), trained
    runner.assert_nothing_left_behind(result, grace_s=30)


def test_unknown_gym_name_fails_fast_naming_the_field(r1forge):
    result = r1forge(["task=gym", "task.gym_name=basic_arithmetc"], timeout_s=90)
    assert result.returncode != 0, f"r1forge exited 0:\n{result.output[-3000:]}"
    assert "task.gym_name" in result.output and "basic_arithmetic" in result.output, result.output[-3000:]
    assert "Traceback" not in result.stdout
    r1forge.assert_nothing_left_behind(result)
