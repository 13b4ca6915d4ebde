"""MoE expert load: hand-computed balance numbers, and counts read from a real DeepSeek-V3 router."""

from __future__ import annotations

import pytest
import torch

from services.learner.moe_metrics import expert_load, load_balance

NUM_EXPERTS, TOP_K = 4, 2


@pytest.fixture(scope="module")
def tiny_deepseek():
    """A 2-layer transformers DeepSeek-V3 (layer 0 dense, layer 1 MoE: 4 routed experts, top-2, 1 shared)."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    config = DeepseekV3Config(
        vocab_size=32, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8,
        qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K,
        n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, num_mtp_layers=0,
    )  # fmt: skip
    return DeepseekV3ForCausalLM(config).eval()


def test_load_balance_by_hand():
    # 4 tokens, top-2: 8 routed slots split 6/2/0/0. f = [0.75, 0.25, 0, 0]; P = [0.4, 0.3, 0.2, 0.1].
    # sum f*P = 0.75*0.4 + 0.25*0.3 = 0.3 + 0.075 = 0.375; balance_coef = E * 0.375 = 4 * 0.375 = 1.5.
    # Mean load 8 / 4 = 2, max 6: max_violation = (6 - 2) / 2 = 2.0.
    coef, violation = load_balance(torch.tensor([6, 2, 0, 0]), torch.tensor([0.4, 0.3, 0.2, 0.1]), top_k=2)
    assert coef == pytest.approx(1.5)
    assert violation == pytest.approx(2.0)
    # Perfect balance: f = 1/4 each, so sum f*P = 1/4 whatever P sums to (1); coef = 4 * 1/4 = 1, MaxVio 0.
    coef, violation = load_balance(torch.tensor([2, 2, 2, 2]), torch.tensor([0.7, 0.1, 0.1, 0.1]), top_k=2)
    assert (coef, violation) == (pytest.approx(1.0), pytest.approx(0.0))


def test_forced_routing_is_counted_from_the_real_router(tiny_deepseek):
    gate = tiny_deepseek.model.layers[1].mlp.gate
    weight, bias = gate.weight.detach().clone(), gate.e_score_correction_bias.clone()
    try:
        with torch.no_grad():
            # Zero router weight: every sigmoid score is 0.5, so the correction bias alone picks the top-2:
            # experts 0 and 1 for every token.
            gate.weight.zero_()
            gate.e_score_correction_bias.copy_(torch.tensor([1.0, 0.5, 0.0, 0.0]))
        ids = torch.randint(0, 32, (2, 5))
        load = expert_load(tiny_deepseek, ids, torch.ones_like(ids))
    finally:
        with torch.no_grad():
            gate.weight.copy_(weight)
            gate.e_score_correction_bias.copy_(bias)
    # Only layer 1 is MoE. 10 tokens, each to experts 0 and 1: counts [10, 10, 0, 0].
    assert load["layers"] == [1] and load["num_tokens"] == 10
    assert load["tokens_per_expert"] == [[10, 10, 0, 0]]
    # Affinities are uniform (0.5 / (4 * 0.5) = 1/4 each): coef = 4 * (0.5 * 1/4 + 0.5 * 1/4) = 1.0, even
    # though routing has collapsed; MaxVio sees it: mean load 20 / 4 = 5, max 10 -> (10 - 5) / 5 = 1.0.
    assert load["balance_coef"] == [pytest.approx(1.0)]
    assert load["max_violation"] == [pytest.approx(1.0)]
    assert not gate._forward_hooks  # the hooks are removed


def test_padding_tokens_are_not_counted(tiny_deepseek):
    torch.manual_seed(1)
    short, long = torch.randint(1, 32, (1, 3)), torch.randint(1, 32, (1, 6))
    # Right-padded batch: the causal model gives the real tokens the same hidden states, so the same routes.
    batch = torch.cat([torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], 1), long])  # [2, 6]
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])
    together = expert_load(tiny_deepseek, batch, mask)
    apart = [expert_load(tiny_deepseek, ids, None) for ids in (short, long)]
    assert together["num_tokens"] == 3 + 6
    expected = [a + b for a, b in zip(apart[0]["tokens_per_expert"][0], apart[1]["tokens_per_expert"][0])]
    assert together["tokens_per_expert"] == [expected]
    assert sum(expected) == TOP_K * 9  # every counted token took exactly k experts


def test_a_dense_model_is_refused():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64,
    )  # fmt: skip
    dense = Qwen2ForCausalLM(config)
    with pytest.raises(ValueError, match="Qwen2ForCausalLM has no MoE router"):
        expert_load(dense, torch.zeros(1, 3, dtype=torch.long), None)
