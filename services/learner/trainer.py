"""The learner's training step: GRPO and SFT updates of a Hugging Face causal-LM policy.

`GRPOTrainer` owns the policy, the frozen reference policy, the AdamW optimizer, the policy version
and the set of trained group ids; it is pure torch + transformers (no Redis, Ray, gRPC or vLLM), so
the service loop around it stays thin and the step itself is testable on a tiny model.

How it departs from the paper and why:
- Dropout stays off (the model is in eval mode while training): the importance ratio compares the
  learner's distribution with the sampler's, which has no dropout. Gradients are unaffected by mode.
- The behaviour log-probs are the sampler's own (vLLM), not recomputed by the learner; with
  `max_staleness=0` and one optimizer step per batch the ratio starts at ~1, as in the paper's
  single-update setting.
- One optimizer step per batch of groups (the paper's mu = 1); micro-batches only bound memory and
  give the same gradient as one big batch (see `grpo.aggregate`'s normaliser).
- The reference policy is the stage's starting checkpoint and is skipped entirely when kl_coef = 0.
- With `learner.lora.rank > 0` the policy is a peft-wrapped model training only its adapters; the
  reference is then its base with the adapter off, and weights and checkpoints leave merged
  (`services/learner/lora.py`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save

from services.learner import lora
from services.learner.batch import GRPOBatch
from services.learner.checkpoint import load_checkpoint_meta, load_optimizer_state, save_checkpoint
from services.learner.distill import DistillBatch, distill_loss
from services.learner.distributed import (
    SINGLE,
    RankInfo,
    all_reduce_sums,
    full_items,
    full_tensor,
    rank_share,
    shard_policy,
    unsharded,
)
from services.learner.grpo import LOSS_AGG_MODES, grpo_loss
from services.learner.logprobs import token_logprobs
from services.learner.sft import SFTBatch, packing_is_exact
from services.learner.sharded_checkpoint import has_sharded_state, load_sharded_state, save_sharded_checkpoint

log = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _load_policy(directory: str | Path, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    return model.to(device).eval()


def _load_tokenizer(directory: Path) -> Any | None:
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _tied_targets(model: torch.nn.Module) -> set[str]:
    """Names HF treats as the tied copy (e.g. lm_head.weight) and leaves out of saved checkpoints."""
    keys = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ()
    return set(keys.keys() if isinstance(keys, dict) else keys)


def untied_state_dict(model: torch.nn.Module, registered: bool = False) -> dict[str, torch.Tensor]:
    """The model's state dict with each shared tensor once, keeping the name HF keeps.

    With tied embeddings `lm_head.weight` is the same tensor as `model.embed_tokens.weight`; like
    `save_pretrained`, keep the embedding and drop the head, so the result loads into HF and vLLM.
    `registered` reads the tensors registered on the modules instead of calling `state_dict()` (whose
    FSDP2 hook re-shards the parameters: inside `distributed.unsharded` the registered ones are full).
    """
    targets = _tied_targets(model)
    by_storage: dict[tuple, list[str]] = defaultdict(list)
    state = _registered_tensors(model) if registered else model.state_dict()
    for name, tensor in state.items():
        by_storage[(tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))].append(name)
    keep = set()
    for names in by_storage.values():
        sources = [n for n in names if n not in targets] or names
        keep.add(sources[0])
    return {name: tensor for name, tensor in state.items() if name in keep}


def _registered_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers as registered on the modules, under their state-dict names."""
    out = dict(model.named_parameters(remove_duplicate=False))
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, buffer in module.named_buffers(prefix=prefix, recurse=False):
            if buffer is not None and name.rsplit(".", 1)[-1] not in module._non_persistent_buffers_set:
                out[name] = buffer
    return out


_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _autocast_dtype(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    if name not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"learner.autocast_dtype={name!r}: choose one of {list(_AUTOCAST_DTYPES)} or unset it"
        )
    return _AUTOCAST_DTYPES[name]


