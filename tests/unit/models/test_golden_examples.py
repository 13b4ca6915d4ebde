"""The source documents' worked examples, checked against the real modules the policy runs.

The seed documents (`/work/shared/seeds/*.txt`, referred to below by their number 000-004) explain
RMSNorm, MoE routing, RoPE, SwiGLU and GRPO with small numeric examples. Several of those numbers are
wrong, so every expected value here is worked out by hand in the comment next to it, and where a
document disagrees the comment names the file and line (collected in docs/ERRATA.md). The modules are
transformers' own (Qwen2 is the policy's architecture; DeepSeek-V3 is the R1 architecture), never
hand-written copies, so a test fails if either the maths or the library changes.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DeepseekV3Config, Qwen2Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3Experts,
    DeepseekV3RMSNorm,
    DeepseekV3TopkRouter,
)
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2MLP,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
)

from services.learner.grpo import group_advantages

ROUTER_LOGITS = [3.4, 1.1, 2.2]  # 000:65, 002:221, 003:229


def close(actual: torch.Tensor, expected: list[float], atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual.detach().float(), torch.tensor(expected), atol=atol, rtol=0.0)


# --- RMSNorm --------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_cls", [Qwen2RMSNorm, DeepseekV3RMSNorm])
def test_rmsnorm_of_2_m2_1_1(norm_cls):
    # mean(h^2) = (4 + 4 + 1 + 1) / 4 = 2.5; sqrt(2.5 + 1e-6) = 1.5811391 (the docs' "1.58" is right).
    # 2 / 1.5811388 = 1.2649111, 1 / 1.5811388 = 0.6324555  ->  [1.26, -1.26, 0.63, 0.63].
    # ERRATUM 000:30, 001:60, 002:83, 003:66 say 1.27: that is 2 / 1.58 = 1.2658, dividing by the
    # already-rounded RMS. The eps (1e-6, Qwen2's default) moves the result by < 1e-6.
    norm = norm_cls(4, eps=1e-6)  # gamma = ones, as in the documents
    out = norm(torch.tensor([[2.0, -2.0, 1.0, 1.0]]))[0]
    close(out, [1.2649111, -1.2649111, 0.6324555, 0.6324555])
    assert round(out[0].item(), 2) == 1.26


def test_rmsnorm_of_1_2_3():
    # 000:158 and 002:483, eps = 1e-6: mean(x^2) = (1 + 4 + 9) / 3 = 4.6667, RMS = 2.1602469 (docs: 2.16).
    # x / RMS = [0.4629100, 0.9258201, 1.3887301]  ->  [0.46, 0.93, 1.39].
    # ERRATUM 000:158 and 002:483 say [0.46, 0.92, 1.38] (truncated, not rounded; 2/2.16 = 0.9259).
    out = Qwen2RMSNorm(3, eps=1e-6)(torch.tensor([[1.0, 2.0, 3.0]]))[0]
    close(out, [0.4629100, 0.9258201, 1.3887301])
    assert [round(v, 2) for v in out.tolist()] == [0.46, 0.93, 1.39]


def test_rmsnorm_gamma_scales_elementwise():
    # The "odot gamma" in the documents' formula: gamma = [1, 2, 0, -1] scales the normalised
    # [1.2649111, -1.2649111, 0.6324555, 0.6324555] to [1.2649111, -2.5298221, 0, -0.6324555].
    norm = Qwen2RMSNorm(4, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.0, -1.0]))
    close(norm(torch.tensor([[2.0, -2.0, 1.0, 1.0]]))[0], [1.2649111, -2.5298221, 0.0, -0.6324555])


# --- Router: softmax + top-2 (what the documents describe) ----------------------------------------


def test_router_softmax_top2_as_the_documents_describe():
    # exp(3.4) = 29.964100, exp(1.1) = 3.004166, exp(2.2) = 9.025013; sum = 41.993280.
    # softmax = [29.964100, 3.004166, 9.025013] / 41.993280 = [0.713545, 0.071539, 0.214916]
    #         -> [0.71, 0.07, 0.21].
    # ERRATUM 002:222 and 003:230 say [0.70, 0.06, 0.24] (each entry off by 0.01-0.03; still sums to 1).
    logits = torch.tensor(ROUTER_LOGITS)
    probs = torch.softmax(logits, dim=-1)
    close(probs, [0.7135451, 0.0715392, 0.2149157])
    # Top-2 are experts 1 and 3 (indices 0 and 2): the documents' choice of experts is right.
    values, indices = torch.topk(probs, k=2)
    assert indices.tolist() == [0, 2]
    # g_t with the others zeroed (the documents' step 3, no renormalisation) = [0.7135, 0, 0.2149].
    # ERRATUM 000:66, 002:223, 003:231 give g_t = [0.70, 0.0, 0.24], carrying the wrong softmax.
    gates = torch.zeros_like(probs).scatter(0, indices, values)
    close(gates, [0.7135451, 0.0, 0.2149157])
    # Renormalised over the top-2 (Mixtral / Qwen-MoE style, norm_topk_prob=True):
    # 29.964100 / (29.964100 + 9.025013) = 29.964100 / 38.989113 = 0.768525, and 0.231475.
    # (The same from probabilities: 0.713545 / (0.713545 + 0.214916) = 0.768525.)
    close(values / values.sum(), [0.7685248, 0.2314752])


def test_deepseek_v3_router_differs_sigmoid_scores_then_normalise():
    # DeepSeek-V3's real gate (DeepseekV3TopkRouter) is NOT softmax-then-top-k:
    #   1. scores = sigmoid(logits), each expert scored independently (they need not sum to 1);
    #   2. experts are *chosen* on scores + e_score_correction_bias (the auxiliary-loss-free load
    #      balancing bias), within the top `topk_group` of `n_group` expert groups;
    #   3. the *weights* are the unbiased sigmoid scores of the chosen experts, divided by their sum
    #      (norm_topk_prob) and then multiplied by routed_scaling_factor (2.5 in DeepSeek-V3);
    #   4. shared experts are always added on top (DeepseekV3MoE), outside the router.
    # Driven with weight = identity so that router_logits == [3.4, 1.1, 2.2] exactly:
    # sigmoid = [1/(1+e^-3.4), 1/(1+e^-1.1), 1/(1+e^-2.2)] = [0.967705, 0.750260, 0.900250].
    # Top-2: experts 0 and 2 (same experts as softmax, since both are monotone in the logit).
    # Weights: 0.967705 / (0.967705 + 0.900250) = 0.967705 / 1.867955 = 0.518056, and 0.481944
    # (vs 0.768525 / 0.231475 with softmax: sigmoid saturates, so the split is much flatter).
    config = DeepseekV3Config(
        hidden_size=3,
        n_routed_experts=3,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
    )
    router = DeepseekV3TopkRouter(config)
    with torch.no_grad():
        router.weight.copy_(torch.eye(3))
        logits, weights, indices = router(torch.tensor([ROUTER_LOGITS]))
    close(logits[0], ROUTER_LOGITS)
    order = torch.argsort(indices[0])  # the router's topk is unsorted
    assert indices[0][order].tolist() == [0, 2]
    close(weights[0][order], [0.5180559, 0.4819441])

    # The load-balancing bias changes which experts are chosen, not their weights: a bias of +0.2 on
    # expert 1 gives choice scores [0.967705, 0.950260, 0.900250], so experts 0 and 1 are chosen, and
    # weights = [0.967705, 0.750260] / 1.717965 = [0.563290, 0.436710].
    with torch.no_grad():
        router.e_score_correction_bias.copy_(torch.tensor([0.0, 0.2, 0.0]))
        _, weights, indices = router(torch.tensor([ROUTER_LOGITS]))
    order = torch.argsort(indices[0])
    assert indices[0][order].tolist() == [0, 1]
    close(weights[0][order], [0.5632904, 0.4367096])


def test_moe_output_is_the_gate_weighted_sum_of_experts():
    # 000:53-54 and 002:175-176: gates [0.7, 0.3, 0.0] -> f = 0.7 E1(h) + 0.3 E2(h), E3 never runs.
    # Real DeepseekV3Experts, hidden 2, expert width 1; expert e (0-based) computes
    # down * (silu(gate . h) * (up . h)) with gate = [1, 0], up = [0, e + 1], down = [1, 0]^T, so for
    # h = [2, -1]: E_e(h) = [silu(2) * -(e + 1), 0], silu(2) = 2 * sigmoid(2) = 1.7615942.
    # E1 = [-1.7615942, 0], E2 = [-3.5231883, 0];
    # f = 0.7 * -1.7615942 + 0.3 * -3.5231883 = -1.2331159 - 1.0569565 = -2.2900724.
    config = DeepseekV3Config(hidden_size=2, moe_intermediate_size=1, n_routed_experts=3, hidden_act="silu")
    experts = DeepseekV3Experts(config)
    with torch.no_grad():
        for e in range(3):
            experts.gate_up_proj[e].copy_(torch.tensor([[1.0, 0.0], [0.0, e + 1.0]]))
            experts.down_proj[e].copy_(torch.tensor([[1.0], [0.0]]))
        out = experts(torch.tensor([[2.0, -1.0]]), torch.tensor([[0, 1]]), torch.tensor([[0.7, 0.3]]))
    close(out[0], [-2.2900724, 0.0])


# --- RoPE -----------------------------------------------------------------------------------------


def _rope_cos_sin(theta: float, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin from the real Qwen2RotaryEmbedding, head_dim 2, angle `theta` per position.

    With head_dim 2 the default inverse frequency is base^0 = 1; "linear" RoPE scaling divides the
    positions by `factor`, so factor = 1 / theta makes position m rotate by m * theta.
    """
    config = Qwen2Config(
        hidden_size=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 1.0 / theta},
    )
    rotary = Qwen2RotaryEmbedding(config)
    return rotary(torch.zeros(1), torch.tensor([positions]))  # each [1, len(positions), 2]


