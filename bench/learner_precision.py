"""Learner settings for a real policy on this CPU: float32 vs bfloat16 autocast, with and without gradient
checkpointing, on real rollouts.

    python bench/learner_precision.py model=smollm2-135m task=gym [overrides...]

1. vLLM (the rollout engine, float32) samples `learner.prompts_per_step` held-out prompts x
   `rollout.group_size` completions with the task's chat-template prompts, and reports their log-probs.
2. For each learner setting, in its own process (so peak memory is that setting's alone):
   - log-prob agreement with vLLM on those completions: mean and max |learner - vLLM| per completion
     token, and the largest |ratio - 1| of the importance ratio at the first update (a clipped ratio at
     step one would mean the learner trains on a distribution the sampler did not use);
   - seconds per GRPO step (the mean of 2 after a warm-up step) with random rewards;
   - peak resident memory of the process.
Prints a table and writes JSON to `bench_learner_precision.json` (or the path in $BENCH_OUT).
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

SETTINGS = {
    "float32": [],
    "bfloat16": ["learner.autocast_dtype=bfloat16"],
    "float32 + checkpointing": ["learner.gradient_checkpointing=true"],
    "bfloat16 + checkpointing": ["learner.autocast_dtype=bfloat16", "learner.gradient_checkpointing=true"],
}


def sample(overrides: list[str], out: Path) -> dict:
    """Sample the rollouts once with vLLM; pickle prompts, completions and log-probs to `out`."""
    from services.config_loader import load_config
    from services.models.zoo import resolve_model_dir
    from services.rollout.engine import SamplingSpec, make_engine
    from services.tasks import load_splits
    from services.tasks.prompts import render_chat_prompt

    cfg = load_config(overrides)
    model_dir = resolve_model_dir(cfg.model)
    engine = make_engine("vllm", model_dir, cfg.rollout)
    tok = engine.tokenizer
    problems = load_splits(cfg.task)["heldout"][: cfg.learner.prompts_per_step]
    prompts = [tok(render_chat_prompt(tok, p.question))["input_ids"] for p in problems]
    spec = SamplingSpec(
        n=cfg.rollout.group_size,
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
    )
    t0 = time.perf_counter()
    groups = engine.generate(prompts, spec)
    seconds = time.perf_counter() - t0
    engine.close()
    rows = [(p, [(c.token_ids, c.logprobs) for c in g]) for p, g in zip(prompts, groups)]
    out.write_bytes(pickle.dumps({"model_dir": str(model_dir), "rows": rows}))
    tokens = sum(len(ids) for _, g in rows for ids, _ in g)
    return {"generate_s": round(seconds, 1), "completion_tokens": tokens}


def measure(overrides: list[str], rollouts: Path) -> dict:
    """One learner setting: log-prob agreement, step time and peak memory (run in a child process)."""
    import torch

    from services.config_loader import load_config
    from services.learner.batch import build_batch
    from services.learner.logprobs import token_logprobs
    from services.learner.trainer import GRPOTrainer
    from services.pb import rollout_pb2

    cfg = load_config(overrides)
    data = pickle.loads(rollouts.read_bytes())
    gen = torch.Generator().manual_seed(0)
    groups = []
    for i, (prompt, completions) in enumerate(data["rows"]):
        rewards = torch.rand(len(completions), generator=gen).tolist()  # random, so advantages are non-zero
        groups.append(
            rollout_pb2.ScoredGroup(
                id=rollout_pb2.TaskId(run_id="bench", prompt_id=str(i)),
                prompt_token_ids=prompt,
                completions=[
                    rollout_pb2.Completion(completion_token_ids=ids, logprobs=lps, total_reward=r)
                    for (ids, lps), r in zip(completions, rewards)
                ],
            )
        )
    trainer = GRPOTrainer(data["model_dir"], cfg.learner)
    batch = build_batch(groups, trainer.tokenizer.pad_token_id, cfg.learner.adv_eps)
    mask = batch.completion_mask.bool()
    diffs = []
    with torch.no_grad():
        for mb in batch.micro_batches(cfg.learner.micro_batch_size):
            with trainer._precision():
                logp = token_logprobs(
                    trainer.model, mb.input_ids, mb.attention_mask, None, cfg.learner.temperature
                )
            m = mb.completion_mask.bool()
            diffs.append((logp[m] - mb.old_logprobs[m]).abs())
    diff = torch.cat(diffs)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        metrics = trainer.step(batch)
        times.append(time.perf_counter() - t0)
        if len(times) == 1:
            first_ratio_max = metrics["ratio_max"]
    return {
        "logprob_abs_mean": float(diff.mean()),
        "logprob_abs_max": float(diff.max()),
        "first_step_ratio_max": first_ratio_max,
        "step_s": round(sum(times[1:]) / 2, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "tokens": int(mask.sum()),
        "sequences": batch.num_sequences,
    }


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[3:], Path(sys.argv[2]))))
        return
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        rollouts = Path(tmp) / "rollouts.pkl"
        sampled = sample(overrides, rollouts)
        rows = {}
        for name, extra in SETTINGS.items():
            cmd = [sys.executable, __file__, "--measure", str(rollouts), *overrides, *extra]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows[name] = json.loads(out.strip().splitlines()[-1])
    print(f"overrides: {' '.join(overrides)}")
    print(f"vLLM sampled {sampled['completion_tokens']} completion tokens in {sampled['generate_s']} s")
    header = f"{'learner setting':<26}{'s/step':>8}{'peak GiB':>10}{'|dlogp| mean':>14}{'max':>8}"
    print(f"{header}{'ratio max':>11}")
    for name, r in rows.items():
        print(
            f"{name:<26}{r['step_s']:>8}{r['peak_rss_gib']:>10}{r['logprob_abs_mean']:>14.2e}"
            f"{r['logprob_abs_max']:>8.3f}{r['first_step_ratio_max']:>11.3f}"
        )
    out = Path(os.environ.get("BENCH_OUT", "bench_learner_precision.json"))
    out.write_text(json.dumps({"overrides": overrides, "sampled": sampled, "settings": rows}, indent=2))


if __name__ == "__main__":
    main()
