"""LoRA against full fine-tuning in the learner: peak memory, GRPO step time and weight-publish time.

    python bench/lora.py [--ranks 8,32] [--prompts 4] [--group 4] [--prompt-len 32] [--completion-len 96]
                         [--steps 3] [overrides...]      # e.g. model=smollm2-135m learner.micro_batch_size=4

One fixed GRPO batch (random token ids, `prompts` groups of `group` completions, random rewards, behaviour
log-probs from the starting policy at `learner.temperature`, so the first ratios are 1) is trained by each
setting in its own process, so that peak memory is that setting's alone: full fine-tuning
(`learner.lora.rank=0`, which also loads the frozen KL reference copy when `learner.kl_coef > 0`), then
LoRA at each rank (reference = the base with the adapter off). Per setting: trainable parameters, AdamW
state size, seconds per GRPO step (the fastest of `--steps` after a warm-up step: the one least disturbed
by other load on a shared machine), seconds to publish the weights (`state_dict_safetensors`: merged, for
LoRA), and resident memory (Linux /proc): after loading (policy, reference, batch), the peak while
training (VmHWM, reset after loading), the peak while publishing (reset after training); the JSON also
has the process's peak (ru_maxrss, loading included).
Prints a table and writes JSON to `bench_lora.json` (or the path in $BENCH_OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _batch(trainer, args, seed: int = 0):
    """The fixed GRPO batch: the same token ids and rewards in every setting (seeded)."""
    import torch

    from services.learner.batch import build_batch
    from services.learner.logprobs import token_logprobs
    from services.pb import rollout_pb2

    gen = torch.Generator().manual_seed(seed)
    vocab = trainer.model.config.get_text_config().vocab_size
    groups = []
    for i in range(args.prompts):
        prompt = torch.randint(0, vocab, (args.prompt_len,), generator=gen).tolist()
        group = rollout_pb2.ScoredGroup(id=rollout_pb2.TaskId(run_id="bench", prompt_id=str(i)))
        group.prompt_token_ids.extend(prompt)
        for j in range(args.group):
            completion = torch.randint(0, vocab, (args.completion_len,), generator=gen).tolist()
            row = torch.tensor([prompt + completion])
            with torch.no_grad():
                lp = token_logprobs(trainer.model, row, None, None, trainer.cfg.temperature)[0, len(prompt) :]
            reward = float(torch.rand((), generator=gen))
            group.completions.add(
                sample_index=j, completion_token_ids=completion, logprobs=lp.tolist(), total_reward=reward,
                status=rollout_pb2.REWARD_STATUS_OK,
            )  # fmt: skip
        groups.append(group)
    return build_batch(groups, pad_id=0, eps=trainer.cfg.adv_eps)


def _status_gib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: its peak), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 2**20, 2)
    raise KeyError(field)


def measure(overrides: list[str], args) -> dict:
    """One setting, in this (child) process."""
    from services.config_loader import load_config
    from services.learner.trainer import GRPOTrainer
    from services.models.zoo import resolve_model_dir

    cfg = load_config(overrides)
    trainer = GRPOTrainer(resolve_model_dir(cfg.model), cfg.learner)
    batch = _batch(trainer, args)
    loaded_gib = _status_gib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) here: training alone from now
    times = []
    for _ in range(1 + args.steps):
        t0 = time.perf_counter()
        trainer.step(batch)
        times.append(time.perf_counter() - t0)
    train_peak_gib = _status_gib("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    payload = trainer.state_dict_safetensors()
    publish_s = time.perf_counter() - t0
    state = [t for s in trainer.optimizer.state.values() for t in s.values() if hasattr(t, "numel")]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "trainable_params": trainable,
        "total_params": sum(p.numel() for p in trainer.model.parameters()),
        "optimizer_state_mib": round(sum(t.numel() * t.element_size() for t in state) / 2**20, 2),
        "step_s": round(min(times[1:]), 3),
        "step_s_all": [round(t, 3) for t in times],
        "publish_s": round(publish_s, 3),
        "payload_mib": round(len(payload) / 2**20, 1),
        "loaded_rss_gib": loaded_gib,
        "train_peak_rss_gib": train_peak_gib,
        "publish_peak_rss_gib": _status_gib("VmHWM"),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "sequences": batch.num_sequences,
        "completion_tokens": batch.num_tokens,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", default="8,32", help="comma-separated LoRA ranks to compare with full FT")
    p.add_argument("--prompts", type=int, default=4, help="groups in the batch")
    p.add_argument("--group", type=int, default=4, help="completions per group")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--completion-len", type=int, default=96)
    p.add_argument("--steps", type=int, default=3, help="timed GRPO steps after a warm-up one (min shown)")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args, overrides = _parser().parse_known_args()
    if args.measure:
        print(json.dumps(measure(overrides, args)))
        return
    settings = {"full fine-tuning": ["learner.lora.rank=0"]}
    for rank in (int(r) for r in args.ranks.split(",")):
        settings[f"LoRA r={rank}"] = [f"learner.lora.rank={rank}", f"learner.lora.alpha={2 * rank}"]
    keys = ("prompts", "group", "prompt_len", "completion_len", "steps")
    shape = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]
    rows = {}
    for name, extra in settings.items():
        cmd = [sys.executable, __file__, "--measure", *shape, *overrides, *extra]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    first = next(iter(rows.values()))
    print(f"overrides: {' '.join(overrides) or '(defaults)'}")
    print(f"batch: {first['sequences']} sequences, {first['completion_tokens']} completion tokens; "
          f"{first['total_params'] / 1e6:.1f}M parameters")  # fmt: skip
    full = rows["full fine-tuning"]
    print(f"{'setting':<18}{'trainable':>12}{'AdamW MiB':>11}{'s/step':>9}{'x full':>8}{'publish s':>11}"
          f"{'loaded GiB':>12}{'train peak':>12}{'x full':>8}{'publish peak':>14}")  # fmt: skip
    for name, r in rows.items():
        print(
            f"{name:<18}{r['trainable_params']:>12,}{r['optimizer_state_mib']:>11}{r['step_s']:>9}"
            f"{r['step_s'] / full['step_s']:>8.2f}{r['publish_s']:>11}{r['loaded_rss_gib']:>12}"
            f"{r['train_peak_rss_gib']:>12}{r['train_peak_rss_gib'] / full['train_peak_rss_gib']:>8.2f}"
            f"{r['publish_peak_rss_gib']:>14}"
        )
    out = Path(os.environ.get("BENCH_OUT", "bench_lora.json"))
    out.write_text(json.dumps({"overrides": overrides, "args": vars(args), "settings": rows}, indent=2))


if __name__ == "__main__":
    main()