def test_rope_rotation_example():
    # 002:394-400: q = [1, 2] at m = 1, k = [3, 4] at n = 2, theta = pi/4.
    # rotate_half pairs (x1, x2) -> (-x2, x1), so x' = x cos(a) + rotate_half(x) sin(a) is the 2-D rotation
    # [x1 cos a - x2 sin a, x2 cos a + x1 sin a].
    # q' (a = pi/4):  [(1 - 2)/sqrt2, (2 + 1)/sqrt2] = [-0.7071068, 2.1213203]   (doc 002:398 right)
    # k' (a = pi/2):  [3*0 - 4*1, 4*0 + 3*1]         = [-4, 3]                  (doc 002:398 right)
    # q'.k' = (-0.7071068)(-4) + (2.1213203)(3) = 2.8284271 + 6.3639610 = 9.1923882 -> 9.192.
    # ERRATUM 002:400 says 9.191 (from the rounded 0.707 * 4 + 2.121 * 3 = 2.828 + 6.363).
    cos, sin = _rope_cos_sin(math.pi / 4, [1, 2])
    q = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)  # [batch, heads, seq, head_dim]
    k = torch.tensor([3.0, 4.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
    q_m, k_n = q_rot[0, 0, 0], k_rot[0, 0, 1]  # q at position 1, k at position 2
    close(q_m, [-0.7071068, 2.1213203])
    close(k_n, [-4.0, 3.0])
    assert torch.dot(q_m, k_n).item() == pytest.approx(9.1923882, abs=1e-5)
    assert round(torch.dot(q_m, k_n).item(), 3) == 9.192


def test_rope_dot_product_depends_only_on_relative_position():
    # 001:187 / 002:390: q'_m . k'_n depends on m - n only. Moving both by 4 (m = 5, n = 6) keeps the
    # 9.1923882 above; equivalently q . R((n - m) theta) k = [1, 2] . [(3 - 4)/sqrt2, (4 + 3)/sqrt2]
    # = -0.7071068 + 9.8994949 = 9.1923882.
    cos, sin = _rope_cos_sin(math.pi / 4, [5, 6])
    q = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    k = torch.tensor([3.0, 4.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.dot(q_rot[0, 0, 0], k_rot[0, 0, 1]).item() == pytest.approx(9.1923882, abs=1e-5)


def test_rope_frequencies_follow_theta_j_formula():
    # 001:180 / 002:384: theta_j = 10000^(-2j/d). With d = 8: 10000^(-j/4) = 10^(-j) = [1, 0.1, 0.01, 0.001].
    config = Qwen2Config(hidden_size=8, num_attention_heads=1, num_key_value_heads=1, rope_theta=10000.0)
    close(Qwen2RotaryEmbedding(config).inv_freq, [1.0, 0.1, 0.01, 0.001], atol=1e-7)


# --- SwiGLU ---------------------------------------------------------------------------------------


def _qwen2_mlp(gate: list[list[float]], up: list[list[float]], down: list[list[float]]) -> Qwen2MLP:
    """Real Qwen2MLP (down(silu(gate x) * up x)) with the given nn.Linear weights ([out, in])."""
    config = Qwen2Config(
        hidden_size=len(gate[0]), intermediate_size=len(gate), hidden_act="silu", num_attention_heads=1
    )
    mlp = Qwen2MLP(config)
    with torch.no_grad():
        mlp.gate_proj.weight.copy_(torch.tensor(gate))
        mlp.up_proj.weight.copy_(torch.tensor(up))
        mlp.down_proj.weight.copy_(torch.tensor(down))
    return mlp


def test_swiglu_example_with_w_and_v_as_columns():
    # 002:462: x = [2, -1], W = [1, 0], V = [0.5, 0], beta = 1 (so Swish = SiLU, Qwen2's hidden_act).
    # Read W, V as 2x1 columns: xW = 2*1 + (-1)*0 = 2, xV = 2*0.5 + (-1)*0 = 1.
    # SwiGLU = Swish(2) * 1 = 2 * sigmoid(2) = 2 * 0.8807971 = 1.7615942 (one intermediate unit);
    # down_proj = [1, 0]^T writes it to the first hidden unit: output [1.7615942, 0].
    mlp = _qwen2_mlp(gate=[[1.0, 0.0]], up=[[0.5, 0.0]], down=[[1.0], [0.0]])
    with torch.no_grad():
        close(mlp(torch.tensor([[2.0, -1.0]]))[0], [1.7615942, 0.0])


def test_swiglu_example_with_w_and_v_as_diagonals():
    # Same example, W = diag(1, 0), V = diag(0.5, 0), down = identity:
    # xW = [2, 0], Swish(xW) = [1.7615942, 0 * sigmoid(0) = 0]; xV = [1, 0]; product = [1.7615942, 0].
    # Either reading gives [1.76, 0]. ERRATUM 000:117 and 002:466 say [1.76, -0.135]: 002:464 applies
    # Swish to x itself ([2 sig(2), -sig(-1)] = [1.7616, -0.2689]; the W is dropped), then multiplies by
    # [1.0, 0.5], which is neither xV = [1, 0] nor V. (Even that product is -0.2689 * 0.5 = -0.1345 ->
    # -0.134, not -0.135.) The doc's pieces Swish(2) = 1.76 and Swish(-1) = -0.27 are right.
    mlp = _qwen2_mlp(
        gate=[[1.0, 0.0], [0.0, 0.0]], up=[[0.5, 0.0], [0.0, 0.0]], down=[[1.0, 0.0], [0.0, 1.0]]
    )
    with torch.no_grad():
        close(mlp(torch.tensor([[2.0, -1.0]]))[0], [1.7615942, 0.0])
        close(mlp.act_fn(torch.tensor([2.0, -1.0])), [1.7615942, -0.2689414])


# --- GRPO advantages ------------------------------------------------------------------------------


def test_grpo_group_advantages_g16_binary_rewards():
    # No seed gives a numeric advantage example; 000:77 gives A_i = (r_i - mean) / std with G = 16
    # (000:81) and 004:225 gives accuracy rewards in {0, 1}. Take G = 16 with 4 correct answers:
    # mean = 4/16 = 0.25; sum of squared deviations = 4 * 0.75^2 + 12 * 0.25^2 = 2.25 + 0.75 = 3.0.
    # Unbiased std (ours, TRL, verl)  = sqrt(3.0 / 15) = sqrt(0.2)    = 0.4472136:
    #   correct: 0.75 / 0.4472136 = 1.6770510, wrong: -0.25 / 0.4472136 = -0.5590170.
    # Population std (divide by G)    = sqrt(3.0 / 16) = sqrt(0.1875) = 0.4330127:
    #   correct: 1.7320508, wrong: -0.5773503  (NOT what group_advantages computes).
    rewards = torch.tensor([[1.0] * 4 + [0.0] * 12])
    adv = group_advantages(rewards, eps=0.0)[0]
    close(adv, [1.6770510] * 4 + [-0.5590170] * 12)
    assert adv.sum().item() == pytest.approx(0.0, abs=1e-5)  # advantages are centred
    # With the learner's eps (1e-6) the change is ~1.6770510 * 1e-6 / 0.447 = 4e-6: negligible.
    close(group_advantages(rewards, eps=1e-6)[0], [1.6770510] * 4 + [-0.5590170] * 12)


def test_grpo_mean_only_baseline_of_doc_004_is_ours_times_std():
    # 004:236 writes A_t = R_t - mean(R) (no division by std; the DeepSeekMath GRPO we follow divides).
    # Rewards [1, 0, 1, 1]: mean 0.75, so the doc's A = [0.25, -0.75, 0.25, 0.25].
    # Ours: unbiased std = sqrt((3 * 0.0625 + 0.5625) / 3) = sqrt(0.25) = 0.5, so A = [0.5, -1.5, 0.5, 0.5]:
    # the same signs and ordering, scaled by 1 / 0.5.
    adv = group_advantages(torch.tensor([[1.0, 0.0, 1.0, 1.0]]), eps=0.0)[0]
    close(adv, [0.5, -1.5, 0.5, 0.5])
    close(adv * 0.5, [0.25, -0.75, 0.25, 0.25])
