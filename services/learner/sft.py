"""Supervised fine-tuning batches: (prompt, completion) token pairs to tensors with a response-only mask.

Used by the cold-start SFT and the post-rejection-sampling SFT stages. The loss is cross-entropy on
completion tokens only (the prompt is context, not a target), and the completion always ends with the
EOS token so the policy learns to stop. `loss_mask[i, t]` is 1 where token t is a completion token,
the same "position t predicts token t" convention as `services.learner.logprobs`.

Two layouts:
- `build_sft_batch`: one example per row, right-padded, with an attention mask.
- `pack_sequences`: several examples concatenated per row (at most `max_len` tokens), greedy in
  order, with `position_ids` restarting at 0 for every example and no attention mask. transformers
  (masking_utils, >= 4.56) detects the restarts and builds a block-diagonal causal mask, so examples
  in one row do not see each other. A model whose attention does not use that machinery would
  silently attend across examples; `packing_is_exact(model)` checks a model once, and the trainer
  refuses packed batches for a model that fails it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

ItemT = TypeVar("ItemT")

Example = tuple[Sequence[int], Sequence[int]]  # (prompt_token_ids, completion_token_ids)


@dataclass
class SFTBatch:
    """One SFT step's data: N rows of T tokens."""

    input_ids: Tensor  # [N, T] long
    attention_mask: Tensor | None  # [N, T] long for padded rows; None for packed rows
    position_ids: Tensor | None  # [N, T] long for packed rows (restarting per example); None otherwise
    loss_mask: Tensor  # [N, T] float, 1 where token t is a completion token (EOS included)
    num_examples: int  # examples in the batch
    num_truncated: int = 0  # examples cut to max_len
    epoch: int = 0  # pass over the dataset this batch came from

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def micro_batches(self, size: int) -> Iterator[SFTBatch]:
        """Consecutive slices of at most `size` rows."""
        return row_slices(self, size)


def row_slices(batch, size: int) -> Iterator:
    """Consecutive slices of at most `size` rows of a batch dataclass: every tensor field is sliced (None
    stays None), the per-batch counts are 0 (they belong to the whole batch, not its micro-batches)."""
    if size < 1:
        raise ValueError(f"micro_batch_size={size} must be >= 1")
    tensors = [f.name for f in dataclasses.fields(batch) if isinstance(getattr(batch, f.name), Tensor)]
    for start in range(0, batch.input_ids.shape[0], size):
        rows = slice(start, start + size)
        yield dataclasses.replace(
            batch, **{name: getattr(batch, name)[rows] for name in tensors}, num_examples=0, num_truncated=0
        )


def _tokens(example: Example, eos_id: int | None, max_len: int | None) -> tuple[list[int], list[float], bool]:
    """Token ids, per-token loss mask and whether it was truncated, for one example."""
    prompt, completion = list(example[0]), list(example[1])
    if not prompt:
        raise ValueError("an SFT example has an empty prompt; position 0 can never be a target")
    if eos_id is not None and (not completion or completion[-1] != eos_id):
        completion.append(eos_id)
    if not completion:
        raise ValueError("an SFT example has an empty completion and no eos_id to append; nothing to learn")
    ids = prompt + completion
    mask = [0.0] * len(prompt) + [1.0] * len(completion)
    truncated = max_len is not None and len(ids) > max_len
    if truncated:
        if len(prompt) >= max_len:
            raise ValueError(
                f"an SFT prompt of {len(prompt)} tokens leaves no room for the completion within "
                f"max_len={max_len}; raise max_len or drop long prompts"
            )
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask, truncated


def build_sft_batch(
    examples: Sequence[Example], pad_id: int, eos_id: int | None = None, max_len: int | None = None
) -> SFTBatch:
    """One example per row, right-padded with `pad_id`; EOS appended to completions lacking it."""
    if not examples:
        raise ValueError("build_sft_batch needs at least one example")
    prepared = [_tokens(e, eos_id, max_len) for e in examples]
    n, width = len(prepared), max(len(ids) for ids, _, _ in prepared)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((n, width), dtype=torch.long)  # [N, T]
    loss_mask = torch.zeros((n, width), dtype=torch.float32)  # [N, T]
    for i, (ids, mask, _) in enumerate(prepared):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        loss_mask[i, : len(ids)] = torch.tensor(mask)
    return SFTBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=None,
        loss_mask=loss_mask,
        num_examples=n,
        num_truncated=sum(t for _, _, t in prepared),
    )


