"""How new policy weights travel from the learner to the rollout workers: one small interface, two engines.

`rollout.weight_sync` picks the engine (`make_weight_sync`, the one factory):

- `object_store` (default, any device): the learner packs `trainer.iter_weights()` into safetensors
  buckets of at most `rollout.weight_bucket_mb`, each stored once in the Ray object store, and announces
  them (version, per-bucket bytes and SHA-256). Every worker is handed the same object refs; it verifies
  every bucket, then loads them one at a time into its engine (`object_store.py`).
- `nccl` (GPUs): the learner broadcasts `iter_weights()` to every worker's vLLM engine through vLLM's
  native weight-transfer API, packed into buffers of `rollout.weight_bucket_mb` (`nccl.py`; untested on
  the CPU-only machines this project is developed on).

The driver (`orchestrator/rollouts.py`) sees only `WeightSync`: `start` sends the learner's current
weights to a list of workers, `resend` brings one restarted worker up to date. Each sync's seconds and
bytes go to the step's metrics (`SyncStats.metrics`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

WEIGHT_SYNCS = ("object_store", "nccl")


@dataclass(frozen=True)
class Started:
    """A sync under way: the version it carries, the bytes of one copy of the weights, and one Ray ref
    per worker that resolves to the version that worker holds (or has in its mailbox)."""

    policy_version: int
    num_bytes: int
    refs: list


@dataclass(frozen=True)
class SyncStats:
    """One finished sync: the version, its wall-clock seconds (learner packing + transfer + the workers'
    checks, and the loading of workers that were not sampling) and the bytes of one copy of the weights."""

    policy_version: int
    seconds: float
    num_bytes: int

    def metrics(self) -> dict[str, float]:
        return {"weight_sync_s": self.seconds, "weight_sync_bytes": self.num_bytes}


class WeightSync(ABC):
    """Driver side of a weight-transfer engine."""

    @abstractmethod
    def start(self, learner, workers: list) -> Started:
        """Send the learner actor's current weights to every worker actor in `workers`."""

    @abstractmethod
    def resend(self, worker, timeout_s: float) -> int:
        """Give a restarted worker the weights of the last `start` (if any); return its version."""


def make_weight_sync(rollout_cfg) -> WeightSync:
    """The engine `rollout.weight_sync` names, with the config's bucket size and timeout."""
    name = rollout_cfg.weight_sync
    bucket_bytes = int(rollout_cfg.weight_bucket_mb * 2**20)
    if name == "object_store":
        from services.weight_sync.object_store import ObjectStoreSync

        return ObjectStoreSync(bucket_bytes, rollout_cfg.weight_sync_timeout_s)
    if name == "nccl":
        from services.weight_sync.nccl import NcclSync

        return NcclSync(bucket_bytes, rollout_cfg.weight_sync_timeout_s)
    raise ValueError(
        f"rollout.weight_sync={name!r}: not a weight-transfer engine; choose one of {WEIGHT_SYNCS}"
    )
