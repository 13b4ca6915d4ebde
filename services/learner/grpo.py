"""GRPO loss maths: group-relative advantages, the clipped surrogate, the k3 KL estimator, aggregation.

Plain torch functions with no state and no I/O, so every number can be checked by hand in a unit test
(tests/unit/learner/test_grpo.py). They follow DeepSeekMath (Shao et al., 2024, eq. 3) and the R1
report, with these deliberate choices, each the common one in TRL and verl:

- Advantages use the *unbiased* (Bessel-corrected) group standard deviation, torch's default, as TRL
  and verl do; the paper does not say which.
- The KL term is Schulman's k3 estimator of KL(pi_theta || pi_ref) per token, added inside the
  per-token loss (as in the paper) rather than folded into the reward.
- Per-token log-ratios are clamped to [-20, 20] before `exp` (as verl does) so a rare, very unlikely
  token cannot overflow to inf and poison a whole step with NaN gradients.
- Aggregation is selectable: "seq_mean" is the paper's 1/G sum_i 1/|o_i| sum_t; "token_mean" is DAPO's
  sum over all tokens / number of tokens, which does not down-weight long completions.

Shapes: B sequences in a (micro-)batch, T token positions. Masked positions (prompt, padding) may hold
anything finite; they never reach the loss or its gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOSS_AGG_MODES = ("seq_mean", "token_mean")
_MAX_LOG_RATIO = 20.0


def group_advantages(rewards: Tensor, eps: float) -> Tensor:
    """Group-relative advantages `(r - mean(r)) / (std(r) + eps)`, per group (row).

    `rewards` is `[num_groups, G]`. The standard deviation is the unbiased one (divides by G - 1), the
    torch default, as in TRL and verl. A group whose rewards are all equal gets advantages of exactly 0.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            f"rewards must be [num_groups, G] with G >= 2 (got shape {tuple(rewards.shape)}); "
            "a group of one completion has no baseline"
        )
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)  # [num_groups, 1]
    std = rewards.std(dim=1, keepdim=True)  # [num_groups, 1], unbiased
    return (rewards - mean) / (std + eps)  # [num_groups, G]


def clipped_surrogate(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_eps: float
) -> tuple[Tensor, Tensor]:
    """PPO/GRPO clipped surrogate, per token: `-min(ratio * A, clip(ratio, 1-eps, 1+eps) * A)`.

    `logp`, `old_logp`: `[B, T]`; `advantages`: `[B]` (one per sequence, GRPO) or `[B, T]`.
    Returns `(loss [B, T], clipped [B, T])` where `clipped` is 1.0 where the clipped branch is the
    active one (it changes the loss and cuts the gradient), for the clip fraction metric.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # [B, 1], broadcast over tokens
    log_ratio = (logp - old_logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    unclipped = -advantages * ratio  # [B, T]
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)  # [B, T]
    loss = torch.maximum(unclipped, clipped)  # [B, T]; max of negatives = -min
    return loss, (clipped > unclipped).float()


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi || pi_ref) per token: `exp(ref - logp) - (ref - logp) - 1` >= 0.

    `logp`, `ref_logp`: `[B, T]` log-probs of the sampled tokens; returns `[B, T]`. Unbiased for the KL
    when tokens are sampled from pi, and never negative (e^x >= 1 + x).
    """
    delta = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [B, T]
    return torch.exp(delta) - delta - 1.0  # [B, T]


def aggregate(per_token: Tensor, mask: Tensor, mode: str, normaliser: float | None = None) -> Tensor:
    """Reduce a per-token quantity `[B, T]` to a scalar over the positions where `mask` `[B, T]` is 1.

    - "seq_mean" (GRPO): mean over each sequence's tokens, then sum over sequences / `normaliser`
      (default B, i.e. the mean over sequences).
    - "token_mean" (DAPO): sum over all tokens / `normaliser` (default the number of masked tokens).

    With micro-batching pass the *whole* batch's count (sequences for "seq_mean", tokens for
    "token_mean") as `normaliser`: the micro-batch losses then add up to the full-batch loss, so
    accumulated gradients equal one big batch's gradient.
    """
    mask = mask.to(per_token.dtype)
    masked = per_token * mask  # [B, T]
    if mode == "seq_mean":
        seq_len = mask.sum(dim=1).clamp(min=1.0)  # [B]; an empty completion contributes 0
        per_seq = masked.sum(dim=1) / seq_len  # [B]
        denom = float(per_token.shape[0]) if normaliser is None else float(normaliser)
        return per_seq.sum() / denom
    if mode == "token_mean":
        denom = mask.sum().clamp(min=1.0) if normaliser is None else float(normaliser)
        return masked.sum() / denom
    raise ValueError(f"loss_agg={mode!r} is not a known aggregation; choose one of {list(LOSS_AGG_MODES)}")


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    kl_coef: float,
    loss_agg: str,
    normaliser: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO objective as a loss to minimise: aggregate(clipped surrogate + kl_coef * k3 KL).

    `logp` (with grad), `old_logp` (behaviour policy), `ref_logp` (frozen reference; may be None when
    `kl_coef` is 0): `[B, T]`; `advantages`: `[B]`; `mask`: `[B, T]`, 1 on completion tokens.
    `normaliser`: see `aggregate` (pass the whole batch's count when micro-batching).

    Returns `(loss, metrics)`. Metrics are floats averaged over this call's masked tokens (`kl`,
    `clip_frac`, `ratio_mean`, `ratio_max`, `pg_loss`), plus `num_tokens` so a caller can weight them
    across micro-batches.
    """
    if kl_coef > 0 and ref_logp is None:
        raise ValueError(
            "kl_coef > 0 needs ref_logp (the reference policy's log-probs); pass it or set kl_coef=0"
        )
    keep = mask.bool()  # [B, T]
    # Masked positions get ratio 1 and KL 0 exactly, so no stray value there can overflow.
    old_logp = torch.where(keep, old_logp, logp.detach())  # [B, T]
    pg, clipped = clipped_surrogate(logp, old_logp, advantages, clip_eps)  # [B, T] each
    per_token = pg
    kl = torch.zeros_like(pg)
    if ref_logp is not None:
        ref_logp = torch.where(keep, ref_logp, logp.detach())  # [B, T]
        kl = k3_kl(logp, ref_logp)  # [B, T]
        if kl_coef > 0:
            per_token = pg + kl_coef * kl
    loss = aggregate(per_token, mask, loss_agg, normaliser)

    with torch.no_grad():
        n = keep.sum().clamp(min=1)
        ratio = torch.exp((logp - old_logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))  # [B, T]
        metrics = {
            "pg_loss": float((pg * keep).sum() / n),
            "kl": float((kl * keep).sum() / n),
            "clip_frac": float((clipped * keep).sum() / n),
            "ratio_mean": float((ratio * keep).sum() / n),
            "ratio_max": float(ratio[keep].max()) if keep.any() else 1.0,
            "num_tokens": float(keep.sum()),
        }
    return loss, metrics
