"""resume=<run dir>: which stages count as finished, the metrics rows kept, and config overrides refused."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from services.config_loader import load_config
from services.orchestrator.resume import finished_manifests, load_resumed_config, truncate_metrics

STAGES = ["cold_start_sft", "eval", "rl", "eval"]


def _manifest(run_dir, index: int, status: str = "done", state: bool = True) -> None:
    body = {"stage": STAGES[index], "status": status, **({"state": {"metrics_rows": index}} if state else {})}
    (run_dir / "manifests").mkdir(exist_ok=True)
    (run_dir / "manifests" / f"{index:02d}_{STAGES[index]}.json").write_text(json.dumps(body))


def test_finished_stages_are_the_done_prefix(tmp_path):
    assert finished_manifests(tmp_path, STAGES) == []
    _manifest(tmp_path, 0)
    _manifest(tmp_path, 1)
    _manifest(tmp_path, 3)  # a later manifest without the one before it does not count
    assert [m["stage"] for m in finished_manifests(tmp_path, STAGES)] == ["cold_start_sft", "eval"]
    _manifest(tmp_path, 1, state=False)  # written by a version without resume state: not resumable from
    assert [m["stage"] for m in finished_manifests(tmp_path, STAGES)] == ["cold_start_sft"]


def test_truncate_metrics_keeps_the_rows_of_finished_stages(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f'{{"step": {i}}}\n' for i in range(5)))
    assert truncate_metrics(path, 3) == 2
    assert path.read_text().splitlines() == ['{"step": 0}', '{"step": 1}', '{"step": 2}']
    assert truncate_metrics(path, 10) == 0
    assert truncate_metrics(tmp_path / "none.jsonl", 0) == 0


def test_resumed_config_is_the_runs_own_and_changes_are_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(load_config([f"run_dir={run}", "learner.kl_coef=0.05"]), run / "config.yaml")
    given = load_config([f"resume={run}"])
    cfg = load_resumed_config(given, [f"resume={run}"])
    assert cfg.learner.kl_coef == 0.05 and cfg.resume == str(run) and cfg.run_dir == str(run)
    # Repeating the original override is fine; changing a value is refused, naming the key.
    assert load_resumed_config(
        load_config([f"resume={run}", "learner.kl_coef=0.05"]), ["learner.kl_coef=0.05"]
    )
    with pytest.raises(ValueError, match="learner.kl_coef"):
        load_resumed_config(load_config([f"resume={run}", "learner.kl_coef=0.5"]), ["learner.kl_coef=0.5"])
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_resumed_config(load_config([f"resume={tmp_path / 'nope'}"]), [])
