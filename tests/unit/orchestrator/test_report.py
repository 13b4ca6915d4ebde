"""`r1forge report`: one row per run from what the run directory holds, in markdown and a PNG."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from services.config_loader import load_config
from services.orchestrator.report import render_markdown, render_png, summarize_run


def _fake_run(tmp_path, name: str, pipeline: str, evals: list[dict], wall_s: float, rl_lengths=()):
    """A run directory shaped like the pipeline writes it (config.yaml, summary.json, manifests/, and
    metrics.jsonl with `rl_lengths` as the RL steps' mean completion lengths)."""
    run = tmp_path / name
    (run / "manifests").mkdir(parents=True)
    cfg = load_config([f"pipeline={pipeline}", f"run_dir={run}"])
    OmegaConf.save(cfg, run / "config.yaml", resolve=True)
    summary = {f"{e['label']}_pass1": e["pass1"] for e in evals} | {"wall_s": wall_s}
    (run / "summary.json").write_text(json.dumps(summary))
    for i, e in enumerate(evals):
        (run / "manifests" / f"{i:02d}_eval.json").write_text(json.dumps({"stage": "eval", "outputs": e}))
    rows = [{"stage": "cold_start_sft", "step": 1, "loss": 2.0}]
    rows += [{"stage": "rl", "step": i + 1, "response_len": n} for i, n in enumerate(rl_lengths)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def _eval(label: str, pass1: float, mixing: float | None) -> dict:
    out = {"label": label, "pass1": pass1, "samples_per_prompt": 4, "maj@4": pass1, "format_rate": 1.0,
           "response_len": 70.0}  # fmt: skip
    return out | ({"language_mixing_rate": mixing} if mixing is not None else {})


def test_rows_say_how_each_run_started_and_what_it_reached(tmp_path):
    r1 = _fake_run(tmp_path, "r1", "r1", [_eval("sft", 0.2, 0.0), _eval("distill", 0.5, 0.01)], 900.0)
    zero = _fake_run(
        tmp_path,
        "zero",
        "r1_zero",
        [_eval("base", 0.1, 0.3), _eval("rl", 0.4, 0.25)],
        300.0,
        (80.0, 60.0, 42.5),
    )
    a, b = summarize_run(r1), summarize_run(zero)
    assert (a["initialization"], b["initialization"]) == ("cold-start SFT", "base policy (no SFT)")
    assert a["pass1"] == 0.5 and a["final_policy"] == "distill" and a["language_mixing_rate"] == 0.01
    assert b["rewards"] == "rl: accuracy+format"  # language is scored with weight 0, so not "used"
    assert "rl_general/general: reward_model+format+language" in a["rewards"]
    # r1_zero's first stage evaluates the untrained policy: its "before"; r1's first eval is after SFT
    assert (a["pass1_before"], b["pass1_before"]) == (None, 0.1)
    assert b["rl_response_len"] == [(1, 80.0), (2, 60.0), (3, 42.5)] and a["rl_response_len"] == []
    md = render_markdown([a, b])
    assert "| held-out pass@1 before training | - | 0.100 |" in md
    assert "| held-out pass@1 after | 0.500 | 0.400 |" in md
    assert "| mean response length, first -> last RL step | - | 80.0 -> 42.5 |" in md
    assert "| wall time (s) | 900 | 300 |" in md
    assert render_png([a, b], tmp_path / "r.png").stat().st_size > 0


def test_a_directory_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(ValueError, match="no config.yaml"):
        summarize_run(tmp_path)
