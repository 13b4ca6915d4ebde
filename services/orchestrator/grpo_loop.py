"""The GRPO loop of an RL stage, with the learner's restarts and the stage's books.

prompts -> rollout workers -> reward services -> learner, weights back to the workers every step.

The rollout workers stream (`rollouts.StreamingRollouts`): each runs its own loop, and the loop here
only issues prompts, with backpressure, and publishes weights. The prompts of step t are issued when
the learner starts step t - max_staleness, tagged with the version it holds then, so at most
(max_staleness + 1) steps of prompts are in flight and no group is sampled more than max_staleness
versions behind the learner that trains on it (one that is, after a worker crash, is dropped as
stale and counted). With max_staleness=0 the prompts of a step are issued only once its weights are
in every worker's mailbox: on-policy stays exact. The learner logs the step's staleness histogram
(`staleness_<lag>`: groups sampled `lag` versions behind).
Every `learner.checkpoint_every` steps the learner saves an in-stage checkpoint
(`checkpoints/<stage>-stepNNNNN`) holding, besides weights and optimizer, everything the loop needs to
continue from it: the step, the issued ids, the feeders' positions, the metrics rows so far and the
learner's accounting. The learner acknowledges groups only at checkpoints.

When the learner actor dies, the loop starts a new one from the latest in-stage checkpoint (or the
stage's start), up to `supervisor.max_restarts` times: the new learner numbers its weights after the
last version the workers saw (versions only move forward), settles every group left in the stream
(sampled by weights it no longer has: stale), the metrics rows of the lost steps are dropped, and the
stage continues from the checkpoint's step. `r1forge resume=<run>` continues a killed run the same way.
"""

from __future__ import annotations

import logging
import time

from tqdm.auto import tqdm

from services.orchestrator.learner_group import LearnerGroup, kill_learner, learner_alive
from services.orchestrator.learner_session import start_learner
from services.orchestrator.resume import latest_stage_checkpoint, truncate_metrics
from services.orchestrator.rollouts import StreamingRollouts, sync_weights
from services.pb import rollout_pb2
from services.transport.names import group_key

log = logging.getLogger(__name__)


class LearnerDied(RuntimeError):
    pass


