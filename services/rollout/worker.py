"""The rollout worker: read PromptTasks, sample a group each, score it over gRPC, emit ScoredGroups.

One worker owns one sampling engine. The orchestrator runs it as a threaded Ray actor in one of two
modes:

- **streaming** (RL stages): `serve` runs the worker's own loop until `stop` (read a batch of tasks,
  generate, score, emit, ack, repeat). The driver only feeds prompts and publishes weights.
- **driven** (evaluation, rejection sampling, ...): the driver calls `rollout` until the stream drains.

Weights arrive in a mailbox (`update_weights` verifies and deposits the newest version, see
services/weight_sync/; it never touches the engine while a batch is being sampled) and the worker loads
them itself between two generate calls, under the engine lock, streaming them bucket by bucket: every
group is sampled by exactly one policy version, recorded on each completion. A task asks for a
`min_policy_version`; a worker that does not hold it yet waits for it in the mailbox
(`rollout.weight_sync_timeout_s`), so on-policy training stays exact.

A task is acknowledged only after its group is in the groups stream, so a worker that dies mid-task
leaves the task pending, and this one after a restart (its first read recovers its own pending tasks)
or another worker (XAUTOCLAIM) redoes it under the same id.

A group whose scoring failed (a reward service down, timed out or erroring) is never emitted: its task
is released for immediate redelivery and redone whole, and on its `redis.max_deliveries`-th failure it
is dead-lettered with the reason. Every dead-lettered task (also a poison task that crashed workers too
often) leaves a marker group carrying `dead_letter_reason` in its stage's groups stream, so the readers
waiting for that stage's groups account for it instead of waiting.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

from services.pb import rollout_pb2
from services.reward.combine import apply_scores, status_name, task_weights
from services.reward.scorer import SCORER_NAMES
from services.rollout.engine import SamplingSpec, make_engine
from services.transport.failpoints import failpoint
from services.transport.names import GROUP_READERS, group_key, groups_stream_for

log = logging.getLogger(__name__)


def scoring_failure(group: rollout_pb2.ScoredGroup) -> str | None:
    """Why the group could not be scored (the first non-OK reward component), or None if it was."""
    for c in group.completions:
        for r in c.rewards:
            if r.status != rollout_pb2.REWARD_STATUS_OK:
                return f"{r.name} {status_name(r.status)}: {r.detail}"
    return None


def _own_threads(n: int) -> None:
    """Give the calling thread `n` torch (OpenMP) threads. The thread count is per OS thread, and the
    threaded actor runs each call on a thread of its pool: vLLM's CPU attention checks that its
    metadata and its kernel see the same count, and fails a generate when they do not."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class RolloutWorker:
    def __init__(
        self,
        worker_id: str,
        model_dir: str,
        rollout_cfg,
        reward_cfg,
        redis_cfg,
        redis_url: str,
        reward_addresses: dict[str, str],
    ) -> None:
        import torch

        from services.learner.checkpoint import load_checkpoint_meta
        from services.reward.client import RewardClient
        from services.transport.redis_server import connect

        torch.set_num_threads(rollout_cfg.num_threads)
        self.worker_id = worker_id
        self.cfg = rollout_cfg
        self.reward_cfg = reward_cfg
        self.redis_cfg = redis_cfg
        self.engine = make_engine(rollout_cfg.engine, model_dir, rollout_cfg)
        self.policy_version = load_checkpoint_meta(model_dir)["policy_version"]  # 0 for a plain HF dir
        self.redis = connect(
            redis_url,
            password=redis_cfg.password,
            socket_timeout_s=redis_cfg.socket_timeout_s,
            reconnect_s=redis_cfg.reconnect_s,
        )
        self.prompts = self._queue(
            redis_cfg.prompts_stream, "rollout", rollout_pb2.PromptTask, self._emit_dead_letter
        )
        self._recovered = False  # the first read also takes this worker's own pending tasks back
        self.outputs: dict = {}  # groups stream name -> StreamQueue, created on first use
        self.clients = {name: RewardClient(addr, reward_cfg) for name, addr in reward_addresses.items()}
        self.pool = ThreadPoolExecutor(max_workers=len(SCORER_NAMES))  # one call per scorer in flight
        self._engine_lock = threading.Lock()  # one generate or weight load at a time
        self._mail = threading.Condition()  # guards _pending: the newest weights not loaded yet
        self._pending: tuple[int, object] | None = None  # (version, weight_sync.object_store.Incoming)
        self._stop = threading.Event()
        self._serving = False
        self._threads = rollout_cfg.num_threads  # torch threads of the calling thread (see _own_threads)

    def _queue(self, stream: str, group: str, message_cls, on_dead_letter=None):
        from services.transport.streams import StreamQueue

        q = StreamQueue.from_config(self.redis, self.redis_cfg, stream, group, message_cls, on_dead_letter)
        q.ensure_group()
        return q

    def ready(self) -> str:
        return self.worker_id

    def add_reward_service(self, name: str, address: str) -> None:
        """Score with service `name` at `address` from now on (replacing any earlier one)."""
        from services.reward.client import RewardClient

        old = self.clients.pop(name, None)
        self.clients[name] = RewardClient(address, self.reward_cfg)
        if old is not None:
            old.close()

    def update_weights(self, announcement: bytes, buckets: list) -> int:
        """Deposit a published policy version in the mailbox; returns its version (`object_store` weight
        sync). Every bucket (a Ray ref, or its bytes in process) is fetched and verified first, so a bad
        one fails this call naming the version and the bucket; the mailbox holds only the refs. A worker
        that is not serving loads the version at once; a serving one before its next generate call."""
        from services.weight_sync.object_store import Incoming

        incoming = Incoming(announcement, buckets, self.cfg.weight_sync_timeout_s)
        with self._mail:
            if self._pending is None or incoming.policy_version >= self._pending[0]:
                self._pending = (incoming.policy_version, incoming)
            self._mail.notify_all()
        if not self._serving:
            with self._engine_lock:
                _own_threads(self._threads)
                self._load_pending()
        return incoming.policy_version

    def _load_pending(self) -> None:
        """Load the mailbox's weights into the engine if they are newer (call under the engine lock): the
        buckets stream into the engine one at a time."""
        with self._mail:
            pending, self._pending = self._pending, None
        if pending is None or pending[0] <= self.policy_version:
            return
        version, incoming = pending
        if failpoint("update_weights_midway"):  # chaos testing (F7): die with half the tensors loaded
            self.engine.load_weights(islice(incoming.tensors(), incoming.num_tensors // 2))
            log.error("failpoint update_weights_midway: worker %s exits mid-transfer", self.worker_id)
            os._exit(1)
        self.engine.load_weights(incoming.tensors())
        self.policy_version = version

    def init_weight_transfer(self, init_info: dict) -> None:
        """Join the learner's NCCL weight-transfer group (`rollout.weight_sync=nccl`)."""
        with self._engine_lock:
            self.engine.init_weight_transfer(init_info)

    def receive_weights(self, update_info: dict) -> int:
        """Receive the learner's NCCL broadcast of `update_info["policy_version"]` straight into the engine,
        between two generate calls (`rollout.weight_sync=nccl`); returns the version held."""
        with self._engine_lock:
            _own_threads(self._threads)
            self.engine.receive_weights(update_info)
            self.policy_version = max(self.policy_version, update_info["policy_version"])
            with self._mail:
                self._mail.notify_all()
        return self.policy_version

    def _wait_for_version(self, version: int) -> None:
        """Load weights until this worker holds `version`, waiting for them in the mailbox."""
        deadline = time.monotonic() + self.cfg.weight_sync_timeout_s
        while True:
            self._load_pending()
            if self.policy_version >= version:
                return
            with self._mail:
                left = deadline - time.monotonic()
                if self._pending is None and left > 0:
                    self._mail.wait(min(left, 1.0))
                elif left <= 0:
                    raise RuntimeError(
                        f"worker {self.worker_id} holds policy v{self.policy_version} but a task needs "
                        f"v{version}, and none arrived within {self.cfg.weight_sync_timeout_s:.0f}s"
                    )

    def policy_version_held(self) -> int:
        return self.policy_version

    def serve(self, max_tasks: int, num_threads: int | None = None) -> int:
        """The streaming loop: process up to `max_tasks` tasks per generate call until `stop`, with
        `num_threads` torch threads (default `rollout.num_threads`); returns the number of groups
        emitted."""
        self._stop.clear()
        self._serving = True
        self._threads = num_threads or self.cfg.num_threads
        emitted = 0
        try:
            while not self._stop.is_set():
                emitted += self.rollout(max_tasks)
        finally:
            self._serving = False
            self._threads = self.cfg.num_threads
        return emitted

    def stop(self) -> None:
        """End `serve` after its current batch (its blocking read waits at most `read_block_s`)."""
        self._stop.set()

    def rollout(self, max_tasks: int, block_s: float | None = None) -> int:
        """Process up to `max_tasks` tasks (one batched generate); return how many groups were emitted."""
        deliveries = []
        if not self._recovered:
            deliveries = self.prompts.recover(self.worker_id, max_tasks)
            self._recovered = len(deliveries) < max_tasks
        if len(deliveries) < max_tasks:
            block = 0 if deliveries else block_s or self.cfg.read_block_s
            deliveries += self.prompts.read(self.worker_id, max_tasks - len(deliveries), block)
        if not deliveries:
            return 0
        with self._engine_lock:
            _own_threads(self._threads)
            try:
                self._wait_for_version(max(d.message.min_policy_version for d in deliveries))
            except RuntimeError as e:
                for delivery in deliveries:
                    self._settle_failure(delivery, str(e))
                return 0
            return self._process(deliveries)

    def _process(self, deliveries: list) -> int:
        """Sample, score and settle `deliveries`; a batch that fails is redone task by task, so one
        poison task (a prompt the engine rejects) is dead-lettered alone and never sinks the others."""
        try:
            groups = self.sample_and_score([d.message for d in deliveries])
        except Exception as e:
            if len(deliveries) > 1:
                log.warning(
                    "worker %s: a batch of %d tasks failed (%s); one by one",
                    self.worker_id,
                    len(deliveries),
                    e,
                )
                return sum(self._process([d]) for d in deliveries)
            self._settle_failure(deliveries[0], f"rollout failed: {type(e).__name__}: {e}")
            return 0
        emitted = 0
        for delivery, group in zip(deliveries, groups):
            failure = scoring_failure(group)
            if failure is None:
                self._queue_for(group.stage).add(group)
                self.prompts.ack([delivery.entry_id])
                emitted += 1
            else:
                self._settle_failure(delivery, f"scoring failed: {failure}")
        return emitted

    def _settle_failure(self, delivery, reason: str) -> None:
        """Release a failed task for a redo, or dead-letter it on its max_deliveries-th failure."""
        n, most = delivery.deliveries, self.redis_cfg.max_deliveries
        if n >= most:
            self.prompts.dead_letter(delivery, f"{reason} (failed on all {n} deliveries)")
            return
        log.warning(
            "worker %s: task %s: %s; released for delivery %d of %d",
            self.worker_id,
            group_key(delivery.message.id),
            reason,
            n + 1,
            most,
        )
        self.prompts.release([delivery.entry_id])

    def _emit_dead_letter(self, task: rollout_pb2.PromptTask, reason: str) -> None:
        """The marker group of a dead-lettered task: its id and reason, no completions."""
        self._queue_for(task.stage).add(self._group_for(task, dead_letter_reason=reason))

    def _group_for(self, task: rollout_pb2.PromptTask, **fields) -> rollout_pb2.ScoredGroup:
        """A group of `task` from this worker and its policy version: the task's identity copied."""
        return rollout_pb2.ScoredGroup(
            id=task.id,
            prompt=task.prompt,
            policy_version=self.policy_version,
            worker_id=self.worker_id,
            source=task.source,
            answer=task.answer,
            stage=task.stage,
            **fields,
        )

    def _queue_for(self, stage: str):
        stream = groups_stream_for(self.redis_cfg.groups_stream, stage)
        if stream not in self.outputs:
            self.outputs[stream] = self._queue(stream, GROUP_READERS, rollout_pb2.ScoredGroup)
        return self.outputs[stream]

    def sample_and_score(self, tasks: list[rollout_pb2.PromptTask]) -> list[rollout_pb2.ScoredGroup]:
        """Sample a group per task with the current weights and score every completion (under the engine
        lock; `rollout` has loaded every task's `min_policy_version` first)."""
        for task in tasks:
            if task.min_policy_version > self.policy_version:
                raise RuntimeError(
                    f"worker {self.worker_id} holds policy v{self.policy_version} but task "
                    f"{task.id.prompt_id} needs v{task.min_policy_version}: weights were not synced"
                )
        t0 = time.perf_counter()
        # One generate call per distinct sampling spec (tasks of one stage share theirs).
        by_spec: dict[SamplingSpec, list[int]] = {}
        for i, task in enumerate(tasks):
            spec = SamplingSpec(
                n=task.group_size or self.cfg.group_size,
                max_new_tokens=self.cfg.max_new_tokens,
                temperature=self._temperature(task),
                top_p=self.cfg.top_p,
                top_logprobs=task.top_logprobs,
            )
            by_spec.setdefault(spec, []).append(i)
        samples: list = [None] * len(tasks)
        for spec, idx in by_spec.items():
            for i, group in zip(
                idx, self.engine.generate([list(tasks[i].prompt_token_ids) for i in idx], spec)
            ):
                samples[i] = group
        generate_s = time.perf_counter() - t0
        return self._score_groups(tasks, samples, generate_s / len(tasks))

    def _temperature(self, task: rollout_pb2.PromptTask) -> float:
        return task.temperature if task.HasField("temperature") else self.cfg.temperature

    def _score_groups(self, tasks, samples, generate_s: float) -> list[rollout_pb2.ScoredGroup]:
        """Score every completion of every group: one call per reward service for the whole batch (all
        services at once), each completion sent to the services its task weighs."""
        from services.reward.scorer import ScoreInput

        t0 = time.perf_counter()
        weights = [task_weights(task, self.reward_cfg) for task in tasks]
        for task, w in zip(tasks, weights):
            missing = sorted(set(w) - set(self.clients))
            if missing:  # check_config prevents this for stages r1forge issues; a hand-made task can ask
                raise ValueError(
                    f"task {task.id.prompt_id!r} asks for reward scorers {missing} that no service runs"
                )
        items: dict[str, list] = {}
        owners: dict[str, list[tuple[int, int]]] = {}  # scorer -> (group, completion) of each item
        for g, (task, group, w) in enumerate(zip(tasks, samples, weights)):
            for i, c in enumerate(group):
                for name in w:
                    batch = items.setdefault(name, [])
                    item = (task.prompt, c.text, task.answer, task.language, task.metadata_json)
                    batch.append(ScoreInput(len(batch), *item))
                    owners.setdefault(name, []).append((g, i))
        futures = {name: self.pool.submit(self.clients[name].score, batch) for name, batch in items.items()}
        scores: list[list[dict]] = [[{} for _ in group] for group in samples]
        for name, future in futures.items():
            for (g, i), result in zip(owners[name], future.result(), strict=True):
                scores[g][i][name] = result
        score_s = (time.perf_counter() - t0) / len(tasks)
        out = []
        for task, group, w, group_scores in zip(tasks, samples, weights, scores):
            scored = self._group_for(
                task, prompt_token_ids=task.prompt_token_ids, generate_s=generate_s, score_s=score_s
            )
            for i, c in enumerate(group):
                comp = scored.completions.add(
                    sample_index=i,
                    text=c.text,
                    completion_token_ids=c.token_ids,
                    logprobs=c.logprobs,
                    policy_version=self.policy_version,
                    finish_reason=c.finish_reason,
                    top_logprobs=[
                        rollout_pb2.TopLogprobs(token_ids=list(top), logprobs=list(top.values()))
                        for top in c.top_logprobs
                    ],
                )
                apply_scores(comp, group_scores[i], w)
            out.append(scored)
        return out

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.pool.shutdown(wait=False)
        self.engine.close()
