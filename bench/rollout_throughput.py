"""Rollout throughput: vLLM (CPU backend) against transformers `generate`, the alternative a user would pick.

    python bench/rollout_throughput.py [overrides...]    # e.g. rollout.group_size=64

Samples `prompts` groups of `rollout.group_size` completions from the zoo policy with each engine,
in one process, and prints completions/s and generated tokens/s, plus their ratio; writes JSON.
Both engines sample the same prompts with the same settings; the first call of each is a warm-up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

from services.config_loader import load_config  # noqa: E402
from services.models.zoo import resolve_model_dir  # noqa: E402
from services.rollout.engine import SamplingSpec, make_engine  # noqa: E402
from services.tasks import load_splits  # noqa: E402
from services.tasks.prompts import render_prompt  # noqa: E402

PROMPTS = 8


def measure(name: str, cfg, model_dir, prompts: list[list[int]]) -> dict:
    engine = make_engine(name, model_dir, cfg.rollout)
    spec = SamplingSpec(n=cfg.rollout.group_size, max_new_tokens=cfg.rollout.max_new_tokens, temperature=1.0)
    engine.generate(prompts[:1], spec)  # warm-up
    t0 = time.perf_counter()
    groups = engine.generate(prompts, spec)
    dt = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for g in groups for c in g)
    engine.close()
    return {
        "engine": name,
        "seconds": round(dt, 2),
        "completions_per_s": round(PROMPTS * spec.n / dt, 1),
        "tokens_per_s": round(tokens / dt, 1),
    }


def main() -> None:
    cfg = load_config(sys.argv[1:])
    model_dir = resolve_model_dir(cfg.model)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    problems = load_splits(cfg.task)["heldout"][:PROMPTS]
    prompts = [tok(render_prompt(p.question))["input_ids"] for p in problems]
    rows = [measure(name, cfg, model_dir, prompts) for name in ("vllm", "hf")]
    print(
        f"group_size={cfg.rollout.group_size} prompts={PROMPTS} max_new_tokens={cfg.rollout.max_new_tokens}"
    )
    print(f"{'engine':<8}{'seconds':>10}{'compl/s':>10}{'tokens/s':>11}")
    for r in rows:
        print(f"{r['engine']:<8}{r['seconds']:>10}{r['completions_per_s']:>10}{r['tokens_per_s']:>11}")
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    print(f"vllm / hf tokens/s: {ratio:.1f}x")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "rollout_throughput.json").write_text(json.dumps({"rows": rows, "vllm_over_hf": ratio}, indent=2))


if __name__ == "__main__":
    main()
