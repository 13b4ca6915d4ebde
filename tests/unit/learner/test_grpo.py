"""GRPO maths against values computed by hand (arithmetic in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from services.learner.grpo import aggregate, clipped_surrogate, group_advantages, grpo_loss, k3_kl


def test_group_advantages_use_unbiased_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    adv = group_advantages(rewards, eps=0.0)
    # Row 0: mean 0.5; deviations ±0.5; unbiased var = 4 * 0.25 / 3 = 1/3; std = 0.57735;
    # 0.5 / 0.57735 = 0.8660.
    # Row 1: mean 1; deviations 1, -1, 0, 0; var = 2 / 3; std = 0.81650; ±1 / 0.81650 = ±1.2247.
    expected = torch.tensor([[0.8660, -0.8660, -0.8660, 0.8660], [1.2247, -1.2247, 0.0, 0.0]])
    torch.testing.assert_close(adv, expected, atol=1e-4, rtol=0)


def test_group_advantages_eps_and_equal_rewards():
    # Equal rewards: deviations 0, std 0 -> 0 / (0 + eps) = 0 exactly, no NaN.
    assert torch.equal(group_advantages(torch.tensor([[3.0, 3.0, 3.0]]), eps=1e-6), torch.zeros(1, 3))
    # eps is added to std: rewards [1, 0]: mean .5, std = sqrt(.5) = .70711; .5 / (.70711 + .5) = .41421.
    adv = group_advantages(torch.tensor([[1.0, 0.0]]), eps=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.41421, -0.41421]]), atol=1e-4, rtol=0)


def test_group_advantages_rejects_groups_of_one():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([[1.0]]), eps=1e-6)


def test_clipped_surrogate_clips_the_optimistic_side_only():
    eps = 0.2
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    logp = torch.log(ratios).reshape(5, 1).requires_grad_(True)  # old_logp = 0, so ratio = exp(logp)
    loss, clipped = clipped_surrogate(logp, torch.zeros(5, 1), adv, eps)
    # ratio 1.5, A=+1: -min(1.5, 1.2) = -1.2, clipped.   ratio 1.5, A=-1: -min(-1.5, -1.2) = 1.5, not.
    # ratio 0.5, A=+1: -min(0.5, 0.8) = -0.5, not.       ratio 0.5, A=-1: -min(-0.5, -0.8) = 0.8, clipped.
    # ratio 1.1, A=+1: inside [0.8, 1.2]: -1.1, not.
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.2, 1.5, -0.5, 0.8, -1.1]))
    assert clipped.squeeze(1).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    # Gradient: 0 where clipped; else d(-A * ratio)/dlogp = -A * ratio.
    loss.sum().backward()
    torch.testing.assert_close(logp.grad.squeeze(1), torch.tensor([0.0, 1.5, -0.5, 0.0, -1.1]))


def test_k3_kl_values():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.3]]))
    kl = k3_kl(logp, ref)
    # d = ref - logp.  [0] d = ln .5 = -.693147: e^d - d - 1 = .5 + .693147 - 1 = .193147
    # [1] d = ln 2 = .693147: 2 - .693147 - 1 = .306853.   [2] d = 0: 1 - 0 - 1 = 0.
    torch.testing.assert_close(kl, torch.tensor([[0.193147, 0.306853, 0.0]]), atol=1e-5, rtol=0)


def test_aggregate_modes_on_a_ragged_mask():
    # Masked positions hold 100 to prove they are ignored.
    per_token = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # seq_mean: row means (1+2+3)/3 = 2 and 4/1 = 4; mean over rows = 3.
    assert aggregate(per_token, mask, "seq_mean").item() == pytest.approx(3.0)
    # token_mean: (1+2+3+4) / 4 tokens = 2.5.
    assert aggregate(per_token, mask, "token_mean").item() == pytest.approx(2.5)
    # Normalisers replace the denominators: seq (2+4)/4 = 1.5; token 10/8 = 1.25.
    assert aggregate(per_token, mask, "seq_mean", normaliser=4).item() == pytest.approx(1.5)
    assert aggregate(per_token, mask, "token_mean", normaliser=8).item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="seq_mean"):
        aggregate(per_token, mask, "sum")


def test_grpo_loss_value_and_metrics():
    # One sequence, 3 positions, the first is prompt. logp == old_logp so ratio = 1, pg = -A = -0.5.
    logp = torch.log(torch.tensor([[0.9, 0.5, 0.3]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.1, 0.25, 0.3]]))
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss, m = grpo_loss(logp, logp.detach(), ref, torch.tensor([0.5]), mask, 0.2, 0.1, "seq_mean")
    # KL per completion token: .193147 (see test_k3_kl) and 0. Per token: -.5 + .1 * .193147 = -.480685,
    # and -.5. Sequence mean = (-.480685 - .5) / 2 = -.490343.
    assert loss.item() == pytest.approx(-0.490343, abs=1e-5)
    assert m["kl"] == pytest.approx(0.193147 / 2, abs=1e-5)
    assert m["clip_frac"] == 0.0 and m["ratio_mean"] == pytest.approx(1.0) and m["num_tokens"] == 2.0
    assert m["pg_loss"] == pytest.approx(-0.5)


def test_grpo_loss_needs_ref_when_kl_is_on():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(x, x, None, torch.zeros(1), torch.ones(1, 2), 0.2, 0.1, "seq_mean")


def test_masked_extremes_give_finite_gradients():
    logp = torch.tensor([[-0.1, -95.0, -0.2]], requires_grad=True)
    old = torch.tensor([[-0.2, 0.0, -0.1]])
    ref = torch.tensor([[-0.3, 0.0, -0.4]])  # exp(0 - (-95)) would overflow float32 if not masked
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    loss, _ = grpo_loss(logp, old, ref, torch.tensor([1.0]), mask, 0.2, 0.5, "token_mean")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert logp.grad[0, 1].item() == 0.0


@pytest.mark.parametrize("mode", ["seq_mean", "token_mean"])
def test_micro_batches_accumulate_to_the_full_batch_gradient(mode):
    gen = torch.Generator().manual_seed(0)
    logp = (-torch.rand(6, 7, generator=gen) * 2).requires_grad_(True)  # [B=6, T=7]
    old = logp.detach() + 0.3 * torch.randn(6, 7, generator=gen)  # ratios spread across the clip range
    ref = logp.detach() + 0.3 * torch.randn(6, 7, generator=gen)
    adv = torch.randn(6, generator=gen)
    lengths = torch.tensor([7, 2, 5, 1, 6, 3])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).float()  # ragged rows

    full, _ = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.05, mode)
    (full_grad,) = torch.autograd.grad(full, logp)

    normaliser = 6 if mode == "seq_mean" else float(mask.sum())
    total = 0.0
    for rows in (slice(0, 4), slice(4, 6)):  # uneven micro-batches: 4 + 2
        part, _ = grpo_loss(
            logp[rows], old[rows], ref[rows], adv[rows], mask[rows], 0.2, 0.05, mode, normaliser
        )
        total = total + part
    (micro_grad,) = torch.autograd.grad(total, logp)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(micro_grad, full_grad)
    # Without the normaliser, seq_mean over uneven micro-batches would weight rows differently.
    naive = sum(
        grpo_loss(logp[r], old[r], ref[r], adv[r], mask[r], 0.2, 0.05, mode)[0]
        for r in (slice(0, 4), slice(4, 6))
    )
    assert not math.isclose(naive.item(), full.item(), rel_tol=1e-3)
