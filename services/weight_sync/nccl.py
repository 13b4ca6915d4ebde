"""The `nccl` weight-transfer engine: the learner broadcasts its weights to every vLLM worker on GPUs.

UNTESTED: written against vLLM 0.32's native weight-transfer API (`vllm.distributed.weight_transfer`)
as installed, but it cannot run on the CPU-only machines this project is developed on (NCCL needs
CUDA devices), so no test exercises it; `check_config` refuses `rollout.weight_sync=nccl` without GPUs.

How it maps onto vLLM's API:

- Rendezvous: the learner is NCCL rank 0 (`nccl_common.trainer_init`); rollout worker i joins as rank
  1 + i through `LLM.init_weight_transfer_engine({"init_info": ...})` (its engine was built with
  `weight_transfer_config={"backend": "nccl"}`), all at once, one group of 1 + workers ranks. vLLM's own
  `NCCLTrainerWeightTransferEngine` gives every engine the same `rank_offset` (it drives one vLLM
  deployment); r1forge's workers are independent engines, so the driver hands out the offsets itself.
- Each sync: the driver asks the learner for the weights' metadata (names, dtypes, shapes in checkpoint
  layout, cached), then at once tells every worker to receive (`start_weight_update`, `update_weights`
  with that metadata, `finish_weight_update`, under the worker's engine lock) and the learner to send:
  `packed_nccl_broadcast_producer` over `trainer.iter_weights()`, packed into buffers of
  `rollout.weight_bucket_mb` (two in flight). vLLM's layerwise reload re-processes every layer.
- `iter_weights` yields CPU tensors (the one way weights leave the trainer); each is copied to the
  learner's GPU before the broadcast.
- A restarted worker cannot join a live NCCL group: `resend` drops the group, and the next transfer
  forms a new one with every current worker and sends the weights to all of them.
- A worker lost during a broadcast stalls the collective: the sync then fails with the timeout error.
"""

from __future__ import annotations

from services.weight_sync import Started, WeightSync

NUM_BUFFERS = 2  # packed buffers in flight on each side


class NcclSender:
    """Learner side: NCCL rank 0 of the weight-transfer group."""

    def __init__(self, layout) -> None:
        self.layout = layout  # runtime -> checkpoint layout (vLLM loads checkpoint names only)
        self.group = None
        self.bucket_bytes = 0
        self._metadata: dict | None = None

    @staticmethod
    def endpoint() -> tuple[str, int]:
        """This node's address and a free port for the rendezvous (as the learner's rank group's)."""
        from services.learner.distributed import free_address

        return free_address()

    def init_group(self, master_address: str, master_port: int, world_size: int, bucket_bytes: int) -> None:
        from vllm.distributed.weight_transfer.nccl_common import trainer_init

        self.close()
        self.bucket_bytes = bucket_bytes
        self.group = trainer_init(
            {"master_address": master_address, "master_port": master_port, "world_size": world_size}
        )

    def _checkpoint_named(self, named_tensors):
        for name, tensor in named_tensors:
            yield from self.layout({name: tensor}).items()

    def metadata(self, named_tensors, policy_version: int) -> dict:
        """What the workers must know before the broadcast (the shapes never change, so computed once)."""
        if self._metadata is None:
            names, dtypes, shapes, nbytes = [], [], [], 0
            for name, t in self._checkpoint_named(named_tensors):
                names.append(name)
                dtypes.append(str(t.dtype).removeprefix("torch."))
                shapes.append(list(t.shape))
                nbytes += t.numel() * t.element_size()
            self._metadata = {"names": names, "dtype_names": dtypes, "shapes": shapes, "num_bytes": nbytes}
        return {**self._metadata, "policy_version": policy_version}

    def send(self, named_tensors) -> None:
        import torch
        from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer

        if self.group is None:
            raise RuntimeError("NCCL weight transfer: send before the group was formed (init_group)")
        packed_nccl_broadcast_producer(
            iterator=((n, t.to("cuda", non_blocking=True)) for n, t in self._checkpoint_named(named_tensors)),
            group=self.group,
            src=0,
            post_iter_func=lambda item: item[1],
            buffer_size_bytes=self.bucket_bytes,
            num_buffers=NUM_BUFFERS,
        )
        torch.cuda.synchronize()

    def close(self) -> None:
        if self.group is not None:
            self.group.destroy()
            self.group = None


def worker_init_info(address: str, port: int, world_size: int, rank: int, bucket_bytes: int) -> dict:
    """vLLM's `NCCLWeightTransferInitInfo` fields for the worker at NCCL `rank` (1, 2, ...)."""
    return {
        "master_address": address,
        "master_port": port,
        "rank_offset": rank,
        "world_size": world_size,
        "packed": True,
        "packed_buffer_size_bytes": bucket_bytes,
        "packed_num_buffers": NUM_BUFFERS,
    }


class NcclSync(WeightSync):
    """Driver side: form the group when the learner or the workers change, then broadcast each version."""

    def __init__(self, bucket_bytes: int, timeout_s: float) -> None:
        self.bucket_bytes, self.timeout_s = bucket_bytes, timeout_s
        self._members: tuple | None = None  # (learner, workers) of the live group
        self._last: tuple | None = None  # (learner, workers) of the last start

    def _form_group(self, learner, workers: list) -> None:
        import ray

        key = (learner._actor_id, tuple(w._actor_id for w in workers))
        if self._members == key:
            return
        address, port = ray.get(learner.weight_transfer_endpoint.remote(), timeout=self.timeout_s)
        world = 1 + len(workers)
        refs = [learner.init_weight_transfer.remote(address, port, world, self.bucket_bytes)]
        refs += [
            w.init_weight_transfer.remote(worker_init_info(address, port, world, 1 + i, self.bucket_bytes))
            for i, w in enumerate(workers)
        ]  # every rank joins at once: the rendezvous waits for all
        try:
            ray.get(refs, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError as e:
            raise TimeoutError(f"the NCCL weight-transfer group did not form in {self.timeout_s:.0f}s") from e
        self._members = key

    def start(self, learner, workers: list) -> Started:
        import ray

        self._form_group(learner, workers)
        self._last = (learner, workers)
        meta = ray.get(learner.weights_metadata.remote(), timeout=self.timeout_s)
        refs = [w.receive_weights.remote(meta) for w in workers]
        try:
            ray.get(learner.send_weights.remote(), timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError as e:
            raise TimeoutError(
                f"the NCCL broadcast of weights v{meta['policy_version']} did not finish within "
                f"{self.timeout_s:.0f}s: a worker is not receiving"
            ) from e
        return Started(meta["policy_version"], meta["num_bytes"], refs)

    def resend(self, worker, timeout_s: float) -> int:
        import ray

        self._members = None  # the restarted worker is not in the group: form it anew
        if self._last is None:
            return ray.get(worker.policy_version_held.remote(), timeout=timeout_s)
        learner, workers = self._last
        started = self.start(learner, workers)
        return ray.get(started.refs[workers.index(worker)], timeout=timeout_s)
