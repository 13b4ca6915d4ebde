"""Distillation from a teacher's top-k soft targets: `beta * CE + (1 - beta) * KL(p_teacher || p_student)`.

R1's distillation stage: a teacher generates completions through vLLM with the top-k log-probs of
every generated position; those soft targets are stored once (`services.tasks.soft_targets`) and a
smaller student is trained on them. This module is the pure part: the batch layout and the loss.

Convention (shared with `logprobs.py`, `sft.py` and `batch.py`): position t of every tensor refers to
token t. `input_ids[i, t]` is token t; `topk_ids[i, t]` / `topk_logprobs[i, t]` are the teacher's top-k
for the step that *generated* token t (what vLLM reports alongside output token t); `loss_mask[i, t]`
is 1 where token t is a completion token with teacher targets. `distill_loss` takes the student's raw
`[N, T, V]` logits as the model returns them and does the one shift itself (the logits at t - 1 predict
token t), so a caller passes `model(batch.input_ids).logits` and the batch tensors unchanged. Position 0
has no prefix and can never be a target.

The KL term: over k + 1 buckets, the teacher's k tokens and "the rest of the vocabulary":
- teacher: p_i = exp(teacher log-prob) for its k ids (vLLM reports log_softmax over V, so they sum to
  S_t <= 1), and p_rest = 1 - S_t;
- student: q_i = its full-vocabulary softmax at the same ids, and q_rest = 1 - sum_k q_i (computed as a
  logsumexp over the other logits, so it is exact even when tiny);
- KL = sum_k p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest).
This is the KL between the two distributions coarse-grained onto those buckets: >= 0, 0 exactly when the
student gives each of the teacher's tokens, and the rest together, the teacher's probability, and never
more than the full-vocabulary KL (data processing). Two alternatives were worse:
- renormalising both sides over the k ids (a KL of the shapes within the top-k) leaves the student's mass
  outside the top-k free: on our task a student trained with beta 0.1 put probability on tokens the
  teacher never chose and fell to 0.03 held-out pass@1 (0.13 for SFT alone, same data);
- the student unrenormalised and the teacher renormalised asks for all of the student's mass on the
  top-k, sharper than the teacher, who left 1 - S_t outside them.

`temperature` divides the student's logits in both terms (as `gather_logprobs` does); the teacher's
log-probs are used as stored. Logits are upcast to float32. Masked positions (prompt, padding) may hold
any in-vocabulary ids and any log-probs (even -inf or NaN): they are replaced before any arithmetic, so
they reach neither the loss nor its gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from services.learner.sft import epoch_chunks, row_slices

# (prompt_token_ids, completion_token_ids, topk_ids [L][K], topk_logprobs [L][K]) with L completion tokens
DistillExample = tuple[Sequence[int], Sequence[int], Sequence[Sequence[int]], Sequence[Sequence[float]]]


def distill_loss(
    student_logits: Tensor,
    target_ids: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    loss_mask: Tensor,
    beta: float,
    temperature: float = 1.0,
    normaliser: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """`beta * CE + (1 - beta) * KL` over the teacher's top-k + rest buckets, averaged over the masked
    tokens (see module doc).

    `student_logits` `[N, T, V]` (raw model output: the logits at t predict token t + 1);
    `target_ids` `[N, T]` long (the row's tokens, i.e. `input_ids`); `topk_ids` `[N, T, K]` long and
    `topk_logprobs` `[N, T, K]` (the teacher's top-k for the step that generated token t);
    `loss_mask` `[N, T]`, 1 on completion tokens (must be 0 at position 0).
    `normaliser`: the token count to divide by (default: this call's masked tokens); with
    micro-batching pass the whole batch's count so the micro-batch losses add up to the full one.

    Returns `(loss, metrics)`; metrics are floats over this call's masked tokens: `loss`, `ce`, `kl`,
    `tokens`, and `teacher_top1_agreement`, the fraction of tokens where the student's argmax equals
    the teacher's most likely id (the argmax of `topk_logprobs`, so the top-k need not be sorted).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta} must be in [0, 1] (the weight of CE; 1 - beta weighs the KL)")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 to define log-probs")
    n, t, _ = student_logits.shape
    if target_ids.shape != (n, t) or loss_mask.shape != (n, t):
        raise ValueError(
            f"target_ids {tuple(target_ids.shape)} and loss_mask {tuple(loss_mask.shape)} must both be "
            f"[N, T] = {(n, t)} to match student_logits {tuple(student_logits.shape)}"
        )
    if topk_ids.shape != topk_logprobs.shape or topk_ids.shape[:2] != (n, t) or topk_ids.shape[2] < 1:
        raise ValueError(
            f"topk_ids {tuple(topk_ids.shape)} and topk_logprobs {tuple(topk_logprobs.shape)} must both "
            f"be [N, T, K] with N, T = {(n, t)} and K >= 1"
        )
    if bool(loss_mask[:, 0].any()):
        raise ValueError("loss_mask is set at position 0, which has no prefix to predict it from")

    # The shift: logits at t - 1 predict token t, so drop the last logits and the first targets.
    keep = loss_mask[:, 1:].bool()  # [N, T-1]
    lg = student_logits[:, :-1].float()  # [N, T-1, V]
    if temperature != 1.0:
        lg = lg / temperature
    targets = target_ids[:, 1:]  # [N, T-1]
    # Masked positions get id 0 and uniform teacher log-probs, so nothing there can be NaN.
    ids = torch.where(keep.unsqueeze(-1), topk_ids[:, 1:], 0)  # [N, T-1, K]
    t_lp = torch.where(keep.unsqueeze(-1), topk_logprobs[:, 1:].float(), 0.0)  # [N, T-1, K]

    # CE = -log q_s(target) = logsumexp(z) - z[target], without materialising a [N, T-1, V] log-softmax.
    ce = torch.logsumexp(lg, dim=-1) - lg.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T-1]

    # KL over k + 1 buckets (module doc): the teacher's k tokens and "everything else", on both sides.
    log_z = torch.logsumexp(lg, dim=-1, keepdim=True)  # [N, T-1, 1]
    log_q = lg.gather(-1, ids) - log_z  # [N, T-1, K] student full-vocabulary log-probs at the k ids
    log_q_rest = torch.logsumexp(lg.scatter(-1, ids, -float("inf")), dim=-1) - log_z.squeeze(-1)  # [N, T-1]
    p = t_lp.exp()  # [N, T-1, K]
    p_rest = (1.0 - p.sum(dim=-1)).clamp(min=0.0)  # [N, T-1]
    # A teacher log-prob of -inf gives p = 0, and 0 * log 0 counts as 0.
    kl_k = torch.where(p > 0, p * (t_lp - log_q), 0.0).sum(dim=-1)  # [N, T-1]
    kl_rest = torch.where(p_rest > 0, p_rest * (p_rest.clamp(min=1e-30).log() - log_q_rest), 0.0)  # [N, T-1]
    kl = kl_k + kl_rest  # [N, T-1]

    per_token = beta * ce + (1.0 - beta) * kl  # [N, T-1]
    mask = keep.float()  # [N, T-1]
    denom = mask.sum().clamp(min=1.0) if normaliser is None else float(normaliser)
    loss = (per_token * mask).sum() / denom

    with torch.no_grad():
        count = mask.sum().clamp(min=1.0)
        teacher_top1 = ids.gather(-1, t_lp.argmax(dim=-1, keepdim=True)).squeeze(-1)  # [N, T-1]
        agree = (lg.argmax(dim=-1) == teacher_top1).float()  # [N, T-1]
        metrics = {
            "loss": float((per_token * mask).sum() / count),
            "ce": float((ce * mask).sum() / count),
            "kl": float((kl * mask).sum() / count),
            "tokens": float(mask.sum()),
            "teacher_top1_agreement": float((agree * mask).sum() / count),
        }
    return loss, metrics


@dataclass
class DistillBatch:
    """One distillation step's data: N right-padded rows of T tokens with the teacher's top-k per token."""

    input_ids: Tensor  # [N, T] long: prompt + completion, then pad_id
    attention_mask: Tensor  # [N, T] long: 1 on real tokens
    loss_mask: Tensor  # [N, T] float: 1 where token t is a completion token (it has teacher targets)
    topk_ids: Tensor  # [N, T, K] long: teacher top-k for the step that generated token t; 0 where masked
    topk_logprobs: Tensor  # [N, T, K] float: their full-vocabulary log-probs; 0.0 where masked
    num_examples: int  # examples in the batch
    num_truncated: int = 0  # examples cut to max_len
    epoch: int = 0  # pass over the dataset this batch came from

    @property
    def target_ids(self) -> Tensor:
        """`[N, T]`: the token at each position, i.e. `input_ids` (`distill_loss` does the shift)."""
        return self.input_ids

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def micro_batches(self, size: int) -> Iterator[DistillBatch]:
        """Consecutive slices of at most `size` rows."""
        return row_slices(self, size)


def _check_example(example: DistillExample, k: int, index: int) -> None:
    """ValueError naming the example if its parts do not line up (one top-k list of k per token)."""
    prompt, completion, topk_ids, topk_logprobs = example
    if not prompt:
        raise ValueError(f"distill example {index} has an empty prompt; position 0 can never be a target")
    if not completion:
        raise ValueError(f"distill example {index} has an empty completion; nothing to learn")
    if len(topk_ids) != len(completion) or len(topk_logprobs) != len(completion):
        raise ValueError(
            f"distill example {index}: {len(completion)} completion tokens but {len(topk_ids)} topk_ids "
            f"and {len(topk_logprobs)} topk_logprobs rows; there must be one of each per token"
        )
    for j, (ids, lps) in enumerate(zip(topk_ids, topk_logprobs)):
        if len(ids) != k or len(lps) != k:
            raise ValueError(
                f"distill example {index}, completion token {j}: {len(ids)} topk_ids and {len(lps)} "
                f"topk_logprobs, expected k={k} of each"
            )


def build_distill_batch(
    examples: Sequence[DistillExample], pad_id: int, k: int, max_len: int | None = None
) -> DistillBatch:
    """One example per row, right-padded with `pad_id`; completion token j's targets sit at P + j.

    With a prompt of P tokens, completion token j is `input_ids[i, P + j]` and its teacher top-k
    (`topk_ids[j]` of the example) is `topk_ids[i, P + j]`; the student logits that predict it are at
    P + j - 1 (`distill_loss` does that shift). Prompt and padding positions have `loss_mask` 0, ids 0
    and log-probs 0.0. `max_len` cuts long rows (prompt + at least one completion token must fit).

    No EOS is appended, unlike `build_sft_batch`: a completion that ended naturally already carries the
    teacher's EOS with its soft targets, and one cut off at the token limit has no teacher target for a
    stop, so appending one would teach stopping mid-thought on a made-up target. Drop truncated
    completions when building the dataset instead.
    """
    if not examples:
        raise ValueError("build_distill_batch needs at least one example")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1 (teacher log-probs per position)")
    rows = []  # (ids, mask, topk ids, topk logprobs) per row, all of the row's length
    truncated = 0
    for index, example in enumerate(examples):
        _check_example(example, k, index)
        prompt, completion, c_ids, c_lps = example
        ids = list(prompt) + list(completion)
        mask = [0.0] * len(prompt) + [1.0] * len(completion)
        t_ids = [[0] * k] * len(prompt) + [list(r) for r in c_ids]
        t_lps = [[0.0] * k] * len(prompt) + [list(r) for r in c_lps]
        if max_len is not None and len(ids) > max_len:
            if len(prompt) >= max_len:
                raise ValueError(
                    f"a distill prompt of {len(prompt)} tokens leaves no room for the completion within "
                    f"max_len={max_len}; raise max_len or drop long prompts"
                )
            ids, mask, t_ids, t_lps = ids[:max_len], mask[:max_len], t_ids[:max_len], t_lps[:max_len]
            truncated += 1
        rows.append((ids, mask, t_ids, t_lps))
    n, width = len(rows), max(len(r[0]) for r in rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((n, width), dtype=torch.long)  # [N, T]
    loss_mask = torch.zeros((n, width), dtype=torch.float32)  # [N, T]
    topk_ids = torch.zeros((n, width, k), dtype=torch.long)  # [N, T, K]
    topk_logprobs = torch.zeros((n, width, k), dtype=torch.float32)  # [N, T, K]
    for i, (ids, mask, t_ids, t_lps) in enumerate(rows):
        length = len(ids)
        input_ids[i, :length] = torch.tensor(ids)
        attention_mask[i, :length] = 1
        loss_mask[i, :length] = torch.tensor(mask)
        topk_ids[i, :length] = torch.tensor(t_ids, dtype=torch.long)  # [length, K]
        topk_logprobs[i, :length] = torch.tensor(t_lps, dtype=torch.float32)  # [length, K]
    return DistillBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        topk_ids=topk_ids,
        topk_logprobs=topk_logprobs,
        num_examples=n,
        num_truncated=truncated,
    )


def distill_batches(
    examples: Sequence[DistillExample],
    batch_size: int,
    seed: int,
    pad_id: int,
    k: int,
    max_len: int | None = None,
    num_epochs: int | None = None,
) -> Iterator[DistillBatch]:
    """Yield batches of `batch_size` examples, reshuffled every epoch, for `num_epochs` (None: forever).

    Same order rule as `sft_batches`: a pure function of `(seed, epoch)`, so a resumed run can skip to
    where it stopped. The last batch of an epoch may be smaller.
    """
    for epoch, chunk in epoch_chunks(examples, batch_size, seed, num_epochs, "distill"):
        batch = build_distill_batch(chunk, pad_id, k, max_len)
        batch.epoch = epoch
        yield batch
