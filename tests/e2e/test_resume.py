"""`r1forge resume=<run dir>`: a run killed in the middle of a stage continues at that stage.

The first attempt is SIGKILLed (the whole process group, as an OOM killer or a lost node would) once
GRPO has logged its fourth step, i.e. after cold_start_sft and eval finished, in the middle of rl and
after its in-stage checkpoint at step 3 (`learner.checkpoint_every=3`). The resumed run must not redo
the finished stages (their checkpoint files stay untouched), must continue rl from step 3 (the rows
of steps 1-3 are the first attempt's), run the final eval, and leave exactly one metrics row per step.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.e2e.conftest import TINY_MODEL, assert_nothing_left_behind, kill_tagged, start_r1forge
from tests.e2e.test_pipeline_run import OVERRIDES, SFT_STEPS, STAGES

pytestmark = pytest.mark.e2e
RL_STEPS = 8
CHECKPOINT_EVERY = 3


def _rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _kill_when_rl_has_logged(proc, tag: str, run_dir, log_path, timeout_s: float, steps: int) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and sum(r["stage"] == "rl" for r in _rows(run_dir)) >= steps:
            break
        if proc.poll() is not None:
            pytest.fail(f"the first attempt ended before rl began:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        kill_tagged(tag)
        pytest.fail(f"rl never logged a step within {timeout_s:.0f}s:\n{log_path.read_text()[-4000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kill_tagged(tag)  # Ray and redis-server children outlive a killed group leader


def test_killed_run_resumes_at_the_unfinished_stage(tmp_path, zoo_dir, make_r1forge):
    runner = make_r1forge(tmp_path)
    run_dir = runner.run_dir
    base = [f"run_dir={run_dir}", f"model.cache_dir={zoo_dir}", *TINY_MODEL]
    # Enough RL steps that the kill (after the first) lands inside the stage.
    first = [
        *base,
        *OVERRIDES,
        f"learner.rl_steps={RL_STEPS}",
        f"learner.checkpoint_every={CHECKPOINT_EVERY}",
    ]
    log_path = tmp_path / "first.log"
    with log_path.open("w") as log:
        proc, tag = start_r1forge(first, tmp_path, log)
        runner.tags.append(tag)
        _kill_when_rl_has_logged(proc, tag, run_dir, log_path, timeout_s=400, steps=CHECKPOINT_EVERY + 1)

    finished = sorted(p.name for p in (run_dir / "manifests").glob("*.json"))
    assert finished == ["00_cold_start_sft.json", "01_eval.json"]
    sft_weights = run_dir / "checkpoints" / "cold_start_sft" / "model.safetensors"
    stamp = sft_weights.stat().st_mtime_ns
    sft_pass1 = json.loads((run_dir / "manifests" / "01_eval.json").read_text())["outputs"]["pass1"]
    first_rl_rows = [r for r in _rows(run_dir) if r["stage"] == "rl"][:CHECKPOINT_EVERY]

    # An override that changes the run's config is refused before anything starts.
    changed = runner(["resume=" + str(run_dir), "learner.kl_coef=0.5"], timeout_s=120)
    assert changed.returncode == 2 and "learner.kl_coef" in changed.stderr, changed.output[-2000:]

    # The original overrides (as a user re-running the same command line would) but with its config.
    again = [*OVERRIDES, f"learner.rl_steps={RL_STEPS}", f"learner.checkpoint_every={CHECKPOINT_EVERY}"]
    result = runner(["resume=" + str(run_dir), *again], timeout_s=600)
    assert result.returncode == 0, result.output[-6000:]
    assert "2 of 4 stages finished (cold_start_sft, eval)" in result.output
    assert sft_weights.stat().st_mtime_ns == stamp, "the finished cold start was redone"

    manifests = sorted((run_dir / "manifests").glob("*.json"))
    assert [json.loads(m.read_text())["stage"] for m in manifests] == STAGES
    rows = _rows(run_dir)
    assert len([r for r in rows if r["stage"] == "cold_start_sft"]) == SFT_STEPS
    # rl continued from its step-3 checkpoint: the first attempt's rows up to it are kept, its later ones
    # dropped, and the resumed attempt logged steps 4..8: one row per step.
    assert "rl continues from its in-stage checkpoint" in result.output
    assert [r["step"] for r in rows if r["stage"] == "rl"] == list(range(1, RL_STEPS + 1))
    assert [r for r in rows if r["stage"] == "rl"][:CHECKPOINT_EVERY] == first_rl_rows
    versions = [r["policy_version"] for r in rows if r["stage"] == "rl"]
    assert versions == sorted(versions), versions
    assert len([r for r in rows if r["stage"] == "eval"]) == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["sft_pass1"] == sft_pass1 and "rl_pass1" in summary
    assert summary["rl_steps"] == RL_STEPS
    assert_nothing_left_behind(result)
