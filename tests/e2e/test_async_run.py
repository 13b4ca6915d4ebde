"""Streaming rollout in a real run: two rollout workers share one consumer group and run ahead of the
learner by `learner.max_staleness` versions.

Checks what the staleness bound promises: with max_staleness=1 groups arrive one policy version behind
the learner (rollout really runs ahead), never more, none is dropped as stale, every group is trained at
most once, both workers contribute, and the staleness histogram (per step and in summary.json) adds up
to the groups received. The same one-digit task and tiny policy as test_pipeline_run.
"""

from __future__ import annotations

import json

import pytest
from test_pipeline_run import OVERRIDES, PROMPTS_PER_STEP  # same directory (rootdir-relative imports)

pytestmark = pytest.mark.e2e

RL_STEPS = 4


def test_two_streaming_workers_stay_within_the_staleness_bound(tmp_path, make_r1forge):
    runner = make_r1forge(tmp_path)
    overrides = [o for o in OVERRIDES if not o.startswith("learner.rl_steps")]
    result = runner(
        [
            *overrides,
            f"learner.rl_steps={RL_STEPS}",
            "learner.max_staleness=1",
            "rollout.num_workers=2",
            "launcher.num_cpus=3",  # a logical CPU per actor: two workers and the learner
            "pipeline.stages=[cold_start_sft,rl]",
        ],
        timeout_s=600,
    )
    assert result.returncode == 0, f"r1forge failed:\n{result.output[-6000:]}"
    rows = [json.loads(line) for line in (runner.run_dir / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == list(range(1, RL_STEPS + 1))
    lags = [r["policy_lag_max"] for r in rl]
    assert max(lags) <= 1, lags
    # Step 1's groups were sampled before any update; from then on the prompts of step k+1 were issued
    # while the learner took step k, so (unless a step trained nothing) they lag by one version.
    assert any(lag == 1 for lag in lags[1:]) or all(r["groups_trained"] == 0 for r in rl[:-1]), rl
    for r in rl:
        assert r["dropped_stale"] == 0 and r["dropped_duplicate"] == 0, r
        assert (
            r["groups_trained"] + sum(v for k, v in r.items() if k.startswith("dropped_")) == PROMPTS_PER_STEP
        )
        histogram = {k: v for k, v in r.items() if k.startswith("staleness_")}
        assert sum(histogram.values()) == PROMPTS_PER_STEP - r["dropped_dead_lettered"], r
        assert set(histogram) <= {"staleness_0", "staleness_1"}, r
    assert max(r["rollout_workers"] for r in rl) == 2, [r["rollout_workers"] for r in rl]
    summary = json.loads((runner.run_dir / "summary.json").read_text())
    totals = summary["rl_staleness"]
    assert sum(totals.values()) == sum(sum(v for k, v in r.items() if k.startswith("staleness_")) for r in rl)
    assert totals.get("staleness_1", 0) > 0 or all(r["groups_trained"] == 0 for r in rl[:-1]), totals
    state = json.loads((runner.run_dir / "checkpoints" / "rl" / "r1forge_state.json").read_text())
    assert (
        len(state["trained_group_ids"])
        == len(set(state["trained_group_ids"]))
        == sum(r["groups_trained"] for r in rl)
    )
