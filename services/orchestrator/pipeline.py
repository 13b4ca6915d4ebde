"""Run a pipeline: the stages a Hydra config lists, in order, each leaving a manifest behind.

The run directory is the whole record of a run: the resolved config, one manifest per stage (inputs,
outputs, metrics, wall time), metrics.jsonl, TensorBoard events, curves.png, checkpoints, eval JSON
and summary.json. The last line printed says where it all is.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from services.orchestrator.metrics import MetricsLog, plot_curves
from services.orchestrator.resume import finished_manifests, latest_stage_checkpoint, truncate_metrics
from services.orchestrator.runtime import Runtime
from services.orchestrator.stage_registry import ROLLOUT_STAGES, get_stage
from services.orchestrator.stages import StageContext

log = logging.getLogger(__name__)


def run_pipeline(cfg) -> dict:
    """Run every stage of `cfg.pipeline` and return the summary (also written to summary.json)."""
    from services.config import check_config
    from services.models.zoo import resolve_model_dir
    from services.tasks import load_task

    t_start = time.perf_counter()
    # Everything that can be checked without starting a service is checked first, before heavy imports.
    check_config(cfg)
    stages = [get_stage(name) for name in cfg.pipeline.stages]  # unknown names fail before anything starts
    task = load_task(cfg.task)  # bad task input (a file, a row, a gym name) fails here, before anything runs
    splits = task.splits()
    cfg = with_correctness_scorer(cfg, task.accuracy_scorer)
    check_task_scorers(task, cfg.reward)
    log.info("task %s: %s", task.name, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    if cfg.model.path:
        resolve_model_dir(cfg.model)

    from transformers import AutoTokenizer

    from services.learner.checkpoint import load_checkpoint_meta

    run_dir = Path(cfg.run_dir).resolve()
    (run_dir / "manifests").mkdir(parents=True, exist_ok=True)
    done = finished_manifests(run_dir, list(cfg.pipeline.stages)) if cfg.resume else []
    if not cfg.resume:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    model_dir = str(resolve_model_dir(cfg.model))
    state = done[-1]["state"] if done else {}
    if cfg.resume:
        rows = state.get("metrics_rows", 0)
        interrupted = list(cfg.pipeline.stages)[len(done)] if len(done) < len(stages) else None
        in_stage = latest_stage_checkpoint(run_dir, interrupted) if interrupted else None
        if in_stage is not None:  # the interrupted stage continues from its in-stage checkpoint
            rows = in_stage[1]["metrics_rows"]
        dropped = truncate_metrics(run_dir / "metrics.jsonl", rows)
        log.info(
            "resuming %s: %d of %d stages finished (%s); %d metrics rows of the interrupted stage dropped",
            run_dir,
            len(done),
            len(stages),
            ", ".join(m["stage"] for m in done) or "none",
            dropped,
        )
    remaining = set(list(cfg.pipeline.stages)[len(done) :])
    runtime = Runtime(cfg)
    metrics = MetricsLog(run_dir)
    try:
        runtime.start(state.get("serving_dir", model_dir), workers=bool(ROLLOUT_STAGES & remaining))
        ctx = StageContext(
            cfg=cfg,
            run_dir=run_dir,
            run_id=cfg.run_id or run_dir.name,
            runtime=runtime,
            metrics=metrics,
            task=task,
            splits=splits,
            tokenizer=AutoTokenizer.from_pretrained(model_dir),
            policy_dir=model_dir,
            policy_version=load_checkpoint_meta(model_dir)["policy_version"],
            serving_dir=model_dir,
        )
        restore_state(ctx, state)
        rm_ckpt = ctx.results.get("reward_model_checkpoint")  # resumed: restart the trained RM service
        if rm_ckpt and "reward_model" in set(cfg.reward.scorers) - set(runtime.reward_addresses):
            runtime.start_reward_service("reward_model", [f"reward.reward_model_path={rm_ckpt}"])
        for i, (name, stage) in enumerate(zip(cfg.pipeline.stages, stages)):
            if i >= len(done):  # a resumed run skips the finished ones (their curves are already drawn)
                _run_stage(ctx, i, name, stage)
                plot_curves(metrics.path, run_dir / "curves.png", _evals(ctx))
    finally:
        metrics.close()
        runtime.close()
    summary = {
        "pipeline": cfg.pipeline.name,
        "task": task.report(),
        **{k: v for k, v in ctx.results.items()},
        # The version of the run's final policy (after sft_control the workers hold the control's weights).
        "policy_version": load_checkpoint_meta(ctx.policy_dir)["policy_version"],
        "final_checkpoint": ctx.policy_dir,
        # Services the supervisor restarted: each incident's error and seconds until healthy again.
        "restarts": runtime.supervisor.report() if runtime.supervisor is not None else {},
        # Role ("learner", "rollout") -> ids of the Ray nodes its actors ran on (`ray list nodes` names them).
        "ray_nodes": runtime.nodes.nodes,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def with_correctness_scorer(cfg, scorer: str):
    """`cfg` with the reward "accuracy" read as the task's own correctness scorer.

    The pipeline configs (r1_zero, r1) weight "accuracy" for any task; a task judged by another service
    (task=gym: "gym") gets that service in its place, in reward.scorers and in every weight table, unless
    the config already starts the task's scorer (then "accuracy" means math-verify, as written).
    """
    rw = cfg.reward
    if scorer == "accuracy" or scorer in rw.scorers or "accuracy" not in rw.scorers:
        return cfg

    def rename(weights):
        return {scorer if name == "accuracy" else name: w for name, w in weights.items()}

    out = copy.deepcopy(cfg)
    OmegaConf.set_readonly(out, False)
    out.reward.scorers = [scorer if s == "accuracy" else s for s in rw.scorers]
    out.reward.stage_weights = {key: rename(w) for key, w in rw.stage_weights.items()}
    out.reward.source_weights = {key: rename(w) for key, w in rw.source_weights.items()}
    OmegaConf.set_readonly(out, True)
    log.info("reward: 'accuracy' is task %s's correctness scorer %r here", cfg.task.name, scorer)
    return out


def check_task_scorers(task, rw) -> None:
    """The scorer that judges the task's answers must be one the run starts."""
    if task.accuracy_scorer not in rw.scorers:
        raise ValueError(
            f"task {task.name!r} is scored by the {task.accuracy_scorer!r} reward service, but "
            f"reward.scorers={list(rw.scorers)} does not start it; add it "
            f"(e.g. reward.scorers=[{task.accuracy_scorer},format,language])"
        )


