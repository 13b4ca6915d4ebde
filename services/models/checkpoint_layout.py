"""Weights in checkpoint layout: the tensor names and shapes a saved Hugging Face checkpoint has.

transformers 5 loads some architectures into a runtime layout that differs from the files on disk. A
DeepSeek-V3 MoE layer holds its routed experts as two stacked tensors (`mlp.experts.gate_up_proj`
[E, 2I, H] and `mlp.experts.down_proj` [E, H, I]), while the checkpoint has one
`mlp.experts.{e}.{gate,up,down}_proj.weight` per expert. The learner publishes its own state dict
(runtime layout), which the HF engine loads as is; vLLM loads checkpoint layout only (KeyError on
`experts.gate_up_proj`).

`CheckpointLayout` converts with transformers' own reverse conversion, the one `save_pretrained` runs,
on a skeleton of the model built on the meta device from the checkpoint's config.json: no weights are
allocated and the conversion rules are exactly those of the transformers version that trains.
Architectures without load-time conversions (Qwen2) and weights already in checkpoint layout pass
through unchanged.
"""

from __future__ import annotations

from pathlib import Path


class CheckpointLayout:
    """Callable: `layout(weights) -> weights` renamed and split into the layout of `model_dir`'s files."""

    def __init__(self, model_dir: str | Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            self._skeleton = AutoModelForCausalLM.from_config(config)

    def __call__(self, weights: dict) -> dict:
        from transformers.core_model_loading import revert_weight_conversion

        return revert_weight_conversion(self._skeleton, dict(weights))
