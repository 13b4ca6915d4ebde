"""The R1 recipe's stages beyond the RL loop: reward-model training, rejection sampling, SFT on a
dataset, and distillation into a smaller student.

Like the core stages (`services.orchestrator.stages`), each is a function of the `StageContext` that
works through the services (learner actors, rollout workers, reward services, Redis streams) and
returns its outputs for the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from services.orchestrator.learner_session import finish, learner_session
from services.orchestrator.placement import actor_options
from services.orchestrator.stages import (
    PREFERENCES_DIR,
    StageContext,
    evaluate,
    sample_groups,
    sft_loop,
    train_loop,
    weights_by_source,
)
from services.paths import resolve_data_path
from services.pb import rollout_pb2
from services.reward.combine import component_dict

log = logging.getLogger(__name__)

# The shipped helpfulness/harmlessness preference pairs (tools/make_preferences.py writes them).


def _pairs_file(path: str | None, key: str, shipped: str) -> str:
    """`reward_model.<key>` resolved (see services/paths.py), or the shipped pairs file when it is unset."""
    return str(resolve_data_path(path, f"reward_model.{key}") if path else PREFERENCES_DIR / shipped)


def reward_model(ctx: StageContext) -> dict:
    """Bradley-Terry training of the reward model (MiniLM encoder + scalar head by default) on preference
    pairs, in a Ray task; reports held-out pairwise accuracy and, when `reward.scorers` lists
    `reward_model`, starts its service so that later stages score with it."""
    import ray

    rm = ctx.cfg.reward_model
    out_dir = ctx.run_dir / "checkpoints" / "reward_model"
    train = _pairs_file(rm.train_path, "train_path", "train.jsonl")
    heldout = _pairs_file(rm.heldout_path, "heldout_path", "heldout.jsonl")
    task = ray.remote(num_cpus=1, num_gpus=1 if rm.device == "cuda" else 0)(_train_reward_model).options(
        **actor_options(ctx.cfg.launcher.learner_resources)  # training goes where the learner goes
    )
    threads = ctx.cfg.learner.num_threads
    metrics = ray.get(task.remote(OmegaConf.to_container(rm), train, heldout, str(out_dir), threads))
    for step, line in metrics.pop("log"):
        ctx.metrics.log("reward_model", step, line)
    acc = metrics["heldout_accuracy"]
    ctx.results["reward_model_heldout_accuracy"] = acc
    ctx.results["reward_model_checkpoint"] = str(out_dir)
    log.info(
        "reward model: held-out pairwise accuracy %.3f (helpful %.3f, harmless %.3f; %.3f before training) "
        "-> %s",
        acc,
        metrics["heldout_accuracy_helpful"],
        metrics["heldout_accuracy_harmless"],
        metrics["initial_heldout_accuracy"],
        out_dir,
    )
    if "reward_model" in ctx.cfg.reward.scorers and "reward_model" not in ctx.runtime.reward_addresses:
        address = ctx.runtime.start_reward_service("reward_model", [f"reward.reward_model_path={out_dir}"])
        log.info("reward model service ready at %s", address)
    return {"checkpoint": str(out_dir), "train": train, "heldout": heldout, **metrics}


def _train_reward_model(rm: dict, train: str, heldout: str, out_dir: str, threads: int) -> dict:
    """Runs in a Ray worker process: read the pairs, train, return the metrics and the loss curve."""
    import torch
    from tqdm.auto import tqdm

    from services.learner.reward_model import default_encoder_dir, train_reward_model
    from services.tasks.preferences import read_pairs

    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 in its workers
    curve: list = []
    bar = tqdm(total=rm["steps"], desc="reward model", unit="step", dynamic_ncols=True)  # Ray forwards it

    def on_log(step: int, line: dict) -> None:
        curve.append((step, line))
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{line['loss']:.3f}", acc=f"{line['train_accuracy']:.2f}")

    metrics = train_reward_model(
        rm["base_path"] or default_encoder_dir(),
        read_pairs(train),
        read_pairs(heldout),
        out_dir,
        steps=rm["steps"],
        lr=rm["lr"],
        batch_size=rm["batch_size"],
        max_length=rm["max_length"],
        freeze_embeddings=rm["freeze_embeddings"],
        trainable_layers=rm["trainable_layers"],
        seed=rm["seed"],
        device=rm["device"],
        on_log=on_log,
        log_every=max(1, rm["steps"] // 10),
    )
    bar.close()
    return {**metrics, "log": curve}


def rejection_sampling(ctx: StageContext) -> dict:
    """R1 stage 3: k samples per train prompt from the current policy through the same queues, keep the
    completions every rule reward accepts, deduplicate, mix in general data; write the SFT dataset
    `data/rejection_sampled.jsonl` with each row's provenance (policy version, rewards, source)."""
    import random

    from services.tasks.preferences import read_pairs
    from services.tasks.prompts import render_chat_prompt
    from services.tasks.rejection import general_rows, select, write_selected

    rc = ctx.cfg.rejection
    problems = list(ctx.splits["train"])
    random.Random(rc.seed).shuffle(problems)
    problems = problems[: rc.num_prompts]
    weights = weights_by_source(ctx, "rejection_sampling", problems)
    for source, used in weights.items():
        missing = sorted(set(rc.min_scores) - set(used))
        if missing:
            raise ValueError(
                f"rejection.min_scores names {missing}, which this stage does not score {source!r} "
                f"prompts with ({used})"
            )
    groups = sample_groups(
        ctx, "rejection_sampling", problems, rc.samples_per_prompt, rc.temperature, weights
    )
    samples = [
        {
            "prompt_id": g.id.prompt_id,
            "prompt": g.prompt,
            "answer": g.answer,
            "completion": c.text,
            "source": g.source,
            "policy_version": c.policy_version,
            "sample_index": c.sample_index,
            "rewards": {r.name: component_dict(r) for r in c.rewards},
        }
        for g in groups
        for c in g.completions
    ]
    render = lambda q: render_chat_prompt(ctx.tokenizer, q)  # noqa: E731 (the same template as the task's)
    general = general_rows(read_pairs(PREFERENCES_DIR / "train.jsonl"), len(samples), rc.seed, render=render)
    rows, stats = select(samples, dict(rc.min_scores), rc.max_per_prompt, general, rc.general_ratio, rc.seed)
    path = ctx.run_dir / "data" / "rejection_sampled.jsonl"
    write_selected(path, rows)
    ctx.results["rejection_dataset"] = str(path)
    ctx.metrics.log("rejection_sampling", 1, {k: v for k, v in stats.items() if isinstance(v, (int, float))})
    log.info(
        "rejection sampling: %d of %d samples accepted over %d prompts -> %d rows (%d general) in %s",
        stats["accepted"],
        stats["samples"],
        len(problems),
        len(rows),
        stats["general_rows"],
        path,
    )
    return {"dataset": str(path), "rows": len(rows), "policy_version": ctx.policy_version, **stats}


