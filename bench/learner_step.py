"""The learner's GRPO step on a batch of mixed completion lengths: padded tokens and seconds per step.

    python bench/learner_step.py [--prompts 8] [--group 16] [--prompt-len 20] [--min-len 15] [--max-len 112]
                                 [--steps 3] [--seed 0] [overrides...]   # e.g. learner.micro_batch_size=16

One fixed batch (`prompts` groups of `group` completions with random token ids, lengths drawn uniformly from
[min-len, max-len], random rewards) is laid out by `build_batch` like a real RL step's. Prints the tokens the
model runs on: the real ones, and the padded ones when the micro-batches take the rows in batch order (the
way they did before `GRPOBatch.micro_batches` ordered them by length) and in the order it uses now; then the
seconds of one GRPO step (`GRPOTrainer.step`, the fastest of `--steps` after a warm-up one) on the model
the config names, created locally (the default tiny-qwen). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_batch(args, pad_id: int, vocab: int):
    from services.learner.batch import build_batch
    from services.pb import rollout_pb2

    rng = random.Random(args.seed)
    groups = []
    for p in range(args.prompts):
        group = rollout_pb2.ScoredGroup(
            id=rollout_pb2.TaskId(run_id="bench", prompt_id=f"p{p}"),
            prompt_token_ids=[rng.randrange(3, vocab) for _ in range(args.prompt_len)],
        )
        for i in range(args.group):
            n = rng.randint(args.min_len, args.max_len)
            group.completions.add(
                sample_index=i,
                completion_token_ids=[rng.randrange(3, vocab) for _ in range(n)],
                logprobs=[-rng.random() * 3 for _ in range(n)],
                total_reward=rng.random(),
            )
        groups.append(group)
    return build_batch(groups, pad_id=pad_id, eps=1e-6)


def padded_in_batch_order(batch, size: int) -> int:
    lengths = batch.attention_mask.sum(dim=1)
    return sum(
        int(lengths[s : s + size].max()) * len(lengths[s : s + size]) for s in range(0, len(lengths), size)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=20)
    parser.add_argument("--min-len", type=int, default=15)
    parser.add_argument("--max-len", type=int, default=112)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    import torch

    from services.config_loader import load_config
    from services.learner.trainer import GRPOTrainer
    from services.models.zoo import resolve_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config([f"model.cache_dir={tmp}", *args.overrides])
        model_dir = resolve_model_dir(cfg.model)
        trainer = GRPOTrainer(model_dir, cfg.learner)
        vocab = trainer.model.config.vocab_size
        batch = make_batch(args, trainer.tokenizer.pad_token_id or 0, vocab)
        size = cfg.learner.micro_batch_size
        real = int(batch.attention_mask.sum())
        in_order = padded_in_batch_order(batch, size)
        by_length = sum(mb.input_ids.numel() for mb in batch.micro_batches(size))
        print(f"{batch.num_sequences} rows, micro-batches of {size}, torch threads {torch.get_num_threads()}")
        print(
            f"tokens: real {real}, padded in batch order {in_order}, padded by length {by_length} "
            f"({1 - by_length / in_order:.0%} fewer)"
        )
        trainer.step(batch)  # warm-up
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            trainer.step(batch)
            times.append(time.perf_counter() - t0)
        every = ", ".join(f"{t:.3f}" for t in times)
        print(f"GRPO step: {min(times):.3f} s (fastest of {args.steps}; all {every})")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
