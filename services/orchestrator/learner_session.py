"""A stage's learner actor from start to kill: the one helper every training stage uses.

`with learner_session(ctx) as learner:` starts a `LearnerService` actor on the current policy (or on
`model_dir`; with `groups_stage` it also consumes that stage's groups stream) and kills it when the block
ends, on errors too. `finish(ctx, learner, label)` saves `checkpoints/<label>` and, unless `sync=False`,
pushes the new weights to every rollout worker (`rollouts.sync_weights`); it returns the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import OmegaConf

from services.orchestrator.learner_group import kill_learner, start_learner_group
from services.orchestrator.placement import actor_options
from services.orchestrator.rollouts import sync_weights
from services.transport.names import groups_stream_for


@contextmanager
def learner_session(ctx, groups_stage: str | None = None, model_dir: str = "") -> Iterator[object]:

    learner = start_learner(ctx, groups_stage, model_dir)
    try:
        yield learner
    finally:
        kill_learner(learner)


def start_learner(ctx, groups_stage: str | None = None, model_dir: str = "", resume: bool = False):
    """A learner actor on `model_dir` (default: the current policy); with `groups_stage` it trains on
    that stage's groups stream; `resume` continues a checkpoint of the same stage (step count, trained
    ids, optimizer, accounting)."""
    import ray

    from services.learner.service import LearnerService

    lc = OmegaConf.to_object(ctx.cfg.learner)
    if groups_stage is not None and lc.max_staleness > 0:  # rollout samples while this learner trains
        lc.num_threads = lc.num_threads_async
    args: tuple = (model_dir or ctx.policy_dir, lc)
    kwargs: dict = {"resume": resume}
    if groups_stage is not None:
        rc = OmegaConf.to_object(ctx.cfg.redis)
        args += (rc, ctx.runtime.redis_url, groups_stream_for(rc.groups_stream, groups_stage))
        kwargs["run_id"] = ctx.run_id
    options = actor_options(ctx.cfg.launcher.learner_resources)
    if lc.num_ranks > 1:  # FSDP2 over N rank actors, driven as one (services.orchestrator.learner_group)
        learner = start_learner_group(lc, args, kwargs, options)
        for actor in learner.actors:
            ctx.runtime.nodes.ask("learner", actor)
        return learner
    actor_cls = ray.remote(num_cpus=1, num_gpus=1 if lc.device == "cuda" else 0)(LearnerService)
    learner = actor_cls.options(**options).remote(*args, **kwargs)
    ctx.runtime.nodes.ask("learner", learner)
    return learner


def finish(ctx, learner, label: str, sync: bool = True) -> str:
    """Save the learner's policy to `checkpoints/<label>`; with `sync` the rollout workers get it too."""
    import ray

    ckpt = ray.get(learner.save.remote(str(ctx.run_dir / "checkpoints" / label)))
    if sync:
        sync_weights(ctx, learner)
    return ckpt
