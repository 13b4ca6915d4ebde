"""`r1forge`: the Hydra main. Composes configs/, runs the pipeline, says where the results are.

r1forge                                   # the default pipeline on embedded defaults
r1forge rollout.group_size=64 learner.kl_coef=0 rollout.engine=hf
r1forge launcher.ray_address=auto redis.url=redis://redis:6379/0
r1forge resume=runs/20261123-101500             # continue a stopped run at its first unfinished stage
r1forge score rows.jsonl scored.jsonl [overrides]   # reward components per row (score_cmd.py)
r1forge report runs/r1 runs/r1_zero --out report    # side-by-side markdown + PNG (report.py)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from services.config import register_configs
from services.paths import CONFIG_DIR

# Errors caused by what the user gave us; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, ConnectionError, TimeoutError, PermissionError)
register_configs()


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def _main(cfg: DictConfig) -> None:
    from services.orchestrator.pipeline import run_pipeline

    logging.getLogger().setLevel(cfg.log_level)
    for noisy in ("vllm", "ray", "httpx", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if cfg.resume:
            from hydra.core.hydra_config import HydraConfig

            from services.orchestrator.resume import load_resumed_config

            cfg = load_resumed_config(cfg, list(HydraConfig.get().overrides.task))
        summary = run_pipeline(cfg)
    except USER_ERRORS as e:
        # Bad input (config, paths, unreachable services): one clear line, no traceback, exit 2.
        print(f"r1forge: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    run_dir = Path(cfg.run_dir).resolve()
    line = " | ".join(f"{k} {v:.3f}" for k, v in summary.items() if k.endswith("_pass1"))
    print(f"\n{line} | policy v{summary['policy_version']} | {summary['wall_s']:.0f}s", flush=True)
    print(
        f"results in {run_dir}: summary.json, metrics.jsonl, curves.png, tensorboard/, checkpoints/, "
        f"eval_*.json, manifests/",
        flush=True,
    )


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in ("score", "report"):
        from services.orchestrator import report, score_cmd

        sub = {"score": score_cmd.main, "report": report.main}[command]
        try:
            sys.exit(sub(sys.argv[2:]))
        except USER_ERRORS as e:
            print(f"r1forge {command}: error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
    sys.exit(_main())
