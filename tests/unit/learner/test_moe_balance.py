"""Aux-loss-free expert balancing (`learner.moe_bias_update_speed`): the rule by hand, and the trainer moving
a real DeepSeek-V3 router's correction bias by the loads of the step's training tokens only."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load as safetensors_load

from services.config import LearnerConfig
from services.learner.moe_balance import bias_update
from services.learner.moe_metrics import expert_load
from services.learner.sft import build_sft_batch

SPEED = 0.01
CFG = LearnerConfig(lr=1e-2, kl_coef=0.0, micro_batch_size=2, num_threads=1, seed=0)
EXAMPLES = [([1, 2, 3], [4, 5, 6, 7]), ([8, 9], [10, 11, 12, 13, 14, 15]), ([3, 1], [2, 7])]  # 2 micro


def test_bias_update_by_hand():
    # Loads [6, 2, 0, 0]: mean 2. Expert 0 is overloaded (-gamma), expert 1 is at the mean (0), 2 and 3 are
    # underloaded (+gamma).
    assert bias_update(torch.tensor([6, 2, 0, 0]), 0.5).tolist() == [-0.5, 0.0, 0.5, 0.5]
    # One row per layer: each against its own mean. Layer 2: mean 3, so [+, -, 0, 0].
    assert bias_update(torch.tensor([[1, 3, 2, 2], [1, 5, 3, 3]]), 1.0).tolist() == [
        [1.0, -1.0, 0.0, 0.0],
        [1.0, -1.0, 0.0, 0.0],
    ]


@pytest.fixture(scope="module")
def deepseek_dir(tmp_path_factory):
    """A saved 2-layer DeepSeek-V3 (layer 0 dense, layer 1 MoE: 4 routed experts, top-2, 1 shared)."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    config = DeepseekV3Config(
        vocab_size=32, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8,
        qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
        n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, num_mtp_layers=0,
    )  # fmt: skip
    directory = tmp_path_factory.mktemp("tiny-deepseek")
    DeepseekV3ForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


def _trainer(model_dir, speed):
    from services.learner.trainer import GRPOTrainer

    return GRPOTrainer(model_dir, replace(CFG, moe_bias_update_speed=speed))


def _bias(trainer) -> torch.Tensor:
    return trainer.model.model.layers[1].mlp.gate.e_score_correction_bias.detach().clone()


def test_sft_step_moves_the_bias_by_the_training_tokens_load(deepseek_dir):
    trainer = _trainer(deepseek_dir, SPEED)
    batch = build_sft_batch(EXAMPLES, pad_id=0, eos_id=None)
    # Before the step the weights are those the step's forwards route with: count the same tokens
    # (padding left out) through the metrics path, which must not count towards the bias (no grad).
    load = expert_load(trainer.model, batch.input_ids, batch.attention_mask)
    (counts,) = load["tokens_per_expert"]
    assert sum(counts) == 2 * int(batch.attention_mask.sum())
    assert len(set(counts)) > 1, f"routing {counts} is already even; the test would show nothing"
    trainer._balancer.update()  # nothing counted yet: the metrics forward above ran without grad
    assert torch.equal(_bias(trainer), torch.zeros(4))

    metrics = trainer.sft_step(batch)
    expected = bias_update(torch.tensor(counts), SPEED).float()
    assert torch.allclose(_bias(trainer), expected), (counts, _bias(trainer))
    assert metrics["moe_bias_absmax"] == pytest.approx(SPEED)

    # The bias travels with the weights the rollout workers receive.
    published = safetensors_load(trainer.state_dict_safetensors())
    assert torch.allclose(published["model.layers.1.mlp.gate.e_score_correction_bias"], expected)


def test_bias_stays_zero_when_off_and_non_deepseek_routers_are_refused(deepseek_dir, tiny_model_dir):
    trainer = _trainer(deepseek_dir, 0.0)
    metrics = trainer.sft_step(build_sft_batch(EXAMPLES, pad_id=0, eos_id=None))
    assert torch.equal(_bias(trainer), torch.zeros(4))
    assert "moe_bias_absmax" not in metrics
    with pytest.raises(ValueError, match=r"speed=0\.01 needs a router with a correction bias"):
        _trainer(tiny_model_dir, SPEED)
    with pytest.raises(ValueError, match=r"moe_bias_update_speed=-0\.01 must be > 0"):
        _trainer(deepseek_dir, -SPEED)
