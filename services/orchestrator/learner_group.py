"""A learner on N ranks seen from the driver as one actor.

`learner.num_ranks=N` (N > 1) starts N `LearnerRank` actors in one Ray placement group (a CPU or a GPU
per bundle, packed), has rank 0 offer a rendezvous address, and lets every rank join the torch.distributed
group and build its `LearnerService` shard (`services.learner.distributed`). `LearnerGroup` then stands
in for the single actor handle the stages use: `group.train_step.remote(...)` calls the method on every
rank (they run in lock-step through their collectives) and returns rank 0's ObjectRef, so the stages'
code is the same for one rank and for N. A rank's own error surfaces at the group's next call; a rank
that dies makes the others fail their next collective within `learner.dist_timeout_s`.
"""

from __future__ import annotations

import logging

from services.learner.distributed import RankInfo, destroy, free_address, init_group
from services.learner.service import LearnerService

log = logging.getLogger(__name__)


class LearnerRank(LearnerService):
    """One rank of a multi-rank learner: created empty, then `start`ed once the rendezvous is known."""

    def __init__(self, rank: int, world_size: int) -> None:  # LearnerService.__init__ runs in `start`
        self.info = RankInfo(rank, world_size)

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0: the address and free port the group meets at."""
        return free_address()

    def start(self, address: str, port: int, device: str, timeout_s: float, *args, **kwargs) -> int:
        """Join the process group, then build this rank's LearnerService (loads and shards the policy)."""
        init_group(self.info, address, port, device, timeout_s)
        LearnerService.__init__(self, *args, rank=self.info, **kwargs)
        return self.info.rank

    def close(self) -> None:
        destroy()


class _Method:
    def __init__(self, group: LearnerGroup, name: str, options: dict | None = None) -> None:
        self.group, self.name, self.opts = group, name, options or {}

    def options(self, **options) -> _Method:
        return _Method(self.group, self.name, {**self.opts, **options})

    def remote(self, *args, **kwargs):
        self.group.raise_follower_errors()
        refs = [
            getattr(actor, self.name).options(**self.opts).remote(*args, **kwargs)
            for actor in self.group.actors
        ]
        import ray

        flat = [r for ref in refs[1:] for r in (ref if isinstance(ref, list) else [ref])]
        self.group.followers = [r for r in flat if isinstance(r, ray.ObjectRef)]
        self.group.streams = [r for r in flat if not isinstance(r, ray.ObjectRef)]  # kept alive, not read
        return refs[0]


class LearnerGroup:
    """N learner ranks behind the interface of one actor handle (see the module doc)."""

    def __init__(self, actors: list, placement_group) -> None:
        self.actors = actors
        self.placement_group = placement_group
        self.followers: list = []  # the other ranks' refs of the last call
        self.streams: list = []  # the other ranks' streaming generators of the last call (weight publish)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def raise_follower_errors(self) -> None:
        """Raise the error of a rank other than 0 from the previous call, if it failed."""
        import ray

        if not self.followers:
            return
        done, _ = ray.wait(self.followers, num_returns=len(self.followers), timeout=0)
        ray.get(done)

    def kill(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            ray.kill(actor)
        remove_placement_group(self.placement_group)


def start_learner_group(lc, args: tuple, kwargs: dict, options: dict | None = None) -> LearnerGroup:
    """N = lc.num_ranks ranks of `LearnerService(*args, **kwargs)`, started and joined (blocks until
    every rank has loaded and sharded its policy, within lc.dist_timeout_s)."""
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    n = lc.num_ranks
    bundle = {"GPU": 1, "CPU": 1} if lc.device == "cuda" else {"CPU": 1}
    pg = placement_group([dict(bundle) for _ in range(n)], strategy="PACK")
    try:
        ray.get(pg.ready(), timeout=lc.dist_timeout_s)
    except ray.exceptions.GetTimeoutError as e:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(pg)
        raise RuntimeError(
            f"learner.num_ranks={n} needs {n} bundles of {bundle} and the Ray cluster could not place them "
            f"within {lc.dist_timeout_s:.0f}s (launcher.num_cpus / GPUs too few?)"
        ) from e
    cls = ray.remote(num_cpus=1, num_gpus=1 if lc.device == "cuda" else 0)(LearnerRank)
    actors = [
        cls.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
            **(options or {}),
        ).remote(i, n)
        for i in range(n)
    ]
    group = LearnerGroup(actors, pg)
    try:
        address, port = ray.get(actors[0].rendezvous.remote(), timeout=lc.dist_timeout_s)
        starts = [
            a.start.remote(address, port, lc.device, lc.dist_timeout_s, *args, **kwargs) for a in actors
        ]
        ray.get(starts, timeout=lc.dist_timeout_s)
    except BaseException:
        group.kill()
        raise
    log.info("learner on %d ranks (FSDP2, %s) met at %s:%d", n, "nccl" if lc.device == "cuda" else "gloo",
             address, port)  # fmt: skip
    return group


def learner_alive(learner, timeout_s: float) -> bool:
    """Whether the learner (every rank of a group) answers within `timeout_s`."""
    import ray

    actors = learner.actors if isinstance(learner, LearnerGroup) else [learner]
    try:
        ray.get([actor.policy_version.remote() for actor in actors], timeout=timeout_s)
        return True
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.GetTimeoutError):
        return False


def kill_learner(learner) -> None:
    """End a learner: one actor or a group of ranks."""
    import ray

    if isinstance(learner, LearnerGroup):
        learner.kill()
    else:
        ray.kill(learner)
