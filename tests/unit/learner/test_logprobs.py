"""Per-token log-probs: hand-computed values, chunking, padding, and alignment with build_batch."""

from __future__ import annotations

import math

import pytest
import torch

from services.learner.batch import build_batch
from services.learner.logprobs import gather_logprobs, token_logprobs
from services.pb import rollout_pb2


def test_gather_logprobs_by_hand():
    ids = torch.tensor([[0, 1, 0]])
    logits = torch.zeros(1, 3, 2)
    logits[0, 1] = torch.tensor([math.log(3.0), 0.0])
    out = gather_logprobs(logits, ids)
    # Position 0: no prefix -> 0. Position 1: logits[0] = [0, 0] -> p(1) = 1/2.
    # Position 2: logits[1] = [ln 3, 0] -> p(0) = 3 / (3 + 1) = .75. Logits at the last position are unused.
    torch.testing.assert_close(out, torch.tensor([[0.0, math.log(0.5), math.log(0.75)]]))


def test_gather_logprobs_temperature_and_chunks():
    ids = torch.tensor([[1, 0], [1, 1]])
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])
    out = gather_logprobs(logits, ids, temperature=2.0, chunk_rows=1)
    # Logits / 2 = [1, 0]. Row 0 picks token 0: ln(e / (e + 1)) = -.313262. Row 1 picks token 1 from
    # [0, 1]: the same -.313262.
    torch.testing.assert_close(out, torch.tensor([[0.0, -0.313262], [0.0, -0.313262]]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        gather_logprobs(logits, ids, temperature=0.0)


def test_token_logprobs_match_log_softmax_and_ignore_right_padding(make_tiny_qwen, tmp_path):
    model = make_tiny_qwen(tmp_path)
    long_row = torch.tensor([[1, 2, 3, 4, 5, 6]])
    short_row = torch.tensor([[7, 8, 9]])
    with torch.no_grad():
        ref = torch.log_softmax(model(long_row).logits.float(), dim=-1)  # [1, 6, V]
        expected = ref[0, torch.arange(5), long_row[0, 1:]]  # log p(x_t | x_<t) for t = 1..5
        padded = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]])
        mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
        out = token_logprobs(model, padded, mask)  # [2, 6]
        alone = token_logprobs(model, short_row, torch.ones_like(short_row))
    assert out[0, 0].item() == 0.0
    torch.testing.assert_close(out[0, 1:], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, :3], alone[0], atol=1e-5, rtol=0)


def test_behaviour_logprobs_land_where_the_learner_computes_them(make_tiny_qwen, tmp_path):
    """If a sampler reports the model's own log-probs, build_batch places them exactly on the learner's."""
    model = make_tiny_qwen(tmp_path)
    prompt, completions = [3, 1, 4], [[1, 5, 9, 2], [6, 5]]
    group = rollout_pb2.ScoredGroup(id=rollout_pb2.TaskId(run_id="r", prompt_id="p"), prompt_token_ids=prompt)
    with torch.no_grad():
        for i, completion in enumerate(completions):
            row = torch.tensor([prompt + completion])
            lp = token_logprobs(model, row, torch.ones_like(row))[0, len(prompt) :]  # sampler's view
            group.completions.add(
                sample_index=i, completion_token_ids=completion, logprobs=lp.tolist(), total_reward=float(i)
            )
        batch = build_batch([group], pad_id=0, eps=1e-6)
        learner = token_logprobs(model, batch.input_ids, batch.attention_mask)  # [2, 7]
    m = batch.completion_mask.bool()
    torch.testing.assert_close(learner[m], batch.old_logprobs[m], atol=1e-5, rtol=0)
    assert (batch.old_logprobs[~m] == 0).all()
