"""A whole `r1forge` run, for a few steps, through the real entry point in a subprocess.

The run goes through every real piece: embedded Redis, the reward services as processes, a local Ray,
a vLLM rollout worker, the learner actor. The test then reads the run directory only, as a user would,
and checks what the design promises: the policy changed and its version advanced, metrics were
written for every step, every issued group is accounted for and none was trained twice, and each
stage left a manifest.

The task is one-digit addition so that a 2-layer, 64-wide policy learns the answer template in 100
SFT steps (~20 s); then sampled groups mix rewards and GRPO has something to train on (a group whose
completions all score the same carries no signal and is dropped).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.e2e

SFT_STEPS = 100
RL_STEPS = 3
PROMPTS_PER_STEP = 4
STAGES = ["cold_start_sft", "eval", "rl", "eval"]
OVERRIDES = [
    # 45 distinct one-digit problems {a, b}, 1 <= a <= b <= 9: 9 * 10 / 2 = 45 = 24 + 8 + 13.
    "task.min_digits=1",
    "task.max_digits=1",
    "task.train_size=24",
    "task.heldout_size=8",
    "task.cold_start_size=13",
    # Worked solutions only (the default task mixes in bare sums): the template below assumes them.
    "task.cold_start_solution=worked",
    f"learner.sft_steps={SFT_STEPS}",
    f"learner.rl_steps={RL_STEPS}",
    f"learner.prompts_per_step={PROMPTS_PER_STEP}",
    # After SFT about 0.9 of completions follow the template and few are right, so a group of 8 scores
    # uniformly (all formatted, all wrong) with probability ~ 0.9^8 ~ 0.43, and all 3 x 4 groups of the
    # run with ~ 0.43^12 ~ 4e-5: some group trains. (Groups of 4 left this at ~ 5%.)
    "rollout.group_size=8",
    # The longest one-digit worked solution, "<think>9+9=18 write 8 carry 1\nfinal carry 1\nresult 18</think>
    # <answer>18</answer>", is 52 tokens with the tags as one token each, 53 with EOS.
    "rollout.max_new_tokens=80",
    # Some sampling noise on top of the SFT policy, so completions of one prompt differ.
    "rollout.temperature=0.7",
    "eval.num_prompts=8",
    "eval.num_samples=2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_r1forge):
    """Run the pipeline once for all the checks below."""
    runner = make_r1forge(tmp_path_factory.mktemp("pipeline"))
    result = runner(OVERRIDES, timeout_s=600)
    assert result.returncode == 0, f"r1forge failed:\n{result.output[-6000:]}"
    return SimpleNamespace(result=result, dir=runner.run_dir, runner=runner)


def _rows(run_dir, stage: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["stage"] == stage]


def _state(run_dir, checkpoint: str) -> dict:
    return json.loads((run_dir / "checkpoints" / checkpoint / "r1forge_state.json").read_text())


def test_last_line_says_where_the_results_are(run):
    result, run_dir = run.result, run.dir
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"results in {run_dir.resolve()}"), last


def test_summary_has_the_headline_numbers(run):
    run_dir = run.dir
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("sft_pass1", "rl_pass1", "rl_steps", "policy_version", "wall_s"):
        assert key in summary, f"summary.json lacks {key}: {summary}"
    assert 0.0 <= summary["sft_pass1"] <= 1.0 and 0.0 <= summary["rl_pass1"] <= 1.0
    assert summary["rl_steps"] == RL_STEPS
    assert summary["wall_s"] > 0


def test_rl_trained_groups_and_advanced_the_policy(run):
    run_dir = run.dir
    rl = _rows(run_dir, "rl")
    assert sum(r["groups_trained"] for r in rl) > 0, f"no group had reward variance: {rl}"
    sft_version = _state(run_dir, "cold_start_sft")["policy_version"]
    rl_version = _state(run_dir, "rl")["policy_version"]
    summary = json.loads((run_dir / "summary.json").read_text())
    # One version per optimizer step: a step is taken exactly when some group was admitted.
    steps_taken = sum(r["groups_trained"] > 0 for r in rl)
    assert rl_version == sft_version + steps_taken
    assert summary["policy_version"] == rl_version > sft_version
    assert rl[-1]["policy_version"] == rl_version


def test_rl_checkpoint_weights_differ_from_sft(run):
    run_dir = run.dir
    sft = load_file(str(run_dir / "checkpoints" / "cold_start_sft" / "model.safetensors"))
    rl = load_file(str(run_dir / "checkpoints" / "rl" / "model.safetensors"))
    assert sft.keys() == rl.keys()
    changed = [name for name in sft if not (sft[name] == rl[name]).all()]
    assert changed, "GRPO steps were taken but no weight changed"


def test_metrics_have_one_row_per_rl_step(run):
    run_dir = run.dir
    rl = _rows(run_dir, "rl")
    assert [r["step"] for r in rl] == list(range(1, RL_STEPS + 1))
    assert len(_rows(run_dir, "cold_start_sft")) == SFT_STEPS
    assert len(_rows(run_dir, "eval")) == STAGES.count("eval")


def test_every_group_accounted_for_and_trained_at_most_once(run):
    run_dir = run.dir
    rl = _rows(run_dir, "rl")
    for r in rl:
        dropped = sum(v for k, v in r.items() if k.startswith("dropped_"))
        assert r["groups_trained"] + dropped == PROMPTS_PER_STEP, r
        assert r["dropped_duplicate"] == 0, r  # nothing was redelivered in a run without failures
    trained_ids = _state(run_dir, "rl")["trained_group_ids"]
    assert len(trained_ids) == len(set(trained_ids))
    assert sum(r["groups_trained"] for r in rl) == len(trained_ids)


def test_each_stage_left_a_manifest(run):
    run_dir = run.dir
    manifests = sorted((run_dir / "manifests").glob("*.json"))
    assert [json.loads(m.read_text())["stage"] for m in manifests] == STAGES
    for m in manifests:
        manifest = json.loads(m.read_text())
        assert manifest["status"] == "done" and "config" in manifest and "outputs" in manifest, m.name


def test_curves_and_tensorboard_written(run):
    run_dir = run.dir
    png = run_dir / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_no_process_left_behind(run):
    # Redis, the reward services and Ray all stop when the run ends.
    run.runner.assert_nothing_left_behind(run.result, grace_s=30)
