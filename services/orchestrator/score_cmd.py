"""`r1forge score`: score a JSONL file of prompt/completion rows and write every reward component per row.

    r1forge score rows.jsonl scored.jsonl
    r1forge score rows.jsonl scored.jsonl reward.scorers=[accuracy,format,language]
    r1forge score rows.jsonl scored.jsonl +reward.addresses.accuracy=reward-host:50051

The scorers are `reward.scorers`, weighted by `reward.stage_weights.score` when set, else by the
`reward.w_*` defaults. A scorer with an address in `reward.addresses` is called there (a running
service); every other one is started here as a local process, exactly as a training run starts it,
and stopped at the end. Row format and output fields: `services.reward.batch_score`.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("r1forge.score")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="r1forge score", description="Score a JSONL file of prompt/completion rows."
    )
    parser.add_argument(
        "input", help="JSONL with 'prompt' and 'completion' (+ optional 'answer', 'language')"
    )
    parser.add_argument("output", help="JSONL to write: each input row plus its reward components")
    parser.add_argument("--chunk", type=int, default=64, help="rows per Score call")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. reward.scorers=[accuracy]")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    from services.config import reward_errors
    from services.config_loader import load_config
    from services.orchestrator.reward_procs import RewardProcesses, bring_up, check_given
    from services.reward.batch_score import read_rows, score_rows, summarize
    from services.reward.client import RewardClient
    from services.reward.combine import reward_weights
    from services.tasks.datasets import write_jsonl

    args = parse_args(argv)
    cfg = load_config(args.overrides)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rw = cfg.reward
    errors = reward_errors(rw, trains_reward_model=False)
    if errors:
        raise ValueError("invalid configuration:\n  " + "\n  ".join(errors))
    rows = read_rows(args.input)  # the whole file is validated before any service starts
    weights = reward_weights(rw, "score")
    given = [s for s in weights if s in rw.addresses]
    check_given(rw, given, cfg.launcher.start_timeout_s)
    procs = RewardProcesses()
    try:
        started = bring_up(procs, rw, [s for s in weights if s not in given], cfg.launcher.start_timeout_s)
        addresses = {s: rw.addresses[s] if s in given else started[s] for s in weights}
        clients = {name: RewardClient(addr, rw) for name, addr in addresses.items()}
        try:
            scored = score_rows(rows, clients, weights, args.chunk)
        finally:
            for client in clients.values():
                client.close()
    finally:
        procs.stop()
    write_jsonl(args.output, scored)
    summary = summarize(scored)
    parts = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()]
    print(f"scored {' | '.join(parts)} -> {args.output}", flush=True)
    return 0
