"""Distillation loss and batches: values by hand (arithmetic in the comments), the shift, masking."""

from __future__ import annotations

import math

import pytest
import torch

from services.learner.distill import build_distill_batch, distill_batches, distill_loss
from services.learner.logprobs import gather_logprobs

LN = math.log


def _hand_case():
    """N=1, T=4, V=3, K=2: prompt token at 0, completion tokens at 1 and 2, padding at 3."""
    logits = torch.zeros(1, 4, 3)  # [N, T, V]; logits at t predict token t + 1
    logits[0, 0] = torch.tensor([0.0, LN(2), 0.0])  # softmax [1/4, 1/2, 1/4]: predicts token 1
    logits[0, 1] = torch.tensor([0.0, 0.0, LN(2)])  # softmax [1/4, 1/4, 1/2]: predicts token 2
    logits[0, 3] = torch.tensor([50.0, -50.0, 7.0])  # last position predicts nothing
    target_ids = torch.tensor([[0, 1, 2, 0]])  # [N, T]
    loss_mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # [N, T]
    topk_ids = torch.tensor([[[2, 1], [0, 1], [0, 2], [1, 2]]])  # [N, T, K]; positions 0, 3 are garbage
    topk_logprobs = torch.tensor(  # [N, T, K]
        [[[float("nan"), 5.0], [LN(0.2), LN(0.6)], [LN(0.5), LN(0.25)], [-float("inf"), 3.0]]]
    )
    return logits, target_ids, topk_ids, topk_logprobs, loss_mask


def test_loss_matches_hand_computation():
    logits, target_ids, topk_ids, topk_logprobs, loss_mask = _hand_case()
    loss, metrics = distill_loss(logits, target_ids, topk_ids, topk_logprobs, loss_mask, beta=0.25)
    # Token 1 (logits at 0, q_s = [1/4, 1/2, 1/4]): CE = -ln(1/2) = .693147.
    #   Buckets (teacher ids [0, 1], rest): teacher p = [.2, .6, .2], student q = [1/4, 1/2, 1/4].
    #   KL = .2 ln(.2/.25) + .6 ln(.6/.5) + .2 ln(.2/.25) = -.044629 + .109393 - .044629 = .020136.
    #   Top-1: teacher id 1 (ln .6 > ln .2, listed second), student argmax 1: agree.
    # Token 2 (logits at 1, q_s = [1/4, 1/4, 1/2]): CE = -ln(1/2) = .693147.
    #   Buckets (teacher ids [0, 2], rest): p = [.5, .25, .25], q = [1/4, 1/2, 1/4].
    #   KL = .5 ln 2 + .25 ln(1/2) + .25 ln 1 = .346574 - .173287 = .173287.
    #   Top-1: teacher id 0, student argmax 2: disagree.
    # Token mean: CE = .693147, KL = (.020136 + .173287) / 2 = .096711;
    # loss = .25 * .693147 + .75 * .096711 = .173287 + .072533 = .245820. Agreement 1 / 2.
    torch.testing.assert_close(loss, torch.tensor(0.245820), atol=1e-5, rtol=0)
    assert metrics["ce"] == pytest.approx(0.693147, abs=1e-5)
    assert metrics["kl"] == pytest.approx(0.096711, abs=1e-5)
    assert metrics["loss"] == pytest.approx(0.245820, abs=1e-5)
    assert metrics["tokens"] == 2.0
    assert metrics["teacher_top1_agreement"] == 0.5


