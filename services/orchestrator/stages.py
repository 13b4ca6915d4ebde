"""The pipeline stages: cold-start SFT, GRPO, held-out evaluation.

Each stage is a function of a `StageContext` that reads the current policy checkpoint, runs its work
through the services (learner actor, rollout worker actors, reward services, Redis streams) and
returns its outputs for the manifest. A stage that changes the policy saves a checkpoint and pushes
the new weights to every rollout worker before it returns, so the next stage samples from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from services.orchestrator.evaluation import evaluate_groups
from services.orchestrator.feed import TaskFeeder, make_task
from services.orchestrator.grpo_loop import GRPOLoop
from services.orchestrator.learner_session import finish, learner_session
from services.orchestrator.metrics import MetricsLog, read_metrics
from services.orchestrator.rollouts import drive_rollouts
from services.orchestrator.runtime import Runtime
from services.paths import DATA_DIR
from services.pb import rollout_pb2
from services.reward.combine import reward_weights
from services.transport.names import GROUP_READERS, group_key, groups_stream_for

log = logging.getLogger(__name__)
# The shipped helpfulness/harmlessness preference pairs (tools/make_preferences.py writes them); their
# prompts are the general prompts of RL stage 2, their chosen answers the general SFT rows.
PREFERENCES_DIR = DATA_DIR / "preferences"


@dataclass
class StageContext:
    cfg: object
    run_dir: Path
    run_id: str
    runtime: Runtime
    metrics: MetricsLog
    task: object  # the run's `services.tasks.problem.Task`
    splits: dict  # its splits, computed once
    tokenizer: object
    policy_dir: str
    policy_version: int = 0
    serving_dir: str = ""  # checkpoint the rollout workers hold (differs from policy_dir after sft_control)
    last_trained: str = "base"  # label of the policy the next eval measures
    results: dict = field(default_factory=dict)
    eval_index: int = 0
    redis: object = None  # the orchestrator's Redis client, shared by every queue it opens

    def queue(self, stream: str, group: str, message_cls):
        from services.transport.redis_server import connect
        from services.transport.streams import StreamQueue

        rc = self.cfg.redis
        if self.redis is None:  # one connection for the whole run, opened on first use
            self.redis = connect(
                self.runtime.redis_url,
                password=rc.password,
                socket_timeout_s=rc.socket_timeout_s,
                reconnect_s=rc.reconnect_s,
            )
        q = StreamQueue.from_config(self.redis, rc, stream, group, message_cls)
        q.ensure_group()
        return q


def cold_start_sft(ctx: StageContext) -> dict:
    """Supervised fine-tuning on the small labelled pool of worked chain-of-thought examples."""
    import ray

    from services.tasks.datasets import cold_start_rows, write_sft_jsonl
    from services.tasks.prompts import render_chat_prompt

    cfg = ctx.cfg
    data = ctx.run_dir / "data" / "cold_start.jsonl"
    render = lambda q: render_chat_prompt(ctx.tokenizer, q)  # noqa: E731 (the same template as the task's)
    write_sft_jsonl(data, cold_start_rows(ctx.splits["cold_start"], render=render))
    with learner_session(ctx) as learner:
        n = ray.get(learner.load_sft_dataset.remote(str(data), cfg.learner.seed))
        out = sft_loop(ctx, learner, "cold_start_sft", cfg.learner.sft_steps, None)
        ckpt = finish(ctx, learner, "cold_start_sft")
    ctx.policy_dir, ctx.serving_dir, ctx.last_trained = ckpt, ckpt, "sft"
    ctx.results["sft_checkpoint"] = ckpt
    log.info(
        "cold-start SFT: %d steps on %d examples, final loss %.4f -> %s",
        out["steps"],
        n,
        out["final_loss"],
        ckpt,
    )
    return {"checkpoint": ckpt, "dataset": str(data), "examples": n, **out}


def sft_loop(ctx: StageContext, learner, stage: str, steps: int | None, budget_s: float | None) -> dict:
    """Take SFT steps in chunks (a fixed number, or until a wall-time budget is spent); log each one."""
    import ray

    out, _ = train_loop(ctx, stage, lambda n: ray.get(learner.sft_steps.remote(n)), steps, budget_s)
    return out


def train_loop(
    ctx: StageContext, stage: str, take, steps: int | None, budget_s: float | None
) -> tuple[dict, dict]:
    """Call `take(n)` (n optimizer steps on a learner, one metrics dict each) in chunks of 10, for
    `steps` steps or until `budget_s` is spent; log every step. Returns (summary, last step's metrics)."""
    bar = tqdm(total=steps, desc=stage.replace("_", " "), unit="step", dynamic_ncols=True)
    t0, done, last, chunk = time.perf_counter(), 0, {}, 10
    while (steps is None or done < steps) and (budget_s is None or time.perf_counter() - t0 < budget_s):
        n = chunk if steps is None else min(chunk, steps - done)
        for m in take(n):
            done += 1
            ctx.metrics.log(stage, done, m)
            last = m
        bar.update(n)
        bar.set_postfix({k: f"{last[k]:.3f}" for k in ("loss", "kl") if k in last})
    bar.close()
    summary = {"steps": done, "final_loss": last.get("loss"), "wall_s": round(time.perf_counter() - t0, 1)}
    return summary, last


def sft_control(ctx: StageContext) -> dict:
    """The fair control for RL: the cold-start SFT continued, on the same labelled pool, for the RL
    stage's wall time. The eval that follows is labelled `sft_control`; it must come after `rl`."""
    import ray

    if "rl_wall_s" not in ctx.results or "sft_checkpoint" not in ctx.results:
        raise ValueError("pipeline stage sft_control needs cold_start_sft and rl before it")
    rl_dir = ctx.policy_dir
    ctx.policy_dir = ctx.results["sft_checkpoint"]
    with learner_session(ctx) as learner:
        data = str(ctx.run_dir / "data" / "cold_start.jsonl")
        ray.get(learner.load_sft_dataset.remote(data, ctx.cfg.learner.seed + 1))
        out = sft_loop(ctx, learner, "sft_control", None, ctx.results["rl_wall_s"])
        ckpt = finish(ctx, learner, "sft_control")
    # The rollout workers now hold the control policy for the eval that follows; the run's policy stays RL's.
    ctx.policy_dir, ctx.serving_dir, ctx.last_trained = rl_dir, ckpt, "sft_control"
    return {"checkpoint": ckpt, **out}


def rl(ctx: StageContext) -> dict:
    """GRPO (R1 stage 2; R1-Zero's only stage): reasoning prompts, rule rewards."""
    feeder = _feeder(ctx, "rl", ctx.splits["train"])
    return grpo_stage(ctx, "rl", [(feeder, 1.0)])


def rl_general(ctx: StageContext) -> dict:
    """R1 stage 5: GRPO on a mix of reasoning prompts (rule rewards) and general prompts (judged by the
    reward model, `reward.source_weights.general`), with per-source metrics (`general/reward`, ...)."""
    from services.tasks.general import general_prompts

    share = ctx.cfg.rl_general.general_fraction
    if not 0.0 < share < 1.0:
        raise ValueError(f"rl_general.general_fraction={share}: must be strictly between 0 and 1")
    general = general_prompts(PREFERENCES_DIR / "train.jsonl", ctx.cfg.rl_general.num_prompts)
    feeders = [
        (_feeder(ctx, "rl_general", ctx.splits["train"]), 1.0 - share),
        (_feeder(ctx, "rl_general", general), share),
    ]
    return grpo_stage(ctx, "rl_general", feeders)


def _feeder(ctx: StageContext, stage: str, problems: list) -> TaskFeeder:
    weights = weights_by_source(ctx, stage, problems)
    return TaskFeeder(
        problems, ctx.tokenizer, ctx.run_id, stage, ctx.cfg.task.language, ctx.cfg.learner.seed, weights
    )


def _split(n: int, shares: list[float]) -> list[int]:
    """n prompts per step divided in proportion to shares (largest remainders): 8 by [.75, .25] = [6, 2]."""
    raw = [n * s / sum(shares) for s in shares]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    return counts


def grpo_stage(ctx: StageContext, stage: str, feeders: list[tuple[TaskFeeder, float]]) -> dict:
    """GRPO: prompts -> rollout workers -> reward services -> learner, weights back every step
    (`services.orchestrator.grpo_loop`, which also restarts a learner that died)."""
    lc = ctx.cfg.learner
    counts = _split(lc.prompts_per_step, [share for _, share in feeders])
    t_stage = time.perf_counter()
    loop = GRPOLoop(ctx, stage, feeders, counts)
    ckpt, learner_books = loop.run(_step_line)
    books = account(loop.issued, learner_books)
    books["learner_restarts"] = loop.restarts
    ctx.policy_dir, ctx.serving_dir, ctx.last_trained = ckpt, ckpt, stage
    ctx.results[f"{stage}_steps"] = lc.rl_steps
    ctx.results[f"{stage}_wall_s"] = round(time.perf_counter() - t_stage, 1)
    ctx.results[f"{stage}_accounting"] = books
    ctx.results[f"{stage}_staleness"] = staleness_totals(read_metrics(ctx.metrics.path), stage)
    log.info("%s accounting: %s", stage, {k: v for k, v in books.items() if k != "dead_letter_reasons"})
    check_accounting(stage, books, lc.max_failed_share)
    return {
        "checkpoint": ckpt,
        "steps": lc.rl_steps,
        "groups_trained": books["trained"],
        "policy_version": ctx.policy_version,
        "accounting": books,
    }


def staleness_totals(rows: list[dict], stage: str) -> dict[str, int]:
    """The stage's staleness histogram: groups sampled `lag` versions behind the learner, over all steps."""
    totals: dict[str, int] = {}
    for row in rows:
        if row["stage"] == stage:
            for key, n in row.items():
                if key.startswith("staleness_"):
                    totals[key] = totals.get(key, 0) + n
    return dict(sorted(totals.items(), key=lambda kv: int(kv[0].removeprefix("staleness_"))))


# Outcomes that mean a group was lost to a failure rather than dropped for a training reason.
FAILED_OUTCOMES = ("dead_lettered", "failed", "malformed")


def account(issued: set[str], learner_books: dict) -> dict:
    """Every issued id in exactly one state: trained, dropped by reason, dead-lettered, or pending
    (never reached the learner). Ids the learner got that were never issued are counted as `unknown`."""
    outcomes = learner_books["outcomes"]
    dropped: dict[str, int] = {}
    trained = dead = 0
    for key in issued & outcomes.keys():
        outcome = outcomes[key]
        if outcome == "trained":
            trained += 1
        elif outcome == "dead_lettered":
            dead += 1
        else:
            dropped[outcome] = dropped.get(outcome, 0) + 1
    reasons = learner_books["dead_letter_reasons"]
    return {
        "issued": len(issued),
        "trained": trained,
        "dropped": dict(sorted(dropped.items())),
        "dead_lettered": dead,
        "pending": len(issued - outcomes.keys()),
        "unknown": len(outcomes.keys() - issued),
        "duplicate_copies": learner_books["duplicate_copies"],
        "foreign": learner_books["foreign"],  # groups of another run found in the stream (poison)
        "dead_letter_reasons": {k: reasons[k] for k in sorted(reasons)[:20]},
    }


def check_accounting(stage: str, books: dict, max_failed_share: float) -> None:
    """Fail the stage (and the run) when it trained nothing, or lost too many groups to failures."""
    failed = books["dead_lettered"] + sum(books["dropped"].get(r, 0) for r in FAILED_OUTCOMES)
    summary = (
        f"issued {books['issued']}, trained {books['trained']}, dropped {books['dropped']}, "
        f"dead-lettered {books['dead_lettered']}, pending {books['pending']}"
    )
    if books["trained"] == 0:
        raise RuntimeError(f"stage {stage!r} trained no group ({summary})")
    if failed > max_failed_share * books["issued"]:
        example = next(iter(books["dead_letter_reasons"].values()), "")
        raise RuntimeError(
            f"stage {stage!r} lost {failed} of {books['issued']} groups to failures, more than "
            f"learner.max_failed_share={max_failed_share} ({summary})"
            + (f"; e.g. {example}" if example else "")
        )


def weights_by_source(ctx: StageContext, stage: str, problems: list, strict: bool = True) -> dict[str, dict]:
    """The reward weights of (stage, source) for every source among `problems`."""
    return {s: _running_weights(ctx, stage, s, strict) for s in sorted({p.source for p in problems})}


def _running_weights(ctx: StageContext, stage: str, source: str, strict: bool = True) -> dict[str, float]:
    """The reward weights of (stage, source), checked against the services running now."""
    weights = reward_weights(ctx.cfg.reward, stage, source)
    down = sorted(set(weights) - set(ctx.runtime.reward_addresses))
    if down and strict:
        raise ValueError(
            f"stage {stage!r} weights reward scorers {down} that are not running yet; a reward_model scorer "
            "needs reward.reward_model_path or a reward_model stage earlier in the pipeline"
        )
    return {name: w for name, w in weights.items() if name not in down}


def _step_line(stage: str, step: int, steps: int, m: dict, accuracy: str = "accuracy") -> str:
    def f(key: str, fmt: str = ".3f") -> str:
        return format(m[key], fmt) if key in m else "-"

    return (
        f"{stage} step {step}/{steps} v{m.get('policy_version')} | reward {f('reward')} "
        f"acc {f('reward_' + accuracy)} fmt {f('reward_format')} | kl {f('kl', '.4f')} clip {f('clip_frac')} "
        f"| len {f('response_len', '.1f')} | {f('groups_per_s', '.2f')} groups/s "
        f"| trained {m.get('groups_trained')} dropped {_dropped(m)}"
    )


def _dropped(m: dict) -> str:
    """Every non-zero drop reason of a step, e.g. "zero_variance 2, dead_lettered 1" (or "0")."""
    parts = [f"{k.removeprefix('dropped_')} {v}" for k, v in m.items() if k.startswith("dropped_") and v]
    return ", ".join(parts) or "0"


def sample_groups(
    ctx: StageContext,
    stage: str,
    problems: list,
    group_size: int,
    temperature: float,
    weights: dict[str, dict[str, float]],
    top_logprobs: int = 0,
    desc: str | None = None,
) -> list[rollout_pb2.ScoredGroup]:
    """One scored group per problem from the current policy, through the prompts and groups streams;
    `weights` maps each problem source to its reward weights (`weights_by_source`)."""
    cfg = ctx.cfg
    ctx.eval_index += 1  # the task epoch: the same prompt sampled again by a later stage is a new task
    stream = groups_stream_for(cfg.redis.groups_stream, stage)
    prompts = ctx.queue(cfg.redis.prompts_stream, "rollout", rollout_pb2.PromptTask)
    out = ctx.queue(stream, GROUP_READERS, rollout_pb2.ScoredGroup)
    prompts.add_many(
        [
            make_task(
                p,
                ctx.tokenizer,
                ctx.run_id,
                stage,
                ctx.eval_index,
                group_size,
                ctx.policy_version,
                cfg.task.language,
                temperature,
                weights[p.source],
                top_logprobs,
            )
            for p in problems
        ]
    )
    bar = tqdm(total=len(problems), desc=desc or stage, unit="prompt", dynamic_ncols=True)
    drive_rollouts(ctx, prompts, cfg.launcher.start_timeout_s + 10 * len(problems), chunk=32, progress=bar)
    bar.close()
    groups: list[rollout_pb2.ScoredGroup] = []
    seen: set[str] = set()
    dead: dict[str, str] = {}
    while len(seen) < len(problems):
        got = out.read("orchestrator", len(problems) - len(seen), 1.0)
        if not got:
            raise RuntimeError(f"{stage}: {len(problems) - len(seen)} groups missing from {stream!r}")
        for d in got:
            key = group_key(d.message.id)
            if key in seen:  # a redone task's second copy
                continue
            seen.add(key)
            if d.message.dead_letter_reason:
                dead[key] = d.message.dead_letter_reason
            else:
                groups.append(d.message)
        out.ack([d.entry_id for d in got])
    if dead:
        log.warning(
            "%s: %d of %d tasks dead-lettered, e.g. %s",
            stage,
            len(dead),
            len(problems),
            next(iter(dead.values())),
        )
        counts = ctx.results.setdefault("dead_lettered", {})
        counts[stage] = counts.get(stage, 0) + len(dead)
    return groups


def evaluate(ctx: StageContext) -> dict:
    """Held-out pass@1 over k samples, maj@k, format and language-mixing rates and response length."""
    import json

    ec = ctx.cfg.eval
    label = ctx.last_trained
    problems = ctx.splits["heldout"][: ec.num_prompts]
    k = 1 if ec.temperature == 0 else ec.num_samples
    # Eval scores with the stage's weights, or every running scorer (it reads components, not the total).
    weights = weights_by_source(ctx, "eval", problems, strict=False)
    groups = sample_groups(ctx, "eval", problems, k, ec.temperature, weights, desc=f"eval ({label})")
    result = {
        "label": label,
        "policy_version": ctx.policy_version,
        "temperature": ec.temperature,
        **evaluate_groups(groups, ctx.task.accuracy_scorer, ctx.cfg.reward.untagged_answer),
    }
    (ctx.run_dir / f"eval_{label}.json").write_text(json.dumps(result, indent=2))
    ctx.results[f"{label}_pass1"] = result["pass1"]
    scalars = {f"{label}_{k_}": v for k_, v in result.items() if isinstance(v, (int, float))}
    ctx.metrics.log("eval", ctx.eval_index, scalars)
    log.info(
        "eval %s: pass@1 %.3f | pass@%d %.3f | maj@%d %.3f | format %.3f | language mixing %s | len %.1f",
        label,
        result["pass1"],
        k,
        result.get(f"pass@{k}", result["pass1"]),
        k,
        result[f"maj@{k}"],
        result["format_rate"],
        f"{result['language_mixing_rate']:.3f}" if "language_mixing_rate" in result else "-",
        result["response_len"],
    )
    return result
