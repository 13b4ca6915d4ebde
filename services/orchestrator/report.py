"""`r1forge report`: runs side by side, as markdown and a PNG (the tiny analogue of R1's R1-Zero vs R1 table).

    r1forge report runs/r1 runs/r1_zero --out report     # report/report.md, report/report.png

For each run directory it reads what the run left (config.yaml, summary.json, eval_*.json, manifests/)
and reports: the pipeline, how the policy was initialised, the rewards its RL used, held-out pass@1
(with its standard error) and maj@k before any training (the run's first eval, when it evaluated the
starting policy) and after (its last eval), the format rate, the language-mixing rate, the mean response
length at the last eval and over RL training (first and last RL step, and a curve in the PNG from
metrics.jsonl), and the wall time. Pure reading: nothing is started.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from services.config import R1ForgeConfig

# Pipeline stages whose presence before the first RL stage means "started from labelled data".
_SFT_STAGES = ("cold_start_sft", "sft")
_RL_STAGES = ("rl", "rl_general")


def summarize_run(run_dir: str | Path) -> dict:
    """One report row from a finished run directory; ValueError naming what is missing."""
    run = Path(run_dir)
    for name in ("config.yaml", "summary.json"):
        if not (run / name).is_file():
            raise ValueError(f"{run}: no {name}; is it the directory of a finished r1forge run?")
    # Onto the schema, so runs saved before a config key existed read its default.
    cfg = OmegaConf.merge(OmegaConf.structured(R1ForgeConfig), OmegaConf.load(run / "config.yaml"))
    summary = json.loads((run / "summary.json").read_text())
    stages = list(cfg.pipeline.stages)
    manifests = sorted((run / "manifests").glob("*.json"))
    evals = _evals(run, manifests)
    final_eval = evals[-1]
    before = evals[0] if stages[0] == "eval" and len(evals) > 1 else {}
    lengths = _rl_response_lengths(run)
    first_rl = next((i for i, s in enumerate(stages) if s in _RL_STAGES), len(stages))
    init = "cold-start SFT" if any(s in _SFT_STAGES for s in stages[:first_rl]) else "base policy (no SFT)"
    k = final_eval.get("samples_per_prompt", 1)
    return {
        "run": run.name,
        "pipeline": cfg.pipeline.name,
        "stages": " → ".join(stages),
        "initialization": init,
        "rewards": _rewards(cfg, stages),
        "final_policy": final_eval.get("label", "-"),
        "pass1_before": before.get("pass1"),
        "maj_k_before": before.get(f"maj@{before.get('samples_per_prompt', 1)}"),
        "pass1": final_eval.get("pass1"),
        "pass1_stderr": final_eval.get("pass1_stderr"),
        "maj_k": final_eval.get(f"maj@{k}"),
        "format_rate": final_eval.get("format_rate"),
        "language_mixing_rate": final_eval.get("language_mixing_rate"),
        "response_len": final_eval.get("response_len"),
        "rl_response_len": lengths,
        "rl_response_len_first": lengths[0][1] if lengths else None,
        "rl_response_len_last": lengths[-1][1] if lengths else None,
        "wall_s": summary.get("wall_s"),
        "evals": {k_.removesuffix("_pass1"): v for k_, v in summary.items() if k_.endswith("_pass1")},
    }


def _evals(run: Path, manifests: list[Path]) -> list[dict]:
    """Outputs of the run's eval stages, in pipeline order (manifests are named by stage index)."""
    evals = [m for m in (json.loads(path.read_text()) for path in manifests) if m["stage"] == "eval"]
    if not evals:
        raise ValueError(f"{run}: the pipeline has no eval stage, so there is nothing to compare")
    return [m["outputs"] for m in evals]


def _rl_response_lengths(run: Path) -> list[tuple[int, float]]:
    """(RL step across all RL stages, mean completion length) from metrics.jsonl; empty when absent."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lengths = [r["response_len"] for r in rows if r.get("stage") in _RL_STAGES and "response_len" in r]
    return list(enumerate(lengths, start=1))


def _rewards(cfg, stages: list[str]) -> str:
    """The rewards the run's RL stages weighted (non-zero), per stage."""
    from services.reward.combine import reward_weights

    parts = []
    for stage in [s for s in stages if s in _RL_STAGES]:
        sources = [cfg.task.name, "general"] if stage == "rl_general" else [cfg.task.name]
        for source in sources:
            w = reward_weights(cfg.reward, stage, source)
            used = "+".join(name for name, v in w.items() if v)
            parts.append(f"{stage}{'/' + source if stage == 'rl_general' else ''}: {used}")
    return "; ".join(parts) or "none (no RL stage)"


def render_markdown(rows: list[dict]) -> str:
    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)

    header = ["", *[r["run"] for r in rows]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    fields = [
        ("pipeline", "pipeline", None),
        ("initialization", "initialization", None),
        ("rewards used", "rewards", None),
        ("final policy evaluated", "final_policy", None),
        ("held-out pass@1 before training", "pass1_before", ".3f"),
        ("held-out pass@1 after", "pass1", ".3f"),
        ("standard error of pass@1 after", "pass1_stderr", ".3f"),
        ("held-out maj@k before (k = eval.num_samples)", "maj_k_before", ".3f"),
        ("held-out maj@k after", "maj_k", ".3f"),
        ("format rate", "format_rate", ".3f"),
        ("language-mixing rate", "language_mixing_rate", ".3f"),
        ("mean response length at the last eval (tokens)", "response_len", ".1f"),
        ("mean response length, first -> last RL step", "rl_len", None),
        ("wall time (s)", "wall_s", ".0f"),
    ]
    for r in rows:
        first, last = r["rl_response_len_first"], r["rl_response_len_last"]
        r["rl_len"] = "-" if first is None else f"{first:.1f} -> {last:.1f}"
    for title, key, spec in fields:
        lines.append("| " + " | ".join([title, *[fmt(r[key], spec or "") for r in rows]]) + " |")
    lines += ["", "Held-out pass@1 after each evaluated stage:", ""]
    for r in rows:
        lines.append(f"- {r['run']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["evals"].items()))
    return "\n".join(lines) + "\n"


def render_png(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("pass1", "held-out pass@1"), ("language_mixing_rate", "language-mixing rate"),
               ("response_len", "response length (tokens)"), ("wall_s", "wall time (s)")]  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(3.6 * (len(metrics) + 1), 3.4))
    names = [r["run"] for r in rows]
    for r in rows:
        if r["rl_response_len"]:
            steps, lengths = zip(*r["rl_response_len"])
            axes[-1].plot(steps, lengths, label=r["run"])
    axes[-1].set_title("response length over RL (tokens)")
    axes[-1].set_xlabel("RL step")
    if any(r["rl_response_len"] for r in rows):
        axes[-1].legend(fontsize=7)
    for ax, (key, title) in zip(axes, metrics):
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        ax.bar(names, values, color=["#2a7", "#c63", "#36c", "#999"][: len(rows)])
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom")
        ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="r1forge report", description="Compare finished runs side by side.")
    parser.add_argument("runs", nargs="+", help="run directories (e.g. of pipeline=r1 and pipeline=r1_zero)")
    parser.add_argument("--out", default="report", help="directory for report.md and report.png")
    args = parser.parse_args(argv)
    rows = [summarize_run(r) for r in args.runs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(render_markdown(rows))
    render_png(rows, out / "report.png")
    print(render_markdown(rows), end="")
    print(f"report in {out.resolve()}: report.md, report.png", flush=True)
    return 0