def sft(ctx: StageContext) -> dict:
    """SFT on a dataset (`sft.dataset`, else the last rejection-sampled one) through the learner service:
    loss on the response only, packed rows; the new policy is synced to the rollout workers."""
    import ray

    sc = ctx.cfg.sft
    dataset = sc.dataset or ctx.results.get("rejection_dataset")
    if not dataset:
        raise ValueError(
            "the sft stage needs sft.dataset=<jsonl|parquet> or a rejection_sampling stage before it"
        )
    with learner_session(ctx) as learner:
        n = ray.get(
            learner.load_sft_dataset.remote(str(dataset), ctx.cfg.learner.seed, sc.lr, sc.pack, sc.max_len)
        )
        out = sft_loop(ctx, learner, "sft", sc.steps, None)
        ckpt = finish(ctx, learner, "sft")
    ctx.policy_dir, ctx.serving_dir, ctx.last_trained = ckpt, ckpt, "sft2"
    log.info("sft: %d steps on %d examples of %s, final loss %.4f -> %s", out["steps"], n, dataset,
             out["final_loss"], ckpt)  # fmt: skip
    return {"checkpoint": ckpt, "dataset": str(dataset), "examples": n, **out}


def distill(ctx: StageContext) -> dict:
    """R1 stage 6: the current policy (the teacher) answers train prompts through vLLM with its top-k
    log-probs; the soft targets become `data/distill_soft_targets.jsonl`; a smaller student is trained
    with beta * CE + (1 - beta) * KL(teacher || student) over the top-k. With `distill.control`, the same
    student trained by SFT alone (beta = 1) on the same data and steps is evaluated first, as the fair
    control. The rollout workers then serve the student, which the next eval measures."""
    import random

    from services.learner.checkpoint import load_checkpoint_meta
    from services.tasks.soft_targets import write_soft_targets

    dc = ctx.cfg.distill
    problems = list(ctx.splits["train"])
    random.Random(ctx.cfg.learner.seed).shuffle(problems)
    weights = weights_by_source(ctx, "distill", problems[: dc.num_prompts])
    groups = sample_groups(
        ctx, "distill", problems[: dc.num_prompts], dc.samples_per_prompt, dc.temperature, weights,
        top_logprobs=dc.top_k, desc="distill (teacher)",
    )  # fmt: skip
    rows = _soft_target_rows(groups, dc, ctx.serving_dir, ctx.task.accuracy_scorer)
    if not rows:
        raise RuntimeError(
            "distill: the teacher produced no usable completion (finished and, if only_correct, right)"
        )
    data = ctx.run_dir / "data" / "distill_soft_targets.jsonl"
    write_soft_targets(data, rows)
    student = _student_dir(ctx)
    out: dict = {
        "soft_targets": str(data),
        "rows": len(rows),
        "teacher": ctx.serving_dir,
        "student_init": student,
    }
    if dc.control:
        control = _train_student(ctx, student, data, beta=1.0, label="distill_sft_control")
        ctx.runtime.restart_workers(control)
        ctx.policy_version = load_checkpoint_meta(control)["policy_version"]
        ctx.last_trained = "distill_sft_control"
        out["control"] = {"checkpoint": control, "eval": evaluate(ctx)}
    ckpt = _train_student(ctx, student, data, beta=dc.beta, label="distill")
    ctx.runtime.restart_workers(ckpt)
    ctx.policy_dir, ctx.serving_dir, ctx.last_trained = ckpt, ckpt, "distill"
    ctx.policy_version = load_checkpoint_meta(ckpt)["policy_version"]
    ctx.results["distill_checkpoint"] = ckpt
    return {**out, "checkpoint": ckpt, "beta": dc.beta}