def _enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute block activations in backward. transformers only checkpoints in training mode, so the
    policy goes to train mode; that is only the same maths (see the module doc on dropout) when the
    model has no dropout, which is checked rather than assumed."""
    rates = {k: v for k, v in model.config.to_dict().items() if "dropout" in k and isinstance(v, float) and v}
    if rates or any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        raise ValueError(
            f"learner.gradient_checkpointing needs a policy without dropout (it trains in train mode); "
            f"this one has {rates or 'Dropout modules with p > 0'}"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()


class GRPOTrainer:
    """GRPO and SFT steps on a policy loaded from an HF checkpoint directory.

    `model_dir` may be a plain HF directory (version 0) or an r1forge checkpoint. From a checkpoint the
    policy version always continues; with `resume=True` the step count, the trained group ids and the
    optimizer state are restored too (the same stage restarting), otherwise they start fresh (a new
    stage starting from that checkpoint). `reference_dir` is the frozen KL reference; it defaults to
    the one recorded in the checkpoint when resuming, else `model_dir` (the stage's starting point).
    """

    def __init__(
        self,
        model_dir: str | Path,
        cfg: Any,
        reference_dir: str | Path | None = None,
        resume: bool = False,
        rank: RankInfo = SINGLE,
    ) -> None:
        if cfg.loss_agg not in LOSS_AGG_MODES:
            raise ValueError(
                f"learner.loss_agg={cfg.loss_agg!r} is unknown; choose one of {list(LOSS_AGG_MODES)}"
            )
        if cfg.micro_batch_size < 1:
            raise ValueError(f"learner.micro_batch_size={cfg.micro_batch_size} must be >= 1")
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.model_dir = Path(model_dir)
        self.device = torch.device(cfg.device)
        self.rank = rank
        meta = load_checkpoint_meta(self.model_dir)
        self.lora = lora.enabled(cfg.lora)
        # The weights the policy starts from: model_dir, or the base of a LoRA checkpoint being resumed.
        self.base_dir = lora.base_dir(self.model_dir, meta, cfg.lora, resume)
        self.model = _load_policy(self.base_dir, self.device)
        self._autocast = _autocast_dtype(cfg.autocast_dtype)
        if cfg.gradient_checkpointing:
            _enable_gradient_checkpointing(self.model)
        if self.lora:
            self.model = lora.wrap(self.model, cfg.lora)
            if resume and "lora" in meta:
                lora.load_adapter(self.model, self.model_dir)
        self._weight_names = list(untied_state_dict(self.model))  # what iter_weights yields, in order
        if rank.sharded:  # FSDP2: from here on each rank holds 1/N of every parameter
            shard_policy(self.model, self.device.type)
        self.tokenizer = _load_tokenizer(self.model_dir)
        recorded_reference = meta.get("reference_dir") if resume else None
        self.reference_dir = Path(reference_dir or recorded_reference or self.model_dir)
        self.reference: torch.nn.Module | None = None
        # With LoRA the base itself, adapter off, is the reference when it is the reference's weights.
        self._reference_is_base = self.lora and self.reference_dir.resolve() == self.base_dir.resolve()
        if cfg.kl_coef > 0 and not self._reference_is_base:
            self.reference = _load_policy(self.reference_dir, self.device).requires_grad_(False)
            if rank.sharded:
                shard_policy(self.reference, self.device.type)
        params = lora.trainable_parameters(self.model) if self.lora else self.model.parameters()
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.policy_version = int(meta["policy_version"])
        self.step_count = 0
        self.trained_group_ids: set[str] = set()
        if resume:
            self.step_count = int(meta["step"])
            self.trained_group_ids = set(meta["trained_group_ids"])
            if rank.sharded and has_sharded_state(self.model_dir):
                load_sharded_state(self.model_dir, self.model, self.optimizer)
            elif not load_optimizer_state(self.model_dir, self.optimizer):
                log.warning("checkpoint %s has no optimizer state; AdamW restarts from zero", self.model_dir)
            self.set_lr(cfg.lr)
        self._packing_checked = False
        self._balancer = None
        if cfg.moe_bias_update_speed != 0:  # a negative speed is refused by name, not taken as "off"
            from services.learner.moe_balance import ExpertBiasBalancer

            self._balancer = ExpertBiasBalancer(self.model, cfg.moe_bias_update_speed)
        self._balance_metrics: dict[str, float] = {}

    # -- optimizer ---------------------------------------------------------------------------------

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (e.g. `sft_lr` before SFT steps)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _optimizer_step(self) -> float:
        """Clip, step and advance the policy version; return the pre-clip gradient norm."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        grad_norm = float(full_tensor(norm))  # sharded: the norm over every rank's shards
        if not torch.isfinite(torch.tensor(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"gradient norm is {grad_norm} at policy_version={self.policy_version}; the update was "
                "not applied. Lower learner.lr or check the batch's log-probs for inf/NaN."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self._balancer is not None:
            self._balance_metrics = self._balancer.update(self.rank)
        self.policy_version += 1
        self.step_count += 1
        return grad_norm

    def _routing(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, counted: bool = True):
        """Context of a training forward: mixed precision (if on), and the expert balancer (if on) counts
        its routing (not for a rank's zero-weight repeat, see `distributed.rank_share`)."""
        stack = ExitStack()
        stack.enter_context(self._precision())
        if self._balancer is not None and counted:
            stack.enter_context(self._balancer.tokens(input_ids, attention_mask))
        return stack

    def _precision(self):
        """`learner.autocast_dtype`: torch.autocast for the matmuls; log-softmax, weights, gradients and
        AdamW state stay float32 (`logprobs.gather_logprobs` upcasts the logits)."""
        if self._autocast is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast)

    def _reference(self):
        """Context giving the frozen KL reference: its own model, or with LoRA the base, adapter off."""
        return lora.adapter_disabled(self.model) if self._reference_is_base else nullcontext(self.reference)

    # -- steps -------------------------------------------------------------------------------------

    def step(self, batch: GRPOBatch) -> dict[str, float]:
        """One GRPO optimizer step over `batch` (in micro-batches); return metrics.

        The batch's group keys join `trained_group_ids` once the update is applied.
        """
        if batch.num_sequences == 0:
            raise ValueError("GRPO step on an empty batch; build_batch needs admitted groups")
        cfg = self.cfg
        normaliser = batch.num_sequences if cfg.loss_agg == "seq_mean" else max(1, batch.num_tokens)
        sums: dict[str, float] = defaultdict(float)
        ratio_max = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for mb, weight in rank_share(batch.to(self.device).micro_batches(cfg.micro_batch_size), self.rank):
            with self._routing(mb.input_ids, mb.attention_mask, counted=weight > 0):
                logp = token_logprobs(
                    self.model, mb.input_ids, mb.attention_mask, temperature=cfg.temperature
                )  # [b, t]
            ref_logp = None
            if cfg.kl_coef > 0:
                with torch.no_grad(), self._precision(), self._reference() as reference:
                    ref_logp = token_logprobs(
                        reference, mb.input_ids, mb.attention_mask, temperature=cfg.temperature
                    )  # [b, t]
            loss, m = grpo_loss(
                logp, mb.old_logprobs, ref_logp, mb.advantages, mb.completion_mask,
                cfg.clip_eps, cfg.kl_coef, cfg.loss_agg, normaliser,
            )  # fmt: skip
            (loss * (weight * self.rank.world_size)).backward()
            sums["loss"] += weight * loss.item()  # micro-batch losses add up to the full-batch loss
            for key in ("pg_loss", "kl", "clip_frac", "ratio_mean"):
                sums[key] += weight * m[key] * m["num_tokens"]
            sums["tokens"] += weight * m["num_tokens"]
            ratio_max = max(ratio_max, m["ratio_max"] if weight else 0.0)
        sums = all_reduce_sums({**sums, "ratio_max": ratio_max}, self.rank, maxima=["ratio_max"])
        ratio_max = sums.pop("ratio_max")
        grad_norm = self._optimizer_step()
        self.trained_group_ids.update(batch.group_keys)
        tokens = max(1.0, sums["tokens"])
        metrics = {key: sums[key] / tokens for key in ("pg_loss", "kl", "clip_frac", "ratio_mean")}
        metrics.update(batch.reward_stats())
        metrics.update(
            loss=sums["loss"], ratio_max=ratio_max, tokens=sums["tokens"], grad_norm=grad_norm,
            lr=self.lr, policy_version=float(self.policy_version), **self._balance_metrics,
        )  # fmt: skip
        return metrics

    def sft_step(self, batch: SFTBatch) -> dict[str, float]:
        """One SFT optimizer step: cross-entropy on completion tokens, mean over all of the batch's."""
        if batch.position_ids is not None and not self._packing_checked:
            if not packing_is_exact(self.model, self.model.config.get_text_config().vocab_size):
                raise ValueError(
                    f"{type(self.model).__name__} attends across packed examples (its attention does not "
                    "use transformers' packed-sequence masks); build SFT batches without pack=True"
                )
            self._packing_checked = True
        total_tokens = max(1, batch.num_tokens)
        loss_sum = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for mb, weight in rank_share(batch.micro_batches(self.cfg.micro_batch_size), self.rank):
            ids = mb.input_ids.to(self.device)
            attention = None if mb.attention_mask is None else mb.attention_mask.to(self.device)
            positions = None if mb.position_ids is None else mb.position_ids.to(self.device)
            with self._routing(ids, attention, counted=weight > 0):
                logp = token_logprobs(self.model, ids, attention, positions)  # [b, t]
            loss = -(logp * mb.loss_mask.to(self.device)).sum() / total_tokens
            (loss * (weight * self.rank.world_size)).backward()
            loss_sum += weight * loss.item()
        loss_sum = all_reduce_sums({"loss": loss_sum}, self.rank)["loss"]
        grad_norm = self._optimizer_step()
        return {
            "loss": loss_sum,
            "tokens": float(batch.num_tokens),
            "examples": float(batch.num_examples),
            "truncated": float(batch.num_truncated),
            "grad_norm": grad_norm,
            "lr": self.lr,
            "policy_version": float(self.policy_version),
            **self._balance_metrics,
        }

    def distill_step(self, batch: DistillBatch, beta: float) -> dict[str, float]:
        """One distillation optimizer step: beta * CE + (1 - beta) * KL(teacher || student) over the
        teacher's top-k, token mean over the whole batch (`services.learner.distill`)."""
        normaliser = max(1, batch.num_tokens)
        sums: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for mb, weight in rank_share(batch.micro_batches(self.cfg.micro_batch_size), self.rank):
            ids, attention = mb.input_ids.to(self.device), mb.attention_mask.to(self.device)
            with self._routing(ids, attention, counted=weight > 0):
                logits = self.model(input_ids=ids, attention_mask=attention).logits  # [b, t, V]
            loss, m = distill_loss(
                logits,
                mb.target_ids.to(self.device),
                mb.topk_ids.to(self.device),
                mb.topk_logprobs.to(self.device),
                mb.loss_mask.to(self.device),
                beta,
                normaliser=normaliser,
            )
            (loss * (weight * self.rank.world_size)).backward()
            for key in ("loss", "ce", "kl", "teacher_top1_agreement"):
                sums[key] = sums.get(key, 0.0) + weight * m[key] * m["tokens"]
            sums["tokens"] = sums.get("tokens", 0.0) + weight * m["tokens"]
        sums = all_reduce_sums(sums, self.rank)
        grad_norm = self._optimizer_step()
        tokens = max(1.0, sums.pop("tokens", 0.0))
        return {
            **{k: v / tokens for k, v in sums.items()},
            "tokens": tokens,
            "examples": float(batch.num_examples),
            "grad_norm": grad_norm,
            "lr": self.lr,
            "policy_version": float(self.policy_version),
            **self._balance_metrics,
        }

    # -- weights and checkpoints ------------------------------------------------------------------

    def iter_weights(self, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The policy's weights one tensor at a time, as (HF checkpoint name, full CPU tensor), tied copies
        left out (see `untied_state_dict`). This is the one way weights leave the trainer (weight sync,
        exports): a sharded or adapter-wrapped policy yields the same names and full tensors, gathered or
        merged one at a time, so a consumer never needs the whole model twice."""
        if self.lora and self.rank.sharded:  # every rank gathers the whole policy; rank 0 merges and yields
            with unsharded(self.model):
                if self.rank.is_leader:
                    yield from self._lora_weights(dtype, registered=True)
            return
        if self.lora:
            yield from self._lora_weights(dtype)
            return
        items = (
            full_items(self.model, self._weight_names)
            if self.rank.sharded
            else untied_state_dict(self.model).items()
        )
        for name, t in items:  # sharded: every rank gathers each tensor, rank 0 alone yields them
            if self.rank.is_leader:
                yield name, (t.detach().to("cpu", dtype=dtype) if dtype else t.detach().cpu()).contiguous()

    def _lora_weights(
        self, dtype: torch.dtype | None, registered: bool = False
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """The base's HF names, each adapted weight merged as it is reached (lora.py). `registered`: read
        the full parameters of an unsharded FSDP policy, copied out (their memory goes at the reshard)."""
        base = untied_state_dict(lora.base_model(self.model), registered)
        for name, t in lora.merged_weights(self.model, base):
            t = t.detach().to("cpu", dtype=dtype or t.dtype, copy=registered)
            yield name, t.contiguous()

    def _save_adapter_unsharded(self, directory: Path) -> None:
        lora.save_adapter(self.model, directory, state=_registered_tensors(self.model))

    def state_dict_safetensors(self, dtype: torch.dtype | None = None) -> bytes:
        """The policy's weights as safetensors bytes (`iter_weights`)."""
        tensors = dict(self.iter_weights(dtype))
        return safetensors_save(tensors, metadata={"policy_version": str(self.policy_version)})

    def save(self, directory: str | Path, extra_meta: dict[str, Any] | None = None) -> Path:
        """Write a resumable checkpoint (weights, tokenizer, optimizer, version, trained ids)."""
        meta = {
            "policy_version": self.policy_version,
            "step": self.step_count,
            "trained_group_ids": self.trained_group_ids,
            "reference_dir": str(self.reference_dir),
            **(extra_meta or {}),
        }
        if self.lora and Path(directory).resolve() == self.base_dir.resolve():
            raise ValueError(f"checkpoint {directory} would overwrite the LoRA base {self.base_dir}")
        if self.lora:
            meta["lora"] = lora.checkpoint_meta(self.cfg.lora, self.base_dir)
        if self.rank.sharded:
            return save_sharded_checkpoint(
                directory, self.model, self.iter_weights(), self.tokenizer, meta, self.optimizer, self.rank,
                write_extra=(lambda tmp: self._save_adapter_unsharded(tmp)) if self.lora else None,
            )  # fmt: skip
        if not self.lora:
            return save_checkpoint(directory, self.model, self.tokenizer, meta, self.optimizer)
        merged = dict(self.iter_weights())  # model.safetensors holds merged weights: what vLLM serves
        return save_checkpoint(
            directory, lora.base_model(self.model), self.tokenizer, meta, self.optimizer,
            state_dict=merged, write_extra=lambda tmp: lora.save_adapter(self.model, tmp),
        )  # fmt: skip
