"""SFT batches: response-only loss masks with EOS, truncation, packing, the epoch iterator."""

from __future__ import annotations

import pytest
import torch

from services.learner.logprobs import token_logprobs
from services.learner.sft import build_sft_batch, pack_sequences, packing_is_exact, sft_batches

EOS, PAD = 9, 0


def test_loss_mask_covers_the_completion_and_eos_only():
    batch = build_sft_batch([([1, 2], [3]), ([4], [5, 6, EOS])], pad_id=PAD, eos_id=EOS)
    # Row 0: EOS appended -> [1, 2, 3, 9]; row 1 already ends with EOS -> [4, 5, 6, 9] unchanged.
    assert batch.input_ids.tolist() == [[1, 2, 3, 9], [4, 5, 6, 9]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert batch.num_tokens == 5 and batch.num_examples == 2


def test_padding_and_truncation():
    batch = build_sft_batch([([1], [2]), ([3, 4], [5, 6, 7, 8])], pad_id=PAD, eos_id=EOS, max_len=5)
    # Row 0: [1, 2, 9] padded to 5. Row 1: [3, 4, 5, 6, 7, 8, 9] cut to 5 -> [3, 4, 5, 6, 7].
    assert batch.input_ids.tolist() == [[1, 2, 9, PAD, PAD], [3, 4, 5, 6, 7]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert batch.loss_mask.tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]]
    assert batch.num_truncated == 1
    with pytest.raises(ValueError, match="max_len"):
        build_sft_batch([([1, 2, 3], [4])], pad_id=PAD, eos_id=EOS, max_len=3)
    with pytest.raises(ValueError, match="empty prompt"):
        build_sft_batch([([], [4])], pad_id=PAD, eos_id=EOS)


def test_pack_sequences_restarts_positions():
    examples = [([1, 2], [3]), ([4], [5, 6]), ([7, 8], [10, 11])]  # with EOS: 4, 4 and 5 tokens
    batch = pack_sequences(examples, max_len=9, pad_id=PAD, eos_id=EOS)
    # Greedy in order: 4 + 4 = 8 <= 9 share row 0; + 5 = 13 > 9, so example 3 opens row 1.
    assert batch.input_ids.tolist() == [[1, 2, 3, 9, 4, 5, 6, 9], [7, 8, 10, 11, 9, PAD, PAD, PAD]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0, 0]]
    assert batch.attention_mask is None and batch.num_examples == 3


def test_packed_rows_give_each_example_its_own_logprobs(make_tiny_qwen, tmp_path):
    model = make_tiny_qwen(tmp_path)
    assert packing_is_exact(model, vocab_size=32)
    examples = [([1, 2, 3], [4, 5]), ([6, 7], [8, 10, 11])]
    packed = pack_sequences(examples, max_len=16, pad_id=PAD, eos_id=EOS)
    single = build_sft_batch(examples, pad_id=PAD, eos_id=EOS)
    with torch.no_grad():
        lp_packed = token_logprobs(model, packed.input_ids, None, packed.position_ids)
        lp_single = token_logprobs(model, single.input_ids, single.attention_mask)
    # The masked (completion) log-probs are the same tokens in the same order in both layouts.
    torch.testing.assert_close(
        lp_packed[packed.loss_mask.bool()], lp_single[single.loss_mask.bool()], atol=1e-5, rtol=0
    )


def test_sft_batches_shuffle_per_epoch_deterministically():
    examples = [([i + 1], [i + 2]) for i in range(10)]

    def first_tokens(seed):
        batches = list(sft_batches(examples, batch_size=4, seed=seed, pad_id=PAD, num_epochs=2))
        return [[row[0] for row in b.input_ids.tolist()] for b in batches], [b.epoch for b in batches]

    order, epochs = first_tokens(seed=7)
    assert epochs == [0, 0, 0, 1, 1, 1]  # 10 examples in batches of 4: 4 + 4 + 2 per epoch
    epoch0 = sum(order[:3], [])
    epoch1 = sum(order[3:], [])
    assert sorted(epoch0) == sorted(epoch1) == list(range(1, 11))  # every example once per epoch
    assert epoch0 != epoch1  # reshuffled
    assert first_tokens(seed=7)[0] == order  # a pure function of the seed
    assert first_tokens(seed=8)[0] != order
    packed = next(sft_batches(examples, batch_size=4, seed=7, pad_id=PAD, eos_id=EOS, max_len=6, pack=True))
    assert packed.input_ids.shape == (2, 6) and packed.num_examples == 4  # 3 tokens each, two per row
    with pytest.raises(ValueError, match="max_len"):
        next(sft_batches(examples, batch_size=4, seed=0, pad_id=PAD, pack=True))


class _CrossAttendingPolicy(torch.nn.Module):
    """A policy that ignores packing: it always passes a full attention mask, so examples see each other."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return self.inner(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), position_ids=position_ids
        )


def test_packing_check_catches_a_model_that_attends_across_examples(make_tiny_qwen, tmp_path):
    assert not packing_is_exact(_CrossAttendingPolicy(make_tiny_qwen(tmp_path)), vocab_size=32)