def pack_sequences(
    examples: Sequence[Example], max_len: int, pad_id: int, eos_id: int | None = None
) -> SFTBatch:
    """Concatenate examples greedily, in order, into rows of at most `max_len` tokens (see module doc).

    An example longer than `max_len` is truncated and gets a row of its own. Padding at the end of a
    row is a separate pseudo-example with its own restarting positions and a zero loss mask.
    """
    if not examples:
        raise ValueError("pack_sequences needs at least one example")
    if max_len < 2:
        raise ValueError(f"max_len={max_len} must be >= 2 to hold a prompt and a target token")
    rows: list[tuple[list[int], list[int], list[float]]] = []  # (ids, positions, mask) per row
    truncated = 0
    for example in examples:
        ids, mask, cut = _tokens(example, eos_id, max_len)
        truncated += cut
        if not rows or len(rows[-1][0]) + len(ids) > max_len:
            rows.append(([], [], []))
        row_ids, row_pos, row_mask = rows[-1]
        row_ids.extend(ids)
        row_pos.extend(range(len(ids)))
        row_mask.extend(mask)
    width = max(len(ids) for ids, _, _ in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)  # [N, T]
    position_ids = torch.zeros((n, width), dtype=torch.long)  # [N, T]
    loss_mask = torch.zeros((n, width), dtype=torch.float32)  # [N, T]
    for i, (ids, pos, mask) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        position_ids[i, : len(ids)] = torch.tensor(pos)
        position_ids[i, len(ids) :] = torch.arange(width - len(ids))  # padding: its own pseudo-example
        loss_mask[i, : len(ids)] = torch.tensor(mask)
    return SFTBatch(
        input_ids=input_ids,
        attention_mask=None,
        position_ids=position_ids,
        loss_mask=loss_mask,
        num_examples=len(examples),
        num_truncated=truncated,
    )


def sft_batches(
    examples: Sequence[Example],
    batch_size: int,
    seed: int,
    pad_id: int,
    eos_id: int | None = None,
    max_len: int | None = None,
    pack: bool = False,
    num_epochs: int | None = None,
) -> Iterator[SFTBatch]:
    """Yield batches of `batch_size` examples, reshuffled every epoch, for `num_epochs` (None: forever).

    The order is a pure function of `(seed, epoch)`, so a resumed run can skip to where it stopped. The
    last batch of an epoch may be smaller. With `pack=True` each batch's examples are packed into rows
    of `max_len` tokens (required then).
    """
    if pack and max_len is None:
        raise ValueError("pack=True needs max_len (the packed row length)")
    for epoch, chunk in epoch_chunks(examples, batch_size, seed, num_epochs, "sft"):
        if pack:
            batch = pack_sequences(chunk, max_len, pad_id, eos_id)
        else:
            batch = build_sft_batch(chunk, pad_id, eos_id, max_len)
        batch.epoch = epoch
        yield batch


def epoch_chunks(
    examples: Sequence[ItemT], batch_size: int, seed: int, num_epochs: int | None, what: str
) -> Iterator[tuple[int, list[ItemT]]]:
    """`(epoch, chunk)` pairs: `examples` reshuffled every epoch, cut into chunks of `batch_size` (the
    last one of an epoch may be smaller), for `num_epochs` (None: forever). The order is a pure function
    of `(seed, epoch)`. `what` names the caller's batch size knob in errors (`<what>_batch_size`)."""
    if not examples:
        raise ValueError(f"{what}_batches needs at least one example")
    if batch_size < 1:
        raise ValueError(f"{what}_batch_size={batch_size} must be >= 1")
    epoch = 0
    while num_epochs is None or epoch < num_epochs:
        order = list(range(len(examples)))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        for start in range(0, len(order), batch_size):
            yield epoch, [examples[i] for i in order[start : start + batch_size]]
        epoch += 1


@torch.no_grad()
def packing_is_exact(model: torch.nn.Module, vocab_size: int, atol: float = 1e-4) -> bool:
    """Whether `model` keeps packed examples apart: packed logits equal the examples run one by one."""
    from services.learner.logprobs import token_logprobs

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, vocab_size, (1, 5), generator=gen)  # [1, 5]
    b = torch.randint(0, vocab_size, (1, 4), generator=gen)  # [1, 4]
    device = next(model.parameters()).device
    packed = torch.cat([a, b], dim=1).to(device)  # [1, 9]
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]], device=device)  # [1, 9]
    joint = token_logprobs(model, packed, None, positions)[0]  # [9]
    alone_b = token_logprobs(model, b.to(device), torch.ones_like(b, device=device))[0]  # [4]
    # Position 5 (b's first token) has a prefix in the packed row, so compare b's later tokens only.
    return bool(torch.allclose(joint[6:], alone_b[1:], atol=atol))
