"""What the user sees of a run: metrics.jsonl, TensorBoard events, one log line per step, a PNG.

Every metric goes to all three sinks through `MetricsLog.log`, so the JSONL, TensorBoard and the plot
never disagree. The plot is redrawn from metrics.jsonl at the end of each stage.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

# Curves drawn in curves.png: (stage, metric, panel title).
CURVES = [
    ("cold_start_sft", "loss", "SFT loss"),
    ("rl", "reward", "RL mean reward"),
    ("rl", "reward_accuracy", "RL accuracy (train rollouts)"),
    ("rl", "reward_gym", "RL reasoning-gym score (train rollouts)"),
    ("rl", "kl", "KL to reference"),
    ("rl", "clip_frac", "clip fraction"),
    ("rl", "response_len", "response length (tokens)"),
    ("rl", "moe_balance_coef", "MoE load balance (1 = even)"),
    ("rl", "language_mixing_rate", "RL language mixing rate"),
    ("reward_model", "loss", "reward model Bradley-Terry loss"),
    ("sft", "loss", "SFT (rejection-sampled data) loss"),
    ("rl_general", "addition/reward_accuracy", "RL stage 2: reasoning accuracy"),
    ("rl_general", "general/reward_reward_model", "RL stage 2: reward model (general prompts)"),
    ("distill", "kl", "distillation KL(teacher || student)"),
    ("distill", "ce", "distillation CE"),
]


class MetricsLog:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, stage: str, step: int, metrics: dict) -> None:
        row = {"stage": stage, "step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                self.tb.add_scalar(f"{stage}/{k}", v, step)

    def close(self) -> None:
        self.tb.close()


def _plain(v):
    return float(v) if hasattr(v, "item") else v


def read_metrics(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def plot_curves(metrics_path: Path, out_png: Path, evals: dict[str, float] | None = None) -> Path:
    """Draw the training curves (and held-out pass@1 per eval point) into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    panels = [(s, m, t) for s, m, t in CURVES if any(r["stage"] == s and m in r for r in rows)]
    n = len(panels) + (1 if evals else 0)
    cols = 3
    fig, axes = plt.subplots(
        max(1, math.ceil(n / cols)), cols, figsize=(4.2 * cols, 3.2 * math.ceil(n / cols)), squeeze=False
    )
    for ax, (stage, metric, title) in zip(axes.flat, panels):
        pts = [(r["step"], r[metric]) for r in rows if r["stage"] == stage and metric in r]
        ax.plot(*zip(*pts), lw=1.2)
        ax.set_title(title)
        ax.set_xlabel(f"{stage} step")
        ax.grid(alpha=0.3)
    if evals:
        ax = axes.flat[len(panels)]
        ax.bar(list(evals), list(evals.values()), color=["#888", "#2a7"][: len(evals)] * len(evals))
        ax.set_ylim(0, 1)
        ax.set_title("held-out pass@1")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for i, v in enumerate(evals.values()):
            ax.text(i, v + 0.02, f"{v:.3f}", ha="center")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
