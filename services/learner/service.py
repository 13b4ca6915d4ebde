"""The learner service: reads ScoredGroups from Redis, takes GRPO steps, publishes weights.

A plain class; the orchestrator runs it as a Ray actor (one per training stage, on the GPU when there
is one). Delivery is at-least-once and training exactly-once: a group's stream entry is acknowledged
only once its effect is durable, i.e. by the next checkpoint (`save`), which holds the trained group
ids and the stage's accounting. A learner that dies leaves every group since its last checkpoint
pending; the one restarted from that checkpoint (`resume=True`) takes them back (`settle_backlog`), so
nothing acknowledged is untrained and a redelivered group is a counted `duplicate`, never a second
update. SFT runs through the same trainer, on a dataset read from disk.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from services.learner.batch import DROP_REASONS, build_batch, select_groups
from services.learner.checkpoint import load_checkpoint_meta
from services.learner.distributed import SINGLE, RankInfo, broadcast, drain
from services.learner.sft import sft_batches
from services.learner.trainer import GRPOTrainer
from services.pb import rollout_pb2
from services.transport.names import group_key

log = logging.getLogger(__name__)


class LearnerService:
    def __init__(
        self,
        model_dir: str,
        learner_cfg,
        redis_cfg=None,
        redis_url: str | None = None,
        groups_stream: str | None = None,
        resume: bool = False,
        run_id: str | None = None,
        rank: RankInfo = SINGLE,
    ) -> None:
        self.cfg = learner_cfg
        self.run_id = run_id  # groups of another run in the stream are acked and counted, never trained
        self.rank = rank  # on N ranks, rank 0 alone reads the stream and broadcasts each step's batch
        self.trainer = GRPOTrainer(model_dir, learner_cfg, resume=resume, rank=rank)
        self.model_dir = model_dir
        self._nccl_sender = None  # the nccl weight sync's sending side, made on first use
        self.groups = None
        if redis_url is not None and rank.is_leader:
            from services.transport.redis_server import connect
            from services.transport.streams import StreamQueue

            client = connect(
                redis_url,
                password=redis_cfg.password,
                socket_timeout_s=redis_cfg.socket_timeout_s,
                reconnect_s=redis_cfg.reconnect_s,
            )
            # The learner is its stream's only reader and keeps entries pending until a checkpoint: nobody
            # may reclaim them for idling (a restarted learner takes its own back, `settle_backlog`).
            self.groups = StreamQueue(
                client,
                groups_stream,
                "readers",
                rollout_pb2.ScoredGroup,
                max_deliveries=redis_cfg.max_deliveries,
                claim_idle_s=1e9,
                dead_letter_stream=redis_cfg.dead_letter_stream,
            )
            self.groups.ensure_group()
        self._unacked: list[str] = []  # entries whose effect the next checkpoint makes durable
        self.version_floor = 0  # groups sampled by an older version are stale (see continue_version)
        self._sft_iter = None
        # The stage's accounting: the outcome of every group id received (trained or a drop reason),
        # extra copies of ids already settled, and each dead-lettered id's reason.
        self.outcomes: dict[str, str] = {}
        self.duplicate_copies = 0
        self.foreign = 0
        self.dead_letter_reasons: dict[str, str] = {}
        if resume:  # the stage's accounting up to the checkpoint
            books = load_checkpoint_meta(model_dir).get("accounting", {})
            self.outcomes = dict(books.get("outcomes", {}))
            self.duplicate_copies = books.get("duplicate_copies", 0)
            self.foreign = books.get("foreign", 0)
            self.dead_letter_reasons = dict(books.get("dead_letter_reasons", {}))
        self._is_moe = bool(getattr(self.trainer.model.config, "n_routed_experts", 0))

    def policy_version(self) -> int:
        return self.trainer.policy_version

    # -- SFT ----------------------------------------------------------------------------------------

    def load_sft_dataset(
        self, path: str, seed: int, lr: float | None = None, pack: bool = False, max_len: int | None = None
    ) -> int:
        """Tokenize a prompt/completion file (JSONL or parquet, read with `datasets`) for `sft_steps`;
        the loss covers the completion only; `pack` packs examples into rows of `max_len` tokens.
        Returns the number of examples."""
        from services.tasks.sft_data import load_sft_rows

        tok = self.trainer.tokenizer
        rows = load_sft_rows(path)
        examples = [(tok(r["prompt"])["input_ids"], tok(r["completion"])["input_ids"]) for r in rows]
        self._sft_iter = sft_batches(
            examples,
            self.cfg.sft_batch_size,
            seed,
            pad_id=tok.pad_token_id,
            eos_id=tok.eos_token_id,
            max_len=max_len,
            pack=pack,
        )
        self.trainer.set_lr(self.cfg.sft_lr if lr is None else lr)
        return len(examples)

    def load_distill_dataset(self, path: str, seed: int, lr: float) -> int:
        """Load a soft-target dataset (teacher completions with top-k log-probs) for `distill_steps`."""
        from services.learner.distill import distill_batches
        from services.tasks.soft_targets import distill_examples, read_soft_targets

        rows = read_soft_targets(path)
        if not rows:
            raise ValueError(f"{path}: no soft targets to distill from")
        vocab = self.trainer.model.config.get_text_config().vocab_size
        top = max(max(max(ids) for ids in row["topk_ids"]) for row in rows)
        if top >= vocab:
            raise ValueError(
                f"{path}: teacher token id {top} is outside the student's vocabulary ({vocab}); teacher and "
                "student must share a tokenizer"
            )
        tok = self.trainer.tokenizer
        self._distill_iter = distill_batches(
            distill_examples(rows), self.cfg.sft_batch_size, seed, pad_id=tok.pad_token_id, k=rows[0]["k"]
        )
        self.trainer.set_lr(lr)
        return len(rows)

    def distill_steps(self, num_steps: int, beta: float) -> list[dict]:
        """Take `num_steps` distillation steps on the loaded soft targets; one metrics dict per step."""
        if getattr(self, "_distill_iter", None) is None:
            raise RuntimeError("distill_steps called before load_distill_dataset")
        return [self.trainer.distill_step(next(self._distill_iter), beta) for _ in range(num_steps)]

    def sft_steps(self, num_steps: int) -> list[dict]:
        """Take `num_steps` SFT optimizer steps on the loaded dataset; one metrics dict per step."""
        if self._sft_iter is None:
            raise RuntimeError("sft_steps called before load_sft_dataset")
        return [self.trainer.sft_step(next(self._sft_iter)) for _ in range(num_steps)]

    # -- GRPO ---------------------------------------------------------------------------------------

    def train_step(self, expected_groups: int, timeout_s: float) -> dict:
        """Collect `expected_groups` groups from the stream, take one GRPO step on the admitted ones.

        Dropped groups (duplicate, stale, failed, zero variance, malformed) are counted and acked. If
        none is admitted, no step is taken and the policy version stays. Raises TimeoutError naming the
        shortfall when the groups do not arrive in time. On N ranks the other ranks receive rank 0's
        batch and take the same step (their return value is not used).
        """
        if not self.rank.is_leader:
            batch = broadcast(None, self.rank)
            return {} if batch is None else self._train_on(batch)
        t0 = time.perf_counter()
        deliveries = []
        while len(deliveries) < expected_groups:
            remaining = t0 + timeout_s - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(
                    f"learner waited {timeout_s:.0f}s for {expected_groups} groups on {self.groups.stream!r} "
                    f"and got {len(deliveries)}: are the rollout workers and reward services alive?"
                )
            got = self.groups.read("learner", expected_groups - len(deliveries), min(1.0, remaining))
            deliveries += self._drop_foreign(got)
        wait_s = time.perf_counter() - t0
        groups = [d.message for d in deliveries]
        selection = select_groups(
            groups,
            self.trainer.trained_group_ids,
            self.trainer.policy_version,
            self.cfg.max_staleness,
            self.version_floor,
        )
        metrics: dict = {f"dropped_{r}": selection.dropped[r] for r in DROP_REASONS}
        metrics.update(_rollout_metrics(groups))
        metrics.update(staleness_histogram(groups, self.trainer.policy_version))
        batch = None
        if selection.groups:
            batch = build_batch(selection.groups, self.trainer.tokenizer.pad_token_id, self.cfg.adv_eps)
        batch = broadcast(batch, self.rank)
        if batch is not None:
            metrics.update(self._train_on(batch))
        self._account(groups, selection)
        self._unacked += [d.entry_id for d in deliveries]
        metrics.update(
            groups_trained=len(selection.groups),
            policy_version=self.trainer.policy_version,
            wait_s=wait_s,
            step_s=time.perf_counter() - t0,
        )
        return metrics

    def _train_on(self, batch) -> dict:
        metrics = self._expert_load(batch) if self._is_moe else {}
        metrics.update(self.trainer.step(batch))
        return metrics

    def _drop_foreign(self, deliveries: list) -> list:
        """Ack and count groups of another run (a poison message): they never take a slot of this step."""
        if self.run_id is None:
            return deliveries
        foreign = [d for d in deliveries if d.message.id.run_id != self.run_id]
        if foreign:
            log.warning(
                "dropped %d groups of another run (e.g. run_id %r)",
                len(foreign),
                foreign[0].message.id.run_id,
            )
            self.groups.ack([d.entry_id for d in foreign])
            self.foreign += len(foreign)
        return [d for d in deliveries if d.message.id.run_id == self.run_id]

    def _account(self, groups: list[rollout_pb2.ScoredGroup], selection) -> None:
        for g in selection.groups:
            self.outcomes[group_key(g.id)] = "trained"
        for key, reason in selection.dropped_keys:
            log.debug("dropped group %s: %s", key, reason)
            if reason == "duplicate":
                self.duplicate_copies += 1
            else:
                self.outcomes[key] = reason
        for g in groups:
            if g.dead_letter_reason and self.outcomes.get(group_key(g.id)) == "dead_lettered":
                self.dead_letter_reasons[group_key(g.id)] = g.dead_letter_reason

    def accounting(self) -> dict:
        """What became of every group id this learner received: {id: outcome}, duplicate copies, and
        the reason of each dead-lettered id."""
        return {
            "outcomes": dict(self.outcomes),
            "duplicate_copies": self.duplicate_copies,
            "foreign": self.foreign,
            "dead_letter_reasons": dict(self.dead_letter_reasons),
        }

    def _expert_load(self, batch) -> dict:
        """MoE routing of this step's sequences (before the update): tokens per expert, balance per layer."""
        from services.learner.moe_metrics import expert_load

        n = self.cfg.micro_batch_size  # a micro-batch's worth of rows in batch order: a fair sample
        mask = batch.attention_mask[:n]
        width = int(mask.sum(dim=1).max())
        load = expert_load(self.trainer.model, batch.input_ids[:n, :width], mask[:, :width])
        out = {}
        for layer, counts, coef, maxvio in zip(
            load["layers"], load["tokens_per_expert"], load["balance_coef"], load["max_violation"]
        ):
            out[f"moe_balance_coef_l{layer}"] = coef
            out[f"moe_max_violation_l{layer}"] = maxvio
            out.update({f"moe_tokens_l{layer}_e{e}": int(c) for e, c in enumerate(counts)})
        out["moe_balance_coef"] = sum(load["balance_coef"]) / len(load["balance_coef"])
        return out

    # -- weights and checkpoints ---------------------------------------------------------------------

    def publish(self, bucket_bytes: int):
        """The current weights for the `object_store` weight sync (a Ray streaming generator): safetensors
        buckets of at most `bucket_bytes` from `trainer.iter_weights()`, one at a time, then the
        WeightsAnnouncement bytes (services/weight_sync/object_store.py)."""
        from services.weight_sync.object_store import publish_buckets

        yield from publish_buckets(self.trainer.iter_weights(), self.trainer.policy_version, bucket_bytes)

    # `nccl` weight sync (services/weight_sync/nccl.py; untested on CPU-only machines): this is rank 0.

    def _nccl(self):
        if self._nccl_sender is None:
            from services.models.checkpoint_layout import CheckpointLayout
            from services.weight_sync.nccl import NcclSender

            self._nccl_sender = NcclSender(CheckpointLayout(self.model_dir))
        return self._nccl_sender

    def weight_transfer_endpoint(self) -> tuple[str, int] | None:
        return self._nccl().endpoint() if self.rank.is_leader else None

    def init_weight_transfer(self, address: str, port: int, world_size: int, bucket_bytes: int) -> None:
        if self.rank.is_leader:  # on N learner ranks, rank 0 alone sends; the others only help gather
            self._nccl().init_group(address, port, world_size, bucket_bytes)

    def weights_metadata(self) -> dict:
        if not self.rank.is_leader:
            return drain(self.trainer.iter_weights())
        return self._nccl().metadata(self.trainer.iter_weights(), self.trainer.policy_version)

    def send_weights(self) -> None:
        if not self.rank.is_leader:
            drain(self.trainer.iter_weights())
            return
        self._nccl().send(self.trainer.iter_weights())

    def save(self, directory: str, extra_meta: dict | None = None) -> str:
        """Write a checkpoint (with the stage's accounting when training on groups), then acknowledge
        every group whose effect it holds."""
        meta = dict(extra_meta or {})
        if self.groups is not None:
            meta["accounting"] = self.accounting()
        path = str(self.trainer.save(Path(directory), meta))
        if self.groups is not None and self._unacked:
            self.groups.ack(self._unacked)
            self._unacked = []
        return path

    def continue_version(self, version: int) -> int:
        """Number the next published weights `version` at least (a learner restarted from an older
        checkpoint must not publish a version the rollout workers have seen); returns the version."""
        self.trainer.policy_version = max(self.trainer.policy_version, version)
        # Groups sampled before the restart come from weights this learner never had: stale whatever
        # max_staleness says (the workers keep streaming the old tasks they hold).
        self.version_floor = self.trainer.policy_version
        return self.trainer.policy_version

    def settle_backlog(self) -> dict[str, int]:
        """Take back every group waiting in the stream, this learner's earlier life's pending ones too,
        and settle them by the admission rules (after a restart they are stale, or duplicates); their
        outcomes join the accounting and their entries are acknowledged by the next checkpoint."""
        if self.groups is None:  # not rank 0 of N: the stream is rank 0's
            return {}
        deliveries = self.groups.recover("learner")
        while got := self.groups.read("learner", 64, 0):
            deliveries += got
        deliveries = self._drop_foreign(deliveries)
        groups = [d.message for d in deliveries]
        selection = select_groups(
            groups, self.trainer.trained_group_ids, self.trainer.policy_version, self.cfg.max_staleness
        )
        if selection.groups:  # sampled by the current version (e.g. right after a resync): still trainable
            for g in selection.groups:  # not trained here: count them stale rather than hold them back
                selection.dropped["stale"] += 1
                selection.dropped_keys.append((group_key(g.id), "stale"))
            selection.groups = []
        self._account(groups, selection)
        self._unacked += [d.entry_id for d in deliveries]
        return {r: n for r, n in selection.dropped.items() if n}


