"""`r1forge resume=<run dir>`: continue a failed or stopped run at its first unfinished stage.

A stage is finished when its manifest (`manifests/NN_<stage>.json`) says `"status": "done"`; the
manifest is written only after the stage's checkpoint is saved and synced, so a run killed at any
moment has a clean prefix of finished stages. Each manifest also records the pipeline state after
the stage (`state`: the policy checkpoint, the one the rollout workers serve, its version, the results
so far, how many metrics rows existed), which is everything the next stage reads. Resuming:

* takes the run's own resolved config (`<run dir>/config.yaml`); an override on the command line
  that would change it is an error, since a resumed run must mean the same thing as the original;
* restores the state of the last finished stage and starts the services from its checkpoints;
* drops metrics rows an interrupted stage wrote after that point (its curves would be drawn twice);
* runs the remaining stages from their start (an interrupted stage restarts from its input
  checkpoint; its partial outputs are overwritten), except an RL stage with an in-stage checkpoint
  (`checkpoints/<stage>-stepNNNNN`, every `learner.checkpoint_every` steps): it continues from the
  newest one, with its step, issued ids, feeder positions, accounting and metrics rows up to it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def load_resumed_config(cfg, overrides: list[str]):
    """The run's saved config with `resume` set; ValueError when an override would change it."""
    run_dir = Path(cfg.resume).expanduser().resolve()
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise FileNotFoundError(
            f"resume={cfg.resume}: {saved_path} not found; point resume at the run directory of an earlier "
            "r1forge run (it holds config.yaml and manifests/)"
        )
    saved = OmegaConf.merge(cfg, OmegaConf.load(saved_path))  # typed by the schema of `cfg`
    changed = []
    for override in overrides:
        key, _, _ = override.lstrip("+~").partition("=")
        if key in ("resume", "run_dir") or key.startswith("hydra"):
            continue
        if OmegaConf.select(cfg, key) != OmegaConf.select(saved, key):
            changed.append(
                f"{key} (run: {OmegaConf.select(saved, key)!r}, given: {OmegaConf.select(cfg, key)!r})"
            )
    if changed:
        raise ValueError(
            f"resume={cfg.resume} continues the run with its own config; these overrides would change it: "
            + "; ".join(changed)
            + ". Drop them, or start a new run"
        )
    readonly = OmegaConf.is_readonly(saved)
    OmegaConf.set_readonly(saved, False)
    saved.run_dir, saved.resume = str(run_dir), str(run_dir)
    OmegaConf.set_readonly(saved, readonly)
    return saved


def finished_manifests(run_dir: Path, stages: list[str]) -> list[dict]:
    """Manifests of the finished prefix of `stages`, in order (empty for a fresh run)."""
    done = []
    for index, name in enumerate(stages):
        path = run_dir / "manifests" / f"{index:02d}_{name}.json"
        if not path.is_file():
            break
        manifest = json.loads(path.read_text())
        if manifest.get("status") != "done" or "state" not in manifest:
            break
        done.append(manifest)
    return done


def truncate_metrics(path: Path, rows: int) -> int:
    """Keep the first `rows` lines of metrics.jsonl; return how many were dropped."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) <= rows:
        return 0
    path.write_text("".join(lines[:rows]))
    return len(lines) - rows


def latest_stage_checkpoint(run_dir: Path, stage: str) -> tuple[Path, dict] | None:
    """The newest in-stage checkpoint of `stage` (`checkpoints/<stage>-stepNNNNN`) and its r1forge
    state, or None. A killed RL stage continues from it (`resume=`) instead of from the stage's start."""
    from services.learner.checkpoint import load_checkpoint_meta

    found = sorted((run_dir / "checkpoints").glob(f"{stage}-step[0-9]*"))
    for path in reversed(found):
        meta = load_checkpoint_meta(path)
        if "stage_step" in meta:  # written by this stage's loop, complete (checkpoints are atomic)
            return path, meta
    return None
