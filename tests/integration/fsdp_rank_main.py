"""One learner rank of tests/integration/test_fsdp_learner.py, run as a script (one process per rank).

    python fsdp_rank_main.py <spec.json>

The spec names the rank, world size, rendezvous port, policy dir, learner config overrides, the batches
file (GRPO groups as ScoredGroup bytes, SFT examples) and the plan: a list of "grpo", "sft" and
"save:<dir>" ops, optionally starting from `resume_dir`. Rank 0 writes every step's metrics and the final
weights (trainer.iter_weights) to `out`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch
from safetensors.torch import save_file

from services.config import LearnerConfig, LoRAConfig
from services.learner.batch import build_batch
from services.learner.distributed import RankInfo, destroy, init_group
from services.learner.sft import build_sft_batch
from services.learner.trainer import GRPOTrainer
from services.pb import rollout_pb2


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    info = RankInfo(spec["rank"], spec["world_size"])
    if info.sharded:
        init_group(info, "127.0.0.1", spec["port"], "cpu", timeout_s=120)
    knobs = dict(spec["learner"])
    lora = LoRAConfig(**knobs.pop("lora", {}))
    cfg = replace(LearnerConfig(), **knobs, lora=lora)
    batches = torch.load(spec["batches"], weights_only=True)
    groups = [rollout_pb2.ScoredGroup.FromString(bytes(b.tolist())) for b in batches["groups"]]
    grpo = build_batch(groups, pad_id=0, eps=cfg.adv_eps)
    examples = [(p.tolist(), c.tolist()) for p, c in zip(batches["sft_prompts"], batches["sft_completions"])]
    sft = build_sft_batch(examples, pad_id=0)
    start = spec.get("resume_dir") or spec["model_dir"]
    trainer = GRPOTrainer(start, cfg, resume=bool(spec.get("resume_dir")), rank=info)
    metrics = []
    for op in spec["plan"]:
        if op == "grpo":
            metrics.append(trainer.step(grpo))
        elif op == "sft":
            metrics.append(trainer.sft_step(sft))
        elif op.startswith("save:"):
            trainer.save(op[len("save:") :])
        else:
            raise ValueError(f"unknown op {op!r}")
    weights = dict(trainer.iter_weights())
    if info.is_leader:
        save_file(weights, spec["out"] + ".safetensors")
        open(spec["out"] + ".json", "w").write(json.dumps(metrics))
    if info.sharded:
        destroy()


if __name__ == "__main__":
    main(sys.argv[1])