def _soft_target_rows(groups: list, dc, teacher: str, accuracy: str) -> list[dict]:
    """Finished (and, with only_correct, verified by the task's `accuracy` scorer and the format checker)
    teacher completions with their top-k log-probs."""
    rows = []
    for g in groups:
        for c in g.completions:
            scores = {r.name: r.value for r in c.rewards if r.status == rollout_pb2.REWARD_STATUS_OK}
            if c.finish_reason != "stop" or len(c.top_logprobs) != len(c.completion_token_ids):
                continue  # a cut-off completion has no target for stopping
            if dc.only_correct and (scores.get(accuracy) != 1.0 or scores.get("format") != 1.0):
                continue
            rows.append(
                {
                    "prompt_id": g.id.prompt_id,
                    "prompt": g.prompt,
                    "completion": c.text,
                    "prompt_token_ids": list(g.prompt_token_ids),
                    "completion_token_ids": list(c.completion_token_ids),
                    "topk_ids": [list(t.token_ids) for t in c.top_logprobs],
                    "topk_logprobs": [[round(x, 6) for x in t.logprobs] for t in c.top_logprobs],
                    "teacher": teacher,
                    "teacher_version": c.policy_version,
                    "k": dc.top_k,
                }
            )
    return rows


def _student_dir(ctx: StageContext) -> str:
    """The student's initial checkpoint: `distill.student_path`, or a zoo tiny-qwen of the student shape
    (zoo policies share one tokenizer, so a zoo teacher's token ids are the student's)."""
    from services.models.zoo import resolve_model_dir

    dc = ctx.cfg.distill
    if dc.student_path:
        return str(resolve_model_dir(OmegaConf.create({"path": dc.student_path})))
    if ctx.cfg.model.path:
        raise ValueError(
            "distill: the teacher is model.path (its own tokenizer); set distill.student_path to a smaller "
            "checkpoint with the same tokenizer"
        )
    student = OmegaConf.to_container(ctx.cfg.model)
    student.update(
        name="tiny-qwen", hidden_size=dc.student_hidden_size, num_layers=dc.student_num_layers,
        num_heads=dc.student_num_heads, num_kv_heads=dc.student_num_kv_heads,
        intermediate_size=dc.student_intermediate_size,
    )  # fmt: skip
    return str(resolve_model_dir(OmegaConf.create(student)))


def _train_student(ctx: StageContext, student: str, data: Path, beta: float, label: str) -> str:
    import ray

    dc = ctx.cfg.distill
    with learner_session(ctx, model_dir=student) as actor:
        ray.get(actor.load_distill_dataset.remote(str(data), ctx.cfg.learner.seed, dc.lr))
        take = lambda n: ray.get(actor.distill_steps.remote(n, beta))  # noqa: E731
        out, m = train_loop(ctx, label, take, dc.steps, None)
        ckpt = finish(ctx, actor, label, sync=False)  # the workers switch to the student after distill
    log.info("%s: %d steps (beta %.2f), final loss %.4f (ce %.4f, kl %.4f) -> %s", label, out["steps"], beta,
             m["loss"], m["ce"], m["kl"], ckpt)  # fmt: skip
    return ckpt
