"""Per-token log-probabilities of a sequence under a causal LM, the quantity every learner loss uses.

Convention (shared with `batch.py` and `sft.py`): position t holds log p(x_t | x_<t); position 0 has
no prefix and holds 0. That way a log-prob tensor lines up with `input_ids` and with the completion
mask, and nobody has to remember a shift.

A full float32 `log_softmax` over `[N, T, V]` would double the logits' memory; instead the log-prob of
the chosen token is `logit[x_t] - logsumexp(logits)`, computed in float32 over chunks of rows so the
extra memory is bounded by `chunk_rows * T * V` floats whatever the batch size. Logits are always
upcast to float32 (bf16 log-probs are too coarse for importance ratios).
"""

from __future__ import annotations

import torch
from torch import Tensor


def gather_logprobs(
    logits: Tensor, input_ids: Tensor, temperature: float = 1.0, chunk_rows: int = 8
) -> Tensor:
    """Log-probs `[N, T]` of `input_ids` `[N, T]` from next-token `logits` `[N, T, V]` (see module doc)."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 to define log-probs")
    n, t = input_ids.shape
    out = torch.zeros((n, t), dtype=torch.float32, device=logits.device)  # [N, T]
    if t < 2:
        return out
    targets = input_ids[:, 1:]  # [N, T-1]: token t is predicted by the logits at t-1
    pieces = []
    for start in range(0, n, chunk_rows):
        rows = slice(start, start + chunk_rows)
        lg = logits[rows, :-1].float()  # [n_chunk, T-1, V]
        if temperature != 1.0:
            lg = lg / temperature
        chosen = lg.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)  # [n_chunk, T-1]
        pieces.append(chosen - torch.logsumexp(lg, dim=-1))  # [n_chunk, T-1]
    return torch.cat([out[:, :1], torch.cat(pieces, dim=0)], dim=1)  # [N, T]


def token_logprobs(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    position_ids: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Run `model` on `input_ids` `[N, T]` and return log p(x_t | x_<t) `[N, T]` (0 at position 0).

    `attention_mask` `[N, T]` for right-padded rows, or None with restarting `position_ids` for packed
    rows (transformers then builds a block-diagonal causal mask). `temperature` divides the logits; use
    the sampler's temperature only if the sampler reported log-probs of the tempered distribution
    (vLLM's default "raw_logprobs" does not, so the default of 1.0 matches it).
    """
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).logits  # [N, T, V]
    return gather_logprobs(logits, input_ids, temperature)
