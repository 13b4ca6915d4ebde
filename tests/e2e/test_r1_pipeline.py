"""The whole R1 recipe (`pipeline=r1`) through the real entry point, at the smallest size that runs.

Every stage runs for real, a few steps each: the reward model trains on (a slice of) the shipped
preference pairs with the real MiniLM encoder and its service starts mid-run; cold-start SFT; GRPO;
rejection sampling through the rollout workers and reward services; SFT on the sampled dataset
(read with `datasets`, packed); RL stage 2 on reasoning + general prompts with the reward model;
distillation into a smaller student (teacher top-k log-probs from vLLM), after its SFT-only control;
and evals. The test reads the run directory only, as a user would.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.e2e.test_pipeline_run import OVERRIDES

pytestmark = pytest.mark.e2e
RL_STEPS = 3

STAGES = ["reward_model", "cold_start_sft", "eval", "rl", "eval", "rejection_sampling", "sft", "eval",
          "rl_general", "eval", "distill", "eval"]  # fmt: skip
TINY_R1 = [
    "pipeline=r1",
    *OVERRIDES,
    # 12 groups per RL stage: one that trains no group fails the run, and all 12 scoring alike is unlikely.
    f"learner.rl_steps={RL_STEPS}",
    # The reward model: a few steps, 64 held-out pairs (the full set is the README's measurement).
    "reward_model.steps=6",
    "reward_model.batch_size=8",
    "reward_model.max_length=64",
    # Accept every formatted completion, so the tiny policy leaves rows to train on.
    "rejection.num_prompts=8",
    "rejection.samples_per_prompt=4",
    "rejection.min_scores.accuracy=0.0",
    "rejection.min_scores.language=0.0",
    "rejection.general_ratio=0.25",
    "sft.steps=5",
    "rl_general.general_fraction=0.5",
    "distill.num_prompts=8",
    "distill.samples_per_prompt=2",
    "distill.only_correct=false",
    "distill.top_k=4",
    "distill.steps=5",
    "distill.student_num_layers=1",
    "distill.student_intermediate_size=64",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_r1forge):
    workdir = tmp_path_factory.mktemp("r1")
    heldout = workdir / "heldout64.jsonl"
    from services.orchestrator.stages import PREFERENCES_DIR

    heldout.write_text("".join((PREFERENCES_DIR / "heldout.jsonl").read_text().splitlines(True)[:64]))
    runner = make_r1forge(workdir)
    result = runner([*TINY_R1, f"reward_model.heldout_path={heldout}"], timeout_s=900)
    assert result.returncode == 0, f"r1forge pipeline=r1 failed:\n{result.output[-6000:]}"
    return SimpleNamespace(result=result, dir=runner.run_dir)


def _rows(run_dir, stage: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["stage"] == stage]


def _manifest(run_dir, index: int) -> dict:
    return json.loads((run_dir / "manifests" / f"{index:02d}_{STAGES[index]}.json").read_text())


def test_every_stage_finished_with_a_manifest(run):
    manifests = sorted((run.dir / "manifests").glob("*.json"))
    assert [json.loads(m.read_text())["stage"] for m in manifests] == STAGES
    assert all(json.loads(m.read_text())["status"] == "done" for m in manifests)


def test_reward_model_trained_and_scored_general_prompts(run):
    out = _manifest(run.dir, 0)["outputs"]
    assert 0.0 <= out["heldout_accuracy"] <= 1.0 and out["heldout_pairs"] == 64
    assert (run.dir / "checkpoints" / "reward_model" / "config.json").is_file()
    rl2 = _rows(run.dir, "rl_general")
    assert len(rl2) == RL_STEPS
    # Per-source metrics: the general prompts were judged by the reward model, the reasoning ones by rules.
    assert all("general/reward_reward_model" in r and "addition/reward_accuracy" in r for r in rl2), rl2
    assert all("general/reward_accuracy" not in r for r in rl2)


def test_rejection_sampled_dataset_has_provenance_and_general_rows(run):
    out = _manifest(run.dir, 5)["outputs"]
    rows = [
        json.loads(line) for line in (run.dir / "data" / "rejection_sampled.jsonl").read_text().splitlines()
    ]
    assert len(rows) == out["rows"] > 0
    reasoning = [r for r in rows if r["source"] == "addition"]
    general = [r for r in rows if r["source"] == "general"]
    assert reasoning and general
    for r in reasoning:
        assert r["rewards"]["format"]["value"] == 1.0 and r["rewards"]["format"]["status"] == "ok"
        assert isinstance(r["policy_version"], int) and r["policy_version"] > 0
    # Deduplicated: no completion twice for one prompt.
    assert len({(r["prompt_id"], r["completion"].strip()) for r in reasoning}) == len(reasoning)
    assert len(_rows(run.dir, "sft")) == 5


def test_distilled_student_is_smaller_and_was_evaluated(run):
    out = _manifest(run.dir, 10)["outputs"]
    soft = [
        json.loads(line)
        for line in (run.dir / "data" / "distill_soft_targets.jsonl").read_text().splitlines()
    ]
    assert len(soft) == out["rows"] > 0
    assert all(
        len(r["topk_ids"]) == len(r["completion_token_ids"]) and len(r["topk_ids"][0]) == 4 for r in soft
    )
    student = json.loads((run.dir / "checkpoints" / "distill" / "config.json").read_text())
    teacher = json.loads((run.dir / "checkpoints" / "rl_general" / "config.json").read_text())
    assert student["num_hidden_layers"] < teacher["num_hidden_layers"]
    assert len(_rows(run.dir, "distill")) == len(_rows(run.dir, "distill_sft_control")) == 5
    summary = json.loads((run.dir / "summary.json").read_text())
    for label in ("sft", "rl", "sft2", "rl_general", "distill_sft_control", "distill"):
        assert f"{label}_pass1" in summary, summary


def test_report_compares_runs(run, tmp_path):
    from tests.e2e.conftest import run_r1forge

    result = run_r1forge(
        ["report", str(run.dir), "--out", str(tmp_path / "rep")], cwd=tmp_path, timeout_s=120
    )
    assert result.returncode == 0, result.output[-3000:]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "language-mixing rate" in md and "cold-start SFT" in md
    assert (tmp_path / "rep" / "report.png").stat().st_size > 0
