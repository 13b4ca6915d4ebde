"""The rollout workers seen from the driver: stream with them, or drive them; push weights to them;
bring a restarted worker up to date.

- `StreamingRollouts` (RL stages): every worker runs its own loop (`RolloutWorker.serve`) and the driver
  only feeds prompts and publishes weights; while it waits on anything it watches the workers' loops,
  and restarts the loop of a worker that died once Ray has restarted the worker.
- `drive_rollouts` (evaluation, rejection sampling): the driver calls each worker's `rollout` in turn
  while tasks are outstanding.

A worker that dies is restarted by Ray (its `max_restarts`); the driver waits until it answers, then
gives it the current reward addresses and weights; its first read takes back its own pending tasks,
which it redoes.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class StreamingRollouts:
    """The workers' own loops for one stage: `with StreamingRollouts(ctx, chunk) as rollouts:` starts
    them and stops them when the block ends; `rollouts.get(ref)` waits for a Ray result while keeping
    every loop alive."""

    def __init__(self, ctx, chunk: int, num_threads: int | None = None) -> None:
        self.ctx, self.chunk, self.threads = ctx, chunk, num_threads
        self.loops: dict = {}  # serve ref -> worker

    def __enter__(self) -> StreamingRollouts:
        for worker in self.ctx.runtime.workers:
            self.loops[worker.serve.remote(self.chunk, self.threads)] = worker
        return self

    def __exit__(self, *exc) -> None:
        import ray

        for worker in self.loops.values():
            try:
                worker.stop.remote()
            except Exception:  # a dead worker's loop is over anyway
                pass
        for ref in self.loops:
            try:
                ray.get(ref, timeout=self.ctx.cfg.rollout.read_block_s + 60)
            except Exception as e:  # the stage's work is decided; a worker lost now loses nothing
                log.warning("a rollout worker's loop ended with %s", type(e).__name__)
        self.loops = {}

    def get(self, ref):
        """`ray.get(ref)`, restarting the loop of any worker that dies meanwhile; the supervisor's
        verdict on the services is checked every second."""
        import ray

        while True:
            self.ctx.runtime.raise_if_failed()
            ready, _ = ray.wait([ref, *self.loops], num_returns=1, timeout=1.0)
            if ref in ready:
                return ray.get(ref)
            for done in ready:  # a worker's loop ended: it died (or raised, which propagates)
                self._restart_loop(done)

    def _restart_loop(self, ref) -> None:
        import ray

        worker = self.loops.pop(ref)
        try:
            ray.get(ref)
            log.warning("a rollout worker's loop returned unasked; restarting it")
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
            log.warning("rollout worker died (%s); Ray restarts it and it redoes its pending tasks",
                        str(e).splitlines()[0])  # fmt: skip
            resync_worker(self.ctx, worker)
        self.loops[worker.serve.remote(self.chunk, self.threads)] = worker


def drive_rollouts(ctx, prompts, timeout_s: float, chunk: int, progress=None) -> None:
    """Call every worker's `rollout` until the prompts stream is drained (tasks are deleted on ack)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while (left := prompts.outstanding()) > 0:
        ctx.runtime.raise_if_failed()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{left} prompt tasks still outstanding after {timeout_s:.0f}s of rollouts")
        refs = [w.rollout.remote(chunk) for w in ctx.runtime.workers]
        for worker, ref in zip(ctx.runtime.workers, refs):
            try:
                done = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                log.warning("rollout worker died (%s); Ray restarts it and it redoes its pending tasks", e)
                resync_worker(ctx, worker)
                continue
            if progress is not None:
                progress.update(done)


def resync_worker(ctx, worker) -> int:
    """A restarted worker re-ran __init__ with the initial weights and services: once it answers again
    (Ray restarts it within its max_restarts), give it the current ones; return its version."""
    import ray

    timeout = ctx.cfg.launcher.start_timeout_s
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.get(worker.ready.remote(), timeout=min(30.0, timeout))
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
            if time.monotonic() > deadline:  # e.g. out of restarts: then Ray says the actor is dead
                raise RuntimeError(
                    f"a rollout worker did not come back within {timeout:.0f}s of dying; last error: {e}"
                ) from e
            time.sleep(1.0)
    ray.get([worker.add_reward_service.remote(n, a) for n, a in ctx.runtime.reward_addresses.items()])
    return weight_sync_of(ctx).resend(worker, timeout)


def weight_sync_of(ctx):
    """The run's weight-transfer engine (`rollout.weight_sync`), made on first use."""
    from services.weight_sync import make_weight_sync

    if ctx.runtime.weight_sync is None:
        ctx.runtime.weight_sync = make_weight_sync(ctx.cfg.rollout)
    return ctx.runtime.weight_sync


def sync_weights(ctx, learner):
    """Send the learner's weights to every rollout worker (`rollout.weight_sync` picks the engine); return
    the sync's `SyncStats` (version, seconds, bytes). A worker that is not serving has loaded them when
    this returns; a serving one loads them before its next generate call.

    A worker that dies during the transfer (its half-loaded engine dies with it) is restarted by Ray
    and given the same weights (`resync_worker`); the version only moves forward."""
    import ray

    from services.weight_sync import SyncStats

    t0 = time.perf_counter()
    started = weight_sync_of(ctx).start(learner, ctx.runtime.workers)
    timeout = ctx.cfg.rollout.weight_sync_timeout_s
    versions = []
    for worker, ref in zip(ctx.runtime.workers, started.refs):
        try:
            versions.append(ray.get(ref, timeout=timeout))
        except ray.exceptions.GetTimeoutError as e:
            raise TimeoutError(f"weight sync to rollout workers took longer than {timeout:.0f}s") from e
        except ray.exceptions.RayActorError as e:
            log.warning(
                "rollout worker died during the weight transfer (%s); restarting and re-syncing it", e
            )
            versions.append(resync_worker(ctx, worker))
    ctx.policy_version = versions[0] if versions else started.policy_version
    return SyncStats(ctx.policy_version, time.perf_counter() - t0, started.num_bytes)
