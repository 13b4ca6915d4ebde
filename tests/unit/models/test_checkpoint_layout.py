"""CheckpointLayout: the learner's runtime state dict becomes exactly what the checkpoint file holds."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from services.config_loader import load_config
from services.models.checkpoint_layout import CheckpointLayout
from services.models.zoo import resolve_model_dir

SHAPES = {
    "tiny-qwen": ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.num_kv_heads=1"],
    "tiny-deepseek": [
        "model=tiny-deepseek", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.q_lora_rank=16", "model.kv_lora_rank=16", "model.qk_nope_head_dim=8",
        "model.qk_rope_head_dim=8", "model.v_head_dim=8", "model.moe_intermediate_size=16",
        "model.n_routed_experts=4",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", ["tiny-qwen", "tiny-deepseek"])
def test_runtime_state_dict_converts_to_the_checkpoint_file(tmp_path, name):
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *SHAPES[name]]).model)
    on_disk = load_file(str(model_dir / "model.safetensors"))
    runtime = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).state_dict()
    if name == "tiny-deepseek":
        # transformers 5 stacks the 4 routed experts: [E, 2 * moe_intermediate, hidden] = [4, 32, 32].
        assert runtime["model.layers.1.mlp.experts.gate_up_proj"].shape == (4, 32, 32)
        assert "model.layers.1.mlp.experts.0.gate_proj.weight" not in runtime
    layout = CheckpointLayout(model_dir)
    converted = layout(runtime)
    assert set(converted) == set(on_disk)
    assert all(torch.equal(converted[k], on_disk[k]) for k in on_disk)
    # Weights already in checkpoint layout pass through unchanged.
    again = layout(on_disk)
    assert set(again) == set(on_disk) and all(torch.equal(again[k], on_disk[k]) for k in on_disk)