def stage_state(ctx: StageContext) -> dict:
    """The pipeline state the stages after this one read."""
    path = ctx.metrics.path
    return {
        "policy_dir": ctx.policy_dir,
        "serving_dir": ctx.serving_dir,
        "policy_version": ctx.policy_version,
        "last_trained": ctx.last_trained,
        "eval_index": ctx.eval_index,
        "results": dict(ctx.results),
        "metrics_rows": len(path.read_text().splitlines()) if path.exists() else 0,
    }


def restore_state(ctx: StageContext, state: dict) -> None:
    """Put the pipeline back where a finished stage left it (`resume=`)."""
    if not state:
        return
    ctx.policy_dir, ctx.serving_dir = state["policy_dir"], state["serving_dir"]
    ctx.policy_version, ctx.last_trained = state["policy_version"], state["last_trained"]
    ctx.eval_index, ctx.results = state["eval_index"], dict(state["results"])


def _evals(ctx: StageContext) -> dict[str, float]:
    return {k.removesuffix("_pass1"): v for k, v in ctx.results.items() if k.endswith("_pass1")}


def _run_stage(ctx: StageContext, index: int, name: str, stage) -> None:
    log.info(
        "stage %d/%d: %s (policy v%d)", index + 1, len(ctx.cfg.pipeline.stages), name, ctx.policy_version
    )
    t0 = time.perf_counter()
    inputs = {"policy_dir": ctx.policy_dir, "policy_version": ctx.policy_version}
    outputs = stage(ctx)
    manifest = {
        "stage": name,
        "index": index,
        "status": "done",
        "inputs": inputs,
        "outputs": outputs,
        "wall_s": round(time.perf_counter() - t0, 1),
        "config": OmegaConf.to_container(ctx.cfg, resolve=True),
        "state": stage_state(ctx),  # what `resume=` restores to continue after this stage
    }
    path = ctx.run_dir / "manifests" / f"{index:02d}_{name}.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
