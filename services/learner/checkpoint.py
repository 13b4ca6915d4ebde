"""Learner checkpoints: a Hugging Face model directory plus r1forge's own state, safetensors and JSON only.

A checkpoint directory is what `AutoModelForCausalLM.from_pretrained` and vLLM load directly
(config.json, model.safetensors, tokenizer files), plus:
- `r1forge_state.json`: `policy_version`, `step`, `trained_group_ids` (sorted; the learner's
  exactly-once record, restored on resume) and any other metadata the caller passes;
- `trainer_state/optimizer.safetensors` + `optimizer` key in the JSON: the AdamW moments as named
  tensors and the non-tensor part (param groups, hyper-parameters) as JSON, so a resumed run continues
  the same optimizer trajectory. Nothing is pickled, so loading a checkpoint never executes code. The
  optimizer file sits in a sub-directory because vLLM loads every top-level *.safetensors file as
  model weights.
- with LoRA (`services/learner/lora.py`): model.safetensors holds the merged weights, `adapter/` the
  adapter in peft's format, and the JSON's `lora` entry the un-merged base a resumed run starts from.

Writes go to a temporary sibling directory that is renamed into place at the end, so a crash
mid-save leaves the previous checkpoint intact rather than a half-written one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

STATE_FILE = "r1forge_state.json"
OPTIMIZER_FILE = "trainer_state/optimizer.safetensors"


def optimizer_to_safetensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into named tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_safetensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Rebuild an optimizer state dict from `optimizer_to_safetensors`'s two parts."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    tokenizer: Any | None,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write an HF-loadable checkpoint with r1forge state to `directory`, atomically; return it.

    `meta` must hold `policy_version` and `step`; `trained_group_ids` (any iterable of str) is stored
    sorted. Everything in `meta` must be JSON-serialisable. `state_dict` replaces the model's own
    weights (a LoRA policy saves its merged ones); `write_extra(tmp_dir)` adds files (its adapter)
    inside the same atomic write.
    """
    missing = [k for k in ("policy_version", "step") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}; pass them so a resumed run knows where it is")
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if write_extra is not None:
            write_extra(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        state = dict(meta)
        state["trained_group_ids"] = sorted(meta.get("trained_group_ids", ()))
        if optimizer is not None:
            tensors, optimizer_meta = optimizer_to_safetensors(optimizer)
            (tmp / OPTIMIZER_FILE).parent.mkdir(exist_ok=True)
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
            state["optimizer"] = optimizer_meta
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved checkpoint %s (policy_version=%s, step=%s)", target, meta["policy_version"], meta["step"])
    return target


def replace_dir(src: Path, dst: Path) -> None:
    """Move `src` to `dst`, replacing an existing `dst` with only a brief window without either."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)  # left over from a crash mid-swap
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def load_checkpoint_meta(directory: str | Path) -> dict[str, Any]:
    """The r1forge state of a checkpoint (`policy_version`, `step`, `trained_group_ids`, ...).

    A plain HF model directory without r1forge state (a fresh zoo model, a hub model) reads as version
    0, step 0, nothing trained.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return {"policy_version": 0, "step": 0, "trained_group_ids": []}
    return json.loads(path.read_text())


def load_optimizer_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    """Restore `optimizer` from a checkpoint; return False (optimizer untouched) when it has none."""
    tensor_path = Path(directory) / OPTIMIZER_FILE
    meta = load_checkpoint_meta(directory).get("optimizer")
    if meta is None or not tensor_path.is_file():
        return False
    optimizer.load_state_dict(optimizer_from_safetensors(load_file(str(tensor_path)), meta))
    return True