def test_temperature_divides_student_logits():
    logits, target_ids, topk_ids, topk_logprobs, loss_mask = _hand_case()
    _, metrics = distill_loss(logits, target_ids, topk_ids, topk_logprobs, loss_mask, 1.0, temperature=2.0)
    # Logits / 2: token 1 sees [0, ln 2 / 2, 0] = exp -> [1, sqrt 2, 1]; CE = ln(2 + sqrt 2) - ln sqrt 2
    # = ln(3.414214) - .346574 = 1.227947 - .346574 = .881374; token 2 is the same by symmetry.
    assert metrics["ce"] == pytest.approx(0.881374, abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        distill_loss(logits, target_ids, topk_ids, topk_logprobs, loss_mask, 1.0, temperature=0.0)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_outside_unit_interval_is_rejected(beta):
    with pytest.raises(ValueError, match=r"beta=.* must be in \[0, 1\]"):
        distill_loss(*_hand_case(), beta=beta)


def _random_batch(k=3, vocab=7, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def topk(length):
        ids = [torch.randperm(vocab, generator=gen)[:k].tolist() for _ in range(length)]
        lps = [torch.log_softmax(torch.randn(vocab, generator=gen), -1)[:k].tolist() for _ in range(length)]
        return ids, lps

    examples = [([1, 2], [3, 4, 5], *topk(3)), ([6], [1, 2], *topk(2))]
    batch = build_distill_batch(examples, pad_id=0, k=k)
    logits = torch.randn(2, batch.input_ids.shape[1], vocab, generator=gen)  # [N, T, V]
    return batch, logits


def test_beta_one_is_the_sft_cross_entropy():
    batch, logits = _random_batch()
    for temperature in (1.0, 0.7):
        loss, _ = distill_loss(
            logits, batch.target_ids, batch.topk_ids, batch.topk_logprobs, batch.loss_mask, 1.0, temperature
        )
        # SFT's loss with the same "position t is token t" convention: -mean of gather_logprobs on the mask.
        logp = gather_logprobs(logits, batch.input_ids, temperature)  # [N, T]
        sft = -(logp * batch.loss_mask).sum() / batch.loss_mask.sum()
        torch.testing.assert_close(loss, sft)


def test_beta_zero_and_matching_teacher_gives_zero_kl():
    batch, logits = _random_batch()
    # A teacher that *is* the student: its full-vocabulary log-probs at the logits one step earlier,
    # placed on the token they generated (position t gets the logits at t - 1), as vLLM reports them.
    full = torch.log_softmax(logits, dim=-1)  # [N, T, V]
    teacher = torch.zeros_like(batch.topk_logprobs)  # [N, T, K]
    teacher[:, 1:] = full[:, :-1].gather(-1, batch.topk_ids[:, 1:])
    loss, metrics = distill_loss(logits, batch.target_ids, batch.topk_ids, teacher, batch.loss_mask, 0.0)
    assert abs(float(loss)) < 1e-6 and abs(metrics["kl"]) < 1e-6
    # A teacher with less mass on the same top-k (the rest bucket larger) is a different target: the
    # student must match how much probability the teacher leaves outside its top-k too.
    loss, _ = distill_loss(logits, batch.target_ids, batch.topk_ids, teacher - 3.0, batch.loss_mask, 0.0)
    assert float(loss) > 1e-2
    # Off by one position (the classic shift bug), the same targets give a clearly positive KL.
    shifted = torch.zeros_like(teacher)
    shifted[:, 1:] = full[:, 1:].gather(-1, batch.topk_ids[:, 1:])
    loss, _ = distill_loss(logits, batch.target_ids, batch.topk_ids, shifted, batch.loss_mask, 0.0)
    assert float(loss) > 1e-3


def test_gradient_flows_only_through_masked_positions():
    logits, target_ids, topk_ids, topk_logprobs, loss_mask = _hand_case()
    logits.requires_grad_(True)
    loss, _ = distill_loss(logits, target_ids, topk_ids, topk_logprobs, loss_mask, beta=0.5)
    loss.backward()
    grad = logits.grad  # [N, T, V]
    assert torch.isfinite(grad).all()  # the NaN / inf garbage at masked positions never leaked in
    # Completion tokens sit at 1 and 2, so the logits at 0 and 1 get gradient; 2 and 3 predict nothing.
    assert grad[0, :2].abs().sum(dim=-1).gt(0).all()
    assert torch.equal(grad[0, 2:], torch.zeros(2, 3))


def test_position_zero_can_never_be_a_target():
    logits, target_ids, topk_ids, topk_logprobs, _ = _hand_case()
    with pytest.raises(ValueError, match="position 0"):
        distill_loss(logits, target_ids, topk_ids, topk_logprobs, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), 0.5)


def test_build_places_each_tokens_targets_on_its_position():
    examples = [
        ([1, 2], [3], [[3, 4]], [[-0.1, -2.0]]),
        ([5], [6, 7], [[6, 1], [7, 2]], [[-0.5, -1.0], [-0.2, -3.0]]),
    ]
    batch = build_distill_batch(examples, pad_id=9, k=2)
    assert batch.input_ids.tolist() == [[1, 2, 3], [5, 6, 7]]
    assert torch.equal(batch.target_ids, batch.input_ids)
    assert batch.loss_mask.tolist() == [[0, 0, 1], [0, 1, 1]]
    # Completion token j of a P-token prompt sits at P + j, with its own top-k there.
    assert batch.topk_ids.tolist() == [[[0, 0], [0, 0], [3, 4]], [[0, 0], [6, 1], [7, 2]]]
    torch.testing.assert_close(batch.topk_logprobs[1, 2], torch.tensor([-0.2, -3.0]))
    short = build_distill_batch([examples[0], ([5], [6], [[6, 1]], [[-0.5, -1.0]])], pad_id=9, k=2)
    assert short.input_ids.tolist() == [[1, 2, 3], [5, 6, 9]]  # right-padded, no EOS appended
    assert short.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert short.loss_mask.tolist() == [[0, 0, 1], [0, 1, 0]]
    cut = build_distill_batch([examples[1]], pad_id=9, k=2, max_len=2)
    assert cut.input_ids.tolist() == [[5, 6]] and cut.topk_ids.tolist() == [[[0, 0], [6, 1]]]
    assert cut.num_truncated == 1


def test_build_rejects_misaligned_examples():
    with pytest.raises(ValueError, match="2 completion tokens but 1 topk_ids"):
        build_distill_batch([([1], [2, 3], [[2, 0]], [[-1.0, -2.0]])], pad_id=0, k=2)
    with pytest.raises(ValueError, match="expected k=2"):
        build_distill_batch([([1], [2], [[2, 0, 4]], [[-1.0, -2.0, -3.0]])], pad_id=0, k=2)
    with pytest.raises(ValueError, match="empty prompt"):
        build_distill_batch([([], [2], [[2, 0]], [[-1.0, -2.0]])], pad_id=0, k=2)


def test_distill_batches_shuffle_per_epoch_deterministically():
    examples = [([i + 1], [i + 2], [[i + 2, 0]], [[-0.1, -3.0]]) for i in range(5)]

    def firsts(seed):
        batches = list(distill_batches(examples, batch_size=2, seed=seed, pad_id=0, k=2, num_epochs=2))
        return [row[0] for b in batches for row in b.input_ids.tolist()], [b.epoch for b in batches]

    order, epochs = firsts(seed=3)
    assert epochs == [0, 0, 0, 1, 1, 1]  # 5 examples in batches of 2: 2 + 2 + 1 per epoch
    assert sorted(order[:5]) == sorted(order[5:]) == [1, 2, 3, 4, 5]
    assert firsts(seed=3)[0] == order
