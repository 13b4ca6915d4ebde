"""Checkpoints of a multi-rank (FSDP2) learner: sharded state for resume, a consolidated export for use.

A sharded checkpoint is an ordinary r1forge checkpoint directory (see `checkpoint.py`): the consolidated
HF export (config, `model.safetensors` with full tensors, tokenizer) that vLLM and users load, and
`r1forge_state.json`, plus `trainer_state/dcp/`: the policy's and AdamW's shards written by every rank
with torch.distributed.checkpoint (DCP). A resumed learner loads the export, shards it, then loads the
DCP state over it (DCP re-shards, so the rank count may change between runs). The export is gathered
one tensor at a time (`trainer.iter_weights`) and only rank 0 holds it; the write is atomic as for
one rank (a temporary sibling renamed into place).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from services.learner.checkpoint import STATE_FILE, replace_dir
from services.learner.distributed import RankInfo, barrier, drain, unsharded

log = logging.getLogger(__name__)

DCP_DIR = "trainer_state/dcp"


def has_sharded_state(directory: str | Path) -> bool:
    return (Path(directory) / DCP_DIR / ".metadata").is_file()


def _export(tmp: Path, model: torch.nn.Module, weights: Iterable, tokenizer: Any | None) -> None:
    """Rank 0: the HF directory of full weights (config, generation config, model.safetensors)."""
    from safetensors.torch import save_file

    tensors = dict(weights)
    config = model.config
    config.save_pretrained(tmp)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(tmp)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)


def save_sharded_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    weights: Iterable[tuple[str, torch.Tensor]],
    tokenizer: Any | None,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    rank: RankInfo,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Every rank calls this (collectives inside): DCP shards of model + optimizer, and rank 0's
    consolidated export of `weights` (the trainer's iter_weights) with `meta`. Returns the directory."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    target = Path(directory)
    tmp = target.with_name(f".{target.name}.tmp-sharded")  # one name every rank agrees on
    if rank.is_leader:
        shutil.rmtree(tmp, ignore_errors=True)  # left over from a crash mid-save
        tmp.mkdir(parents=True)
    barrier(rank)
    try:
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / DCP_DIR))
        if rank.is_leader:
            _export(tmp, model, weights, tokenizer)
        else:
            drain(weights)
        if write_extra is not None:  # e.g. the LoRA adapter, read from the full parameters
            with unsharded(model):
                if rank.is_leader:
                    write_extra(tmp)
        if rank.is_leader:
            state = dict(meta)
            state["trained_group_ids"] = sorted(meta.get("trained_group_ids", ()))
            state["num_ranks"] = rank.world_size
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
        barrier(rank)
        if rank.is_leader:
            replace_dir(tmp, target)
        barrier(rank)
    except BaseException:
        if rank.is_leader:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank.is_leader:
        log.info("saved sharded checkpoint %s (%d ranks, policy_version=%s, step=%s)", target,
                 rank.world_size, meta["policy_version"], meta["step"])  # fmt: skip
    return target


def load_sharded_state(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Every rank: load the DCP model and optimizer shards of a sharded checkpoint into a sharded policy."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(Path(directory) / DCP_DIR))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
