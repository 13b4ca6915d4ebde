"""Reward throughput: completions scored per second by each scorer, in process and over gRPC, in one run.

    python bench/reward_throughput.py [overrides...]     # e.g. reward.verify_workers=4
    python bench/reward_throughput.py reward.scorers=[accuracy,format,language,reward_model] \
        reward.reward_model_path=runs/<run>/checkpoints/reward_model

Every scorer in `reward.scorers` is measured (by default accuracy, format, language; the reward model
needs a trained checkpoint). Scores the same batches of realistic completions (the task's worked
solutions, half of them with a wrong answer) with each scorer called directly, then through a real
gRPC server on 127.0.0.1 with the RewardClient the rollout workers use. Prints a table with the
ratio and writes JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from services.config_loader import load_config
from services.reward.client import RewardClient
from services.reward.scorer import ScoreInput, make_scorer
from services.reward.server import build_server
from services.tasks.arithmetic import make_splits, worked_solution
from services.tasks.prompts import render_prompt

BATCH, BATCHES = 16, 20  # one group of 16 per call, as a rollout worker sends them


def make_items(cfg) -> list[list[ScoreInput]]:
    problems = make_splits(cfg.task)["train"][: BATCH * BATCHES]
    items = []
    for i, p in enumerate(problems):
        text = worked_solution(p)
        if i % 2:
            text = text.replace(f"<answer>{p.answer}</answer>", f"<answer>{int(p.answer) + 1}</answer>")
        items.append(ScoreInput(i % BATCH, render_prompt(f"What is {p.question}?"), text, p.answer, "en"))
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def rate(score, batches) -> float:
    score(batches[0])  # warm-up (starts the verifier processes)
    t0 = time.perf_counter()
    for batch in batches:
        score(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def main() -> None:
    cfg = load_config(sys.argv[1:])
    batches = make_items(cfg)
    rows = []
    for name in cfg.reward.scorers:
        scorer = make_scorer(name, cfg.reward)
        in_process = rate(scorer.score, batches)
        server, port = build_server(scorer, cfg.reward)
        server.start()
        client = RewardClient(f"127.0.0.1:{port}", cfg.reward)
        over_grpc = rate(client.score, batches)
        client.close()
        server.stop(1).wait()
        scorer.close()
        rows.append(
            {"scorer": name, "in_process_per_s": round(in_process, 1), "grpc_per_s": round(over_grpc, 1)}
        )
    print(f"batches of {BATCH}, {BATCHES} batches, verify_workers={cfg.reward.verify_workers}")
    print(f"{'scorer':<10}{'in-process/s':>14}{'gRPC/s':>10}{'gRPC/in-process':>17}")
    for r in rows:
        print(
            f"{r['scorer']:<10}{r['in_process_per_s']:>14}{r['grpc_per_s']:>10}"
            f"{r['grpc_per_s'] / r['in_process_per_s']:>17.2f}"
        )
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_throughput.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