def staleness_histogram(groups: list[rollout_pb2.ScoredGroup], version: int) -> dict[str, int]:
    """How many versions behind `version` each sampled group's policy was: {"staleness_<lag>": groups}
    (0 on-policy; up to max_staleness when rollout runs ahead), plus the largest as `policy_lag_max`."""
    lags = [version - g.policy_version for g in groups if not g.dead_letter_reason]
    out = {f"staleness_{lag}": lags.count(lag) for lag in sorted(set(lags))}
    if lags:
        out["policy_lag_max"] = max(lags)
    return out


def _rollout_metrics(groups: list[rollout_pb2.ScoredGroup]) -> dict:
    """Reward components, language mixing and response length over every completion received this step;
    with more than one prompt source (RL stage 2), the same per source as `<source>/<metric>`."""
    out = _completion_metrics(groups)
    if out:
        out["generate_s"] = sum(g.generate_s for g in groups)
        out["score_s"] = sum(g.score_s for g in groups)
        # Rollout workers whose groups this step trained on (they share one consumer group).
        out["rollout_workers"] = len({g.worker_id for g in groups if g.completions})
    sources = sorted({g.source for g in groups})
    if len(sources) > 1:
        for source in sources:
            per = _completion_metrics([g for g in groups if g.source == source])
            out.update({f"{source}/{k}": v for k, v in per.items()})
    return out


def _completion_metrics(groups: list[rollout_pb2.ScoredGroup]) -> dict:
    comps = [c for g in groups for c in g.completions]
    if not comps:
        return {}
    out = {
        "reward": sum(c.total_reward for c in comps) / len(comps),
        "response_len": sum(len(c.completion_token_ids) for c in comps) / len(comps),
        "truncated_frac": sum(c.finish_reason == "length" for c in comps) / len(comps),
    }
    for name in sorted({r.name for c in comps for r in c.rewards}):
        ok = rollout_pb2.REWARD_STATUS_OK
        vals = [r.value for c in comps for r in c.rewards if r.name == name and r.status == ok]
        if vals:
            out[f"reward_{name}"] = sum(vals) / len(vals)
            if name == "language":  # share of completions whose chain of thought mixes languages
                out["language_mixing_rate"] = sum(v < 1.0 for v in vals) / len(vals)
    return out