class GRPOLoop:
    def __init__(self, ctx, stage: str, feeders: list, counts: list[int]) -> None:
        self.ctx, self.stage, self.feeders, self.counts = ctx, stage, feeders, counts
        lc = ctx.cfg.learner
        self.n, self.steps, self.ahead = lc.prompts_per_step, lc.rl_steps, lc.max_staleness
        self.timeout = ctx.cfg.launcher.start_timeout_s + 60 * self.n
        self.prompts = ctx.queue(ctx.cfg.redis.prompts_stream, "rollout", rollout_pb2.PromptTask)
        self.issued: set[str] = set()
        self.start_dir = ctx.policy_dir  # the stage's input: a restart without a checkpoint starts here
        self.start_rows = _rows(ctx.metrics.path)  # metrics rows before the stage's first step
        self.step = 0  # steps done
        self.issued_steps = 0  # steps whose prompts were issued
        self.restarts = 0
        self.learner = None
        self.rollouts: StreamingRollouts | None = None

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, step_line) -> tuple[str, dict]:
        """Take the stage's steps; return (final checkpoint, the learner's accounting)."""
        import ray

        resumed = latest_stage_checkpoint(self.ctx.run_dir, self.stage) if self.ctx.cfg.resume else None
        if resumed is not None:
            path, meta = resumed
            log.info("%s continues from its in-stage checkpoint %s (step %d)", self.stage, path,
                     meta["stage_step"])  # fmt: skip
            self._start_from(resumed)
        else:
            self.learner = start_learner(self.ctx, self.stage)
        bar = tqdm(total=self.steps, initial=self.step, desc="GRPO" if self.stage == "rl" else self.stage,
                   unit="step", dynamic_ncols=True)  # fmt: skip
        workers = max(1, len(self.ctx.runtime.workers))
        try:
            rc = self.ctx.cfg.rollout
            threads = rc.num_threads_async if self.ahead else rc.num_threads  # sampling beside training?
            with StreamingRollouts(self.ctx, -(-self.n // workers), threads) as self.rollouts:
                t_prev = time.perf_counter()  # a step's time runs from the previous step's end
                while True:
                    try:  # a learner that dies anywhere in here is restarted from its latest checkpoint
                        if self.step == self.steps:
                            ckpt = self._checkpoint(self.stage)
                            break
                        m = self._step()
                        self.step += 1
                        m["groups_per_s"] = self.n / (time.perf_counter() - t_prev)
                        t_prev = time.perf_counter()
                        self.ctx.metrics.log(self.stage, self.step, m)
                        bar.update(1)
                        tqdm.write(
                            step_line(self.stage, self.step, self.steps, m, self.ctx.task.accuracy_scorer)
                        )
                        if self.step % self.ctx.cfg.learner.checkpoint_every == 0 and self.step < self.steps:
                            self._checkpoint(f"{self.stage}-step{self.step:05d}")
                    except LearnerDied as e:
                        self._restart(e)
                        bar.n = self.step
                        bar.refresh()
                        t_prev = time.perf_counter()
                books = ray.get(self.learner.accounting.remote())
        finally:
            bar.close()
            if self.learner is not None:
                kill_learner(self.learner)
        return ckpt, books

    def _step(self) -> dict:
        """One GRPO step: keep the prompts of the next max_staleness + 1 steps issued, train on the
        groups the workers stream, hand the new weights to the workers; the learner's metrics."""
        while self.issued_steps < min(self.steps, self.step + 1 + self.ahead):
            self._issue()
            self.issued_steps += 1
        m = self._call(lambda: self.learner.train_step.remote(self.n, self.timeout))
        m.update(self._call_sync().metrics())  # weight_sync_s, weight_sync_bytes
        return m

    def _issue(self) -> None:
        """Issue one step's prompts in one transaction, so a waiting worker samples them in one call."""
        tasks = [
            task
            for (feeder, _), count in zip(self.feeders, self.counts)
            for task in feeder.next_tasks(count, self.ctx.cfg.rollout.group_size, self.ctx.policy_version)
        ]
        self.prompts.add_many(tasks)
        self.issued.update(group_key(task.id) for task in tasks)

    def _checkpoint(self, label: str) -> str:
        meta = {
            "stage": self.stage,
            "stage_step": self.step,
            "issued": sorted(self.issued),
            "feeders": [f.state() for f, _ in self.feeders],
            "metrics_rows": _rows(self.ctx.metrics.path),
        }
        # The step is done but not durable if the learner dies now: redo from before.
        path = str(self.ctx.run_dir / "checkpoints" / label)
        return self._call(lambda: self.learner.save.remote(path, meta))

    # -- learner failures ----------------------------------------------------------------------------

    def _call(self, submit):
        import ray

        try:
            ref = submit()
            return self.rollouts.get(ref) if self.rollouts is not None else ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise LearnerDied(str(e)) from e
        except ray.exceptions.RayTaskError as e:
            # On N ranks a dead rank shows as the others' failed collective: restart the whole learner.
            if isinstance(self.learner, LearnerGroup) and not self._learner_alive():
                raise LearnerDied(str(e)) from e
            raise

    def _call_sync(self):
        import ray

        try:
            return sync_weights(self.ctx, self.learner)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
            if self._learner_alive():
                raise  # a rollout worker failed the sync: not the learner's fault
            raise LearnerDied(str(e)) from e  # the learner, or on N ranks one of them, died

    def _learner_alive(self) -> bool:
        return learner_alive(self.learner, timeout_s=30)

    def _restart(self, error: LearnerDied) -> None:
        self.restarts += 1
        budget = self.ctx.cfg.supervisor.max_restarts
        if self.restarts > budget:
            raise RuntimeError(
                f"the {self.stage} learner died {self.restarts} times (supervisor.max_restarts={budget}); "
                f"last error: {error}"
            ) from error
        try:
            kill_learner(self.learner)
        except Exception:  # already gone
            pass
        found = latest_stage_checkpoint(self.ctx.run_dir, self.stage)
        log.warning("the %s learner died (%s); restarting it from %s (restart %d of %d)", self.stage,
                    str(error).splitlines()[0], found[0] if found else "the stage's start", self.restarts,
                    budget)  # fmt: skip
        self._start_from(found, keep_issued=True)

    def _start_from(self, found, keep_issued: bool = False) -> None:
        """A new learner from an in-stage checkpoint (or the stage's start), in step with the workers."""
        import ray

        if found is None:
            self.learner, self.step = start_learner(self.ctx, self.stage, self.start_dir), 0
            rows = self.start_rows
        else:
            path, meta = found
            self.learner = start_learner(self.ctx, self.stage, str(path), resume=True)
            self.step, rows = meta["stage_step"], meta["metrics_rows"]
            if not keep_issued:  # resume=: the killed run's issued ids and feeder positions
                self.issued = set(meta["issued"])
                for (feeder, _), state in zip(self.feeders, meta["feeders"]):
                    feeder.restore(state)
        truncate_metrics(self.ctx.metrics.path, rows)  # the lost steps are redone and logged again
        self.issued_steps = self.step  # their prompts are issued again (the old ones' groups are stale)
        ray.get(self.learner.continue_version.remote(self.ctx.policy_version + 1))
        settled = ray.get(self.learner.settle_backlog.remote())
        if settled:
            log.info("groups left from before the restart, settled: %s", settled)
        sync_weights(self.ctx, self.learner)


def _rows(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
