"""The learner on N ranks: a torch.distributed group, FSDP2 sharding, and the collectives a step needs.

`learner.num_ranks=N` runs N learner processes (Ray actors, see `services.orchestrator.learner_group`) that
form one process group: gloo on CPU, NCCL on GPU. Every rank holds the same batch; the policy is sharded
with FSDP2 (`fully_shard` on each transformer block, then on the root for the embeddings, final norm and
LM head), so each rank keeps 1/N of the weights, gradients and AdamW moments and gathers a block's full
weights only while it computes with them.

The maths is the single-rank step's, rank for rank:
- micro-batches are dealt round-robin (`rank_share`); a rank with fewer runs its last one again with a
  zero loss weight, so every rank issues the same collectives;
- FSDP averages gradients over ranks, while the GRPO/SFT losses are already normalised by the whole
  batch's token (or sequence) count, so the gradients must be *summed*: each rank's backward is scaled by
  N (`rank_share`'s weights; gloo has no pre-multiplied sum for FSDP's divide factor);
- the metrics' per-micro-batch sums are all-reduced (`all_reduce_sums`).
So 2 ranks give the same loss and the same updated weights as 1 rank on the same batch, up to float
summation order (tests/integration/test_fsdp_learner.py checks 1e-5).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RankInfo:
    """Where this learner process sits in the group."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_leader(self) -> bool:
        """Rank 0 reads the groups stream, publishes weights and writes the consolidated export."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1


SINGLE = RankInfo()


def free_address() -> tuple[str, int]:
    """This node's IP and a free TCP port: the rendezvous (MASTER_ADDR/PORT) rank 0 offers the others."""
    import ray

    ip = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return ip, s.getsockname()[1]


def init_group(info: RankInfo, address: str, port: int, device: str, timeout_s: float) -> None:
    """Join the learner's process group (gloo on CPU, NCCL on CUDA) over TCP rendezvous at address:port."""
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(torch.cuda.current_device())
    dist.init_process_group(
        backend,
        init_method=f"tcp://{address}:{port}",
        rank=info.rank,
        world_size=info.world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    log.info("learner rank %d of %d joined the %s group at %s:%d", info.rank, info.world_size, backend,
             address, port)  # fmt: skip


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder blocks of an HF causal LM (Qwen, Llama, DeepSeek-V3: `model.layers`; under a peft
    wrapper `base_model.model.model.layers`); a ValueError naming the model when there are none."""
    lists = [(name, m) for name, m in model.named_modules() if name.endswith("layers")]
    lists = [(name, m) for name, m in lists if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(
            f"learner.num_ranks > 1 shards each transformer block, but {type(model).__name__} has no "
            "`layers` list of decoder blocks"
        )
    return list(min(lists, key=lambda item: item[0].count("."))[1])


def shard_policy(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """FSDP2 over a 1-D mesh of every rank: `fully_shard` on each transformer block, then on the root.
    Parameters become DTensors sharded on dim 0; names stay the HF names."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device, (dist.get_world_size(),))
    for block in transformer_blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def rank_share(items: Iterable[T], info: RankInfo) -> list[tuple[T, float]]:
    """This rank's micro-batches, dealt round-robin, each with its weight: 1, or 0 for the repeat a rank
    with fewer runs so that all ranks take the same number of forward/backward passes. A loss's backward
    is scaled by `weight * info.world_size` (FSDP then averages: the sum over ranks)."""
    items = list(items)
    if not items:
        raise ValueError("no micro-batches to share between learner ranks")
    per_rank = -(-len(items) // info.world_size)
    mine = [(item, 1.0) for item in items[info.rank :: info.world_size]]
    while len(mine) < per_rank:
        mine.append((items[-1] if not mine else mine[-1][0], 0.0))
    return mine


def all_reduce_sums(sums: dict[str, float], info: RankInfo, maxima: Iterable[str] = ()) -> dict[str, float]:
    """Sum each value over ranks (or take the max for the keys in `maxima`); identity on one rank."""
    if not info.sharded:
        return dict(sums)
    keys = sorted(sums)
    maxima = set(maxima)
    total = torch.tensor([0.0 if k in maxima else float(sums[k]) for k in keys], dtype=torch.float64)
    peak = torch.tensor([float(sums[k]) if k in maxima else float("-inf") for k in keys], dtype=torch.float64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return {k: float(peak[i]) if k in maxima else float(total[i]) for i, k in enumerate(keys)}


def broadcast(obj: Any, info: RankInfo) -> Any:
    """Rank 0's `obj` on every rank (pickled through the group: only ever between the learner's own
    processes); identity on one rank."""
    if not info.sharded:
        return obj
    box = [obj if info.is_leader else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A parameter's full value: a sharded DTensor is all-gathered (a collective: every rank calls it);
    a plain tensor is itself."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_items(model: torch.nn.Module, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) of each named state-dict entry, gathered one at a time."""
    state = model.state_dict()
    for name in names:
        yield name, full_tensor(state[name])


def all_reduce_counts(counts: dict[int, torch.Tensor], layers: Iterable[tuple[int, int]]) -> dict:
    """Sum the MoE balancer's per-layer expert counts over ranks; `layers` is (layer, num_experts)."""
    out = {}
    for layer, experts in layers:
        c = counts.get(layer)
        c = torch.zeros(experts, dtype=torch.long) if c is None else c.to(torch.long)
        dist.all_reduce(c, op=dist.ReduceOp.SUM)
        out[layer] = c
    return out


@contextmanager
def unsharded(model: torch.nn.Module) -> Iterator[None]:
    """Every FSDP module's full parameters registered on the modules for the duration (a collective:
    every rank enters it), then sharded again; for code that reads plain parameters, such as peft's
    adapter merge and save."""
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()


def drain(weights: Iterable) -> dict:
    """A rank other than 0 runs a weight gather (`trainer.iter_weights`) to its end: it takes part in every
    collective, and rank 0 alone receives the tensors. Returns {} (the rank's answer is not used)."""
    for _ in weights:
        pass
    return {}


def barrier(info: RankInfo) -> None:
    if info.sharded:
        dist.barrier()


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
