"""r1forge against TRL's GRPOTrainer: seconds per GRPO step, same checkpoint, same task, same settings.

    python bench/vs_trl.py [--steps S] [--repeats R] [--sft-steps N] [--staleness 0,1,2] [--checkpoint DIR]
                           [--workdir DIR] [overrides...]

Needs the bench extra (`pip install -e '.[bench]'`: trl==1.16.0, accelerate).

Both systems start from one cold-start SFT checkpoint, made here by `r1forge pipeline.stages=[cold_start_sft]`
(or `--checkpoint DIR`, a `checkpoints/cold_start_sft` directory of an earlier run), and take S GRPO steps:

* r1forge: an RL-only run, `r1forge model.path=<ckpt> pipeline.stages=[rl]`, once on-policy
  (`learner.max_staleness=0`) and once for each other `--staleness` k (rollout streams up to k policy
  versions ahead of the learner). Seconds per step come from its metrics.jsonl (`groups_per_s`, which counts
  from the previous step's end: sampling, scoring, training and the weight push).
* TRL: `GRPOTrainer` with transformers `generate` (not its vLLM mode), in a subprocess of its own with
  2 torch threads (the r1forge learner's `learner.num_threads`). Its prompts are the very PromptTasks the
  r1forge RL stage issues (its TaskFeeder, same order), its rewards r1forge's own scorers called
  in-process with the stage's weights. One generation batch of prompts_per_step * G completions per
  optimizer step (`steps_per_generation` = gradient accumulation, `num_iterations=1`), micro-batches of
  `learner.micro_batch_size`, loss_type "grpo" (= r1forge's seq_mean), constant learning rate, no
  gradient checkpointing, fp32. Seconds per step are the gaps between `on_step_end` callbacks.

Every shared setting (G, prompts per step, max new tokens, lr, kl_coef, clip_eps, temperature, top_p,
weight decay, grad-norm clip, micro-batch, seed) is read from one composed r1forge config, with the
overrides given here applied to the SFT run, both r1forge runs and TRL alike. The first WARMUP steps of
each system are not measured. Trained completions/s = prompts_per_step * G / seconds per step for every
system (r1forge drops zero-variance groups from the update; the table's `trained` column says how many
groups it did train). Prints the table and writes it as JSON (`--out`, default bench/results/vs_trl.json).
The systems take turns in `--repeats` rounds (TRL, then r1forge at each staleness), and each row pools
the steps of all rounds, so a machine whose speed drifts (this VM's does, by up to 30% over minutes)
skews no system more than another. Run it on a quiet machine: anything else on the CPUs skews them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.chaos import cold_start_checkpoint, run_logged  # noqa: E402
from services.config_loader import load_config  # noqa: E402

WARMUP = 2
TRL_THREADS = 2
# r1forge's loss aggregation -> the TRL loss_type that normalises the same way.
LOSS_TYPES = {"seq_mean": "grpo", "token_mean": "dapo"}


def shared_settings(cfg) -> dict:
    """The settings both systems take from the one composed config."""
    lc, rc = cfg.learner, cfg.rollout
    if lc.temperature != rc.temperature:
        raise ValueError(
            f"learner.temperature={lc.temperature} differs from rollout.temperature={rc.temperature}"
        )
    return {
        "group_size": rc.group_size,
        "prompts_per_step": lc.prompts_per_step,
        "max_new_tokens": rc.max_new_tokens,
        "lr": lc.lr,
        "kl_coef": lc.kl_coef,
        "clip_eps": lc.clip_eps,
        "temperature": rc.temperature,
        "top_p": rc.top_p,
        "weight_decay": lc.weight_decay,
        "max_grad_norm": lc.max_grad_norm,
        "micro_batch_size": lc.micro_batch_size,
        "loss_agg": lc.loss_agg,
        "seed": lc.seed,
    }


def run_r1forge(
    workdir: Path,
    ckpt: Path,
    steps: int,
    staleness: int,
    overrides: list[str],
    prompts: int,
    timeout_s: float,
) -> dict:
    """One RL-only r1forge run from `ckpt`; its row of the table."""
    name = f"r1forge-staleness{staleness}"
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    extra = [] if any(o.startswith("learner.checkpoint_every=") for o in overrides) else [
        f"learner.checkpoint_every={steps}"  # no in-stage checkpoint inside the timed steps (TRL saves none)
    ]  # fmt: skip
    args = [
        f"run_dir={run_dir}", *overrides, *extra, f"model.path={ckpt}", "pipeline.stages=[rl]",
        f"learner.rl_steps={steps}", f"learner.max_staleness={staleness}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    rc = run_logged(args, workdir, workdir / f"{name}.log", timeout_s)
    if rc != 0:
        raise RuntimeError(f"{name} failed ({rc}):\n{(workdir / f'{name}.log').read_text()[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rl = [r for r in rows if r["stage"] == "rl"][WARMUP:]
    if not rl:
        raise RuntimeError(f"{name}: no RL step after the {WARMUP} warm-up steps; raise --steps")
    per_step = [prompts / r["groups_per_s"] for r in rl]
    return {
        "system": f"r1forge (max_staleness={staleness})",
        "step_s": per_step,
        "mean_len": mean([r["response_len"] for r in rl if "response_len" in r]),  # all groups, dropped too
        "groups_trained": mean([r["groups_trained"] for r in rl]),
        "breakdown": {
            "learner_step_s": mean([r["step_s"] for r in rl]),  # the learner's train_step, waiting included
            "learner_wait_s": mean([r["wait_s"] for r in rl]),  # of which waiting for the step's groups
            "generate_s": mean([r.get("generate_s", 0.0) for r in rl]),  # vLLM time of the step's groups
            "score_s": mean([r.get("score_s", 0.0) for r in rl]),  # reward calls, summed over groups
            # issuing prompts, the weight push, and (max_staleness=0) sampling before the learner is called
            "outside_learner_s": mean([t - r["step_s"] for t, r in zip(per_step, rl)]),
        },
        "run_wall_s": round(time.perf_counter() - t0, 1),
    }


def run_trl(workdir: Path, ckpt: Path, steps: int, overrides: list[str], timeout_s: float) -> dict:
    """TRL's GRPOTrainer from `ckpt` in a subprocess of its own (`trl_worker`); its row of the table."""
    out = workdir / "trl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = out / "spec.json"
    spec.write_text(
        json.dumps({"checkpoint": str(ckpt), "steps": steps, "overrides": overrides, "out": str(out)})
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(TRL_THREADS),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    t0 = time.perf_counter()
    with (workdir / "trl.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--trl-worker", str(spec)],
            cwd=out, env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        try:
            rc = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc = -9
    if rc != 0:
        raise RuntimeError(f"the TRL run failed ({rc}):\n{(workdir / 'trl.log').read_text()[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    marks = result["step_end"]
    per_step = [b - a for a, b in zip(marks, marks[1:])][WARMUP:]
    if not per_step:
        raise RuntimeError(f"TRL: no step after the {WARMUP} warm-up steps; raise --steps")
    logs = result["logs"][WARMUP:]
    return {
        "system": "trl GRPOTrainer (HF generate)",
        "step_s": per_step,
        "mean_len": mean([r["completions/mean_length"] for r in logs if "completions/mean_length" in r]),
        "groups_trained": None,
        "breakdown": {
            **{k: mean(v[WARMUP:]) for k, v in result["phases"].items()},
            # forward/backward of the policy over the generation batch and the optimizer step
            "train_s": mean([t - g for t, g in zip(per_step, result["phases"]["generate_score_s"][WARMUP:])]),
        },
        "run_wall_s": round(time.perf_counter() - t0, 1),
    }


def trl_worker(spec_path: Path) -> None:
    """The TRL run itself (in its own process): writes step-end times, phases and logs to result.json."""
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(TRL_THREADS)
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from services.orchestrator.feed import TaskFeeder
    from services.reward.combine import reward_weights
    from services.reward.scorer import ScoreInput, make_scorer
    from services.tasks import load_splits

    cfg = load_config([*spec["overrides"], f"model.path={spec['checkpoint']}"])
    s = shared_settings(cfg)
    steps, group, prompts = spec["steps"], s["group_size"], s["prompts_per_step"]
    tok = AutoTokenizer.from_pretrained(spec["checkpoint"])

    # The PromptTasks the r1forge RL stage issues, in its order: the same text, token ids and weights.
    problems = load_splits(cfg.task)["train"]
    weights = {src: reward_weights(cfg.reward, "rl", src) for src in sorted({p.source for p in problems})}
    feeder = TaskFeeder(problems, tok, "vs_trl", "rl", cfg.task.language, cfg.learner.seed, weights)
    tasks = feeder.next_tasks(steps * prompts, group, 0)
    for t in tasks:
        if tok(t.prompt)["input_ids"] != list(t.prompt_token_ids):
            raise ValueError(f"TRL would tokenize the prompt {t.prompt!r} differently from r1forge")
    task_weights = {tuple(sorted(t.reward_weights.items())) for t in tasks}
    if len(task_weights) != 1:
        raise ValueError(f"the prompts carry different reward weights {task_weights}; TRL takes one set")
    names, values = zip(*sorted(task_weights.pop()))
    data = Dataset.from_dict({
        "prompt": [t.prompt for t in tasks],
        "answer": [t.answer for t in tasks],
        "language": [t.language for t in tasks],
        "metadata_json": [t.metadata_json for t in tasks],
    })  # fmt: skip

    # generate_score_s: one generation batch (sampling, the reference model's forward, rewards, advantages).
    phases: dict[str, list[float]] = {"generate_s": [], "reward_s": [], "generate_score_s": []}
    scorers = [make_scorer(name, cfg.reward) for name in names]

    def reward_func(scorer):
        def score(prompts, completions, answer, language, metadata_json, **_):
            items = [
                ScoreInput(i, p, c, a, lang, m)
                for i, (p, c, a, lang, m) in enumerate(
                    zip(prompts, completions, answer, language, metadata_json)
                )
            ]
            return [r.value if r.ok else None for r in scorer.score(items)]  # None: TRL's "could not score"

        score.__name__ = scorer.name
        return score

    class Timed(GRPOTrainer):
        """Times the phases of a step (private methods of trl 1.16; the pin keeps them)."""

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            phases["generate_score_s"].append(time.perf_counter() - t0)
            return out

        def _generate_single_turn(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._generate_single_turn(*args, **kwargs)
            phases["generate_s"].append(time.perf_counter() - t0)
            return out

        def _calculate_rewards(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._calculate_rewards(*args, **kwargs)
            phases["reward_s"].append(time.perf_counter() - t0)
            return out

    marks: list[float] = []

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    completions = group * prompts
    micro = max(d for d in range(1, min(s["micro_batch_size"], completions) + 1) if completions % d == 0)
    args = GRPOConfig(
        output_dir=spec["out"],
        num_generations=group,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=completions // micro,
        steps_per_generation=completions // micro,  # one generation batch = one optimizer step
        num_iterations=1,
        max_completion_length=s["max_new_tokens"],
        temperature=s["temperature"],
        top_p=s["top_p"],
        learning_rate=s["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=s["weight_decay"],
        max_grad_norm=s["max_grad_norm"],
        beta=s["kl_coef"],
        epsilon=s["clip_eps"],
        loss_type=LOSS_TYPES[s["loss_agg"]],
        scale_rewards="group",
        reward_weights=list(values),
        model_init_kwargs={"dtype": "float32"},
        disable_dropout=True,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        fp16=False,
        use_vllm=False,
        shuffle_dataset=False,  # r1forge's feeder order, already in `data`
        seed=s["seed"],
        report_to=[],
        logging_steps=1,
        max_steps=steps,
        save_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Timed(
        model=spec["checkpoint"],
        reward_funcs=[reward_func(sc) for sc in scorers],
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[StepTimes()],
    )
    try:
        trainer.train()
    finally:
        for sc in scorers:
            sc.close()
    logs = [r for r in trainer.state.log_history if "loss" in r and "train_runtime" not in r]
    result = {"step_end": marks, "phases": phases, "logs": logs, "settings": s, "micro_batch": micro}
    (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=2))


def merge(rows: list[dict]) -> dict:
    """One system's row over the rounds: every measured step, the means of the rest."""
    out = dict(rows[0])
    out["step_s"] = [t for r in rows for t in r["step_s"]]
    out["per_round_s_per_step"] = [mean(r["step_s"]) for r in rows]
    for key in ("mean_len", "groups_trained"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = mean(vals) if vals else None
    out["breakdown"] = {
        k: mean([r["breakdown"][k] for r in rows if r["breakdown"].get(k) is not None])
        for k in rows[0]["breakdown"]
    }
    out["run_wall_s"] = sum(r["run_wall_s"] for r in rows)
    return out


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def table(rows: list[dict], s: dict) -> str:
    completions = s["prompts_per_step"] * s["group_size"]
    trl = next(r for r in rows if r["system"].startswith("trl"))
    lines = [
        f"{'system':<32}{'s/step':>9}{'compl/s':>10}{'vs TRL':>9}{'mean len':>10}{'trained':>9}",
    ]
    for r in rows:
        r["s_per_step"] = mean(r["step_s"])
        r["completions_per_s"] = completions / r["s_per_step"]
    for r in rows:
        r["vs_trl"] = r["completions_per_s"] / trl["completions_per_s"]
        trained = "-" if r["groups_trained"] is None else f"{r['groups_trained']:.1f}/{s['prompts_per_step']}"
        length = "-" if r["mean_len"] is None else f"{r['mean_len']:.1f}"
        lines.append(
            f"{r['system']:<32}{r['s_per_step']:>9.2f}{r['completions_per_s']:>10.1f}"
            f"{r['vs_trl']:>8.2f}x{length:>10}{trained:>9}"
        )
    for r in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["breakdown"].items() if v is not None)
        if len(r.get("per_round_s_per_step", [])) > 1:
            parts += "; s/step per round " + " / ".join(f"{t:.2f}" for t in r["per_round_s_per_step"])
        lines.append(f"  {r['system']}: {parts}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=20, help=f"GRPO steps per system (the first {WARMUP} are warm-up)"
    )
    parser.add_argument(
        "--sft-steps", type=int, default=None, help="SFT steps of the checkpoint (default: the config's)"
    )
    parser.add_argument(
        "--staleness", default="0,1,2", help="r1forge runs by learner.max_staleness, e.g. 0,1,2"
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds in which every system runs once")
    parser.add_argument("--checkpoint", default=None, help="an existing cold-start checkpoint directory")
    parser.add_argument("--workdir", default=None, help="runs and logs (default: a new temporary directory)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "vs_trl.json"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds each run may take")
    parser.add_argument("--trl-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="r1forge config overrides, applied to every run")
    args = parser.parse_intermixed_args()
    if args.trl_worker:
        trl_worker(Path(args.trl_worker))
        return 0
    if args.steps <= WARMUP:
        parser.error(f"--steps must exceed the {WARMUP} warm-up steps")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="r1forge-vs-trl-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        ckpt = Path(args.checkpoint).resolve()
    else:
        t0 = time.perf_counter()
        sft_steps = args.sft_steps or load_config(args.overrides).learner.sft_steps
        overrides = [*args.overrides, f"learner.sft_steps={sft_steps}"]
        ckpt = cold_start_checkpoint(workdir, overrides, args.timeout)
        print(f"checkpoint {ckpt} ({time.perf_counter() - t0:.0f}s)", flush=True)
    s = shared_settings(load_config([*args.overrides, f"model.path={ckpt}"]))
    print("shared settings: " + ", ".join(f"{k}={v}" for k, v in s.items()), flush=True)
    stalenesses = [int(k) for k in args.staleness.split(",")]
    rounds: list[list[dict]] = []
    for i in range(args.repeats):  # the systems take turns, so a machine that drifts skews none of them
        round_dir = workdir / f"round{i + 1}"
        round_dir.mkdir(exist_ok=True)
        row = run_trl(round_dir, ckpt, args.steps, args.overrides, args.timeout)
        rows = [row]
        print(f"round {i + 1}: {row['system']}: done in {row['run_wall_s']:.0f}s", flush=True)
        for staleness in stalenesses:
            row = run_r1forge(
                round_dir, ckpt, args.steps, staleness, args.overrides, s["prompts_per_step"], args.timeout
            )
            rows.append(row)
            print(f"round {i + 1}: {row['system']}: done in {row['run_wall_s']:.0f}s", flush=True)
        rounds.append(rows)
    rows = [merge([r[k] for r in rounds]) for k in range(len(rounds[0]))]
    per_step = f"{s['prompts_per_step']} prompts x G={s['group_size']}"
    print(f"{args.repeats} rounds of {args.steps} steps of {per_step}, {WARMUP} warm-up steps each")
    print(table(rows, s))
    result = {
        "overrides": args.overrides,
        "checkpoint": str(ckpt),
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup_steps": WARMUP,
        "settings": s,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"runs and logs in {workdir}; rows in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
