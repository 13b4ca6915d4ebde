"""GRPOTrainer on a tiny random Qwen2: it learns, micro-batching is exact, checkpoints resume, SFT works."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load as safetensors_load

from services.config import LearnerConfig
from services.learner.batch import build_batch, select_groups
from services.learner.logprobs import token_logprobs
from services.learner.sft import build_sft_batch, pack_sequences
from services.pb import rollout_pb2

PROMPT, GOOD, BAD = [1, 2, 3], [4, 5, 6], [7, 8, 9]
CFG = LearnerConfig(lr=1e-2, kl_coef=0.02, micro_batch_size=2, num_threads=1, seed=0)


def _trainer(model_dir, resume=False, **overrides):
    from services.learner.trainer import GRPOTrainer

    return GRPOTrainer(model_dir, replace(CFG, **overrides), resume=resume)


def _sequence_logprob(model, completion):
    row = torch.tensor([PROMPT + completion])
    with torch.no_grad():
        return float(token_logprobs(model, row, torch.ones_like(row))[0, len(PROMPT) :].sum())


def _group(
    model,
    version,
    prompt_id="p",
    completions=(GOOD, BAD, GOOD, BAD),
    rewards=(1.0, 0.0, 1.0, 0.0),
    prompt=PROMPT,
):
    """A scored group whose behaviour log-probs are the model's own (on-policy sampling)."""
    group = rollout_pb2.ScoredGroup(
        id=rollout_pb2.TaskId(run_id="r", prompt_id=prompt_id),
        prompt_token_ids=prompt,
        policy_version=version,
    )
    for i, (completion, reward) in enumerate(zip(completions, rewards, strict=True)):
        row = torch.tensor([prompt + list(completion)])
        with torch.no_grad():
            lp = token_logprobs(model, row, torch.ones_like(row))[0, len(prompt) :]
        group.completions.add(
            sample_index=i, completion_token_ids=completion, logprobs=lp.tolist(), total_reward=reward,
            status=rollout_pb2.REWARD_STATUS_OK, policy_version=version,
        )  # fmt: skip
    return group


def test_grpo_steps_raise_the_rewarded_completion(tiny_model_dir):
    trainer = _trainer(tiny_model_dir)
    good_before, bad_before = _sequence_logprob(trainer.model, GOOD), _sequence_logprob(trainer.model, BAD)
    for step in range(5):
        group = _group(trainer.model, trainer.policy_version, prompt_id=f"p{step}")
        selection = select_groups([group], trainer.trained_group_ids, trainer.policy_version, max_staleness=0)
        metrics = trainer.step(build_batch(selection.groups, pad_id=0, eps=CFG.adv_eps))
    good_after, bad_after = _sequence_logprob(trainer.model, GOOD), _sequence_logprob(trainer.model, BAD)
    assert good_after > good_before + 0.5, (good_before, good_after)
    assert bad_after < bad_before - 0.5, (bad_before, bad_after)
    assert trainer.policy_version == 5 and trainer.step_count == 5
    assert trainer.trained_group_ids == {f"r/p{i}/0" for i in range(5)}
    assert metrics["kl"] > 0 and metrics["grad_norm"] > 0 and metrics["tokens"] == 12.0  # 4 completions x 3
    assert metrics["reward_mean"] == pytest.approx(0.5) and metrics["policy_version"] == 5.0
    # The published weights are the trained ones.
    weights = safetensors_load(trainer.state_dict_safetensors())
    torch.testing.assert_close(weights["lm_head.weight"], trainer.model.lm_head.weight.detach())


def _grads_at_step(trainer, batch):
    captured = {}

    def hook(optimizer, args, kwargs):
        captured.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})

    trainer.optimizer.register_step_pre_hook(hook)
    metrics = trainer.step(batch)
    return captured, metrics


@pytest.mark.parametrize("loss_agg", ["seq_mean", "token_mean"])
def test_micro_batching_gives_the_full_batch_gradient(tiny_model_dir, loss_agg):
    whole = _trainer(tiny_model_dir, micro_batch_size=8, loss_agg=loss_agg)
    split = _trainer(tiny_model_dir, micro_batch_size=3, loss_agg=loss_agg)
    g1 = _group(
        whole.model, 0, "a", completions=(GOOD, BAD, [4], [7, 8, 9, 4, 5]), rewards=(1.0, 0.0, 0.5, 0.2)
    )
    g2 = _group(whole.model, 0, "b", completions=([4, 5], BAD, GOOD), rewards=(0.0, 1.0, 0.3))
    batch = build_batch([g1, g2], pad_id=0, eps=1e-6)
    batch.old_logprobs += 0.3 * batch.completion_mask * torch.randn(batch.old_logprobs.shape)  # ratios != 1
    grads_whole, m_whole = _grads_at_step(whole, batch)
    grads_split, m_split = _grads_at_step(split, batch)
    for name, grad in grads_whole.items():
        torch.testing.assert_close(grads_split[name], grad, atol=1e-6, rtol=1e-4)
    assert m_split["loss"] == pytest.approx(m_whole["loss"], abs=1e-6)
    assert m_split["clip_frac"] == pytest.approx(m_whole["clip_frac"]) and m_whole["clip_frac"] > 0


def test_gradient_checkpointing_gives_the_same_gradient(tiny_model_dir):
    plain = _trainer(tiny_model_dir)
    recomputed = _trainer(tiny_model_dir, gradient_checkpointing=True)
    assert recomputed.model.is_gradient_checkpointing and recomputed.model.training
    batch = build_batch([_group(plain.model, 0, completions=(GOOD, BAD, [4], [7, 8]))], pad_id=0, eps=1e-6)
    grads_plain, m_plain = _grads_at_step(plain, batch)
    grads_recomputed, m_recomputed = _grads_at_step(recomputed, batch)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_recomputed[name], grad, atol=1e-7, rtol=1e-5)
    assert m_recomputed["loss"] == pytest.approx(m_plain["loss"], abs=1e-7)


def test_gradient_checkpointing_refuses_a_policy_with_dropout(make_tiny_qwen, tmp_path):
    from transformers import AutoConfig

    make_tiny_qwen(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    config.attention_dropout = 0.1
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="gradient_checkpointing needs a policy without dropout"):
        _trainer(tmp_path, gradient_checkpointing=True)


def test_bfloat16_autocast_trains_with_float32_state_and_nearby_logprobs(tiny_model_dir):
    fp32 = _trainer(tiny_model_dir)
    bf16 = _trainer(tiny_model_dir, autocast_dtype="bfloat16")
    group = _group(fp32.model, 0, completions=(GOOD, BAD, [4], [7, 8]))
    batch = build_batch([group], pad_id=0, eps=1e-6)
    row = batch.input_ids[:1]
    with torch.no_grad(), bf16._precision():
        low = token_logprobs(bf16.model, row, torch.ones_like(row))
    high = token_logprobs(fp32.model, row, torch.ones_like(row)).detach()
    assert low.dtype == torch.float32  # the log-softmax is float32 even under autocast
    gap = (low - high).abs().max().item()
    assert 0 < gap < 0.1, gap  # bf16 matmuls: close, not equal
    before = {n: p.detach().clone() for n, p in bf16.model.named_parameters()}
    metrics = bf16.step(batch)
    assert metrics["policy_version"] == 1.0 and metrics["ratio_max"] > 1.0  # the rounding shows in the ratio
    assert all(
        p.dtype == torch.float32 and not torch.equal(p, before[n]) for n, p in bf16.model.named_parameters()
    )
    with pytest.raises(ValueError, match="learner.autocast_dtype='int8'"):
        _trainer(tiny_model_dir, autocast_dtype="int8")


def test_checkpoint_resume_restores_state(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir)
    trainer.step(build_batch([_group(trainer.model, 0)], pad_id=0, eps=1e-6))
    ckpt = trainer.save(tmp_path / "ckpt", extra_meta={"stage": "rl"})

    resumed = _trainer(ckpt, resume=True, lr=5e-3)
    assert resumed.policy_version == 1 and resumed.step_count == 1
    assert resumed.trained_group_ids == {"r/p/0"} and resumed.reference_dir == tiny_model_dir
    assert resumed.lr == 5e-3  # the configured lr, not the saved one
    for (name, p), q in zip(trainer.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, msg=name)
        torch.testing.assert_close(
            resumed.optimizer.state[q]["exp_avg"], trainer.optimizer.state[p]["exp_avg"]
        )

    new_stage = _trainer(ckpt)  # resume=False: a new stage starting from these weights
    assert new_stage.policy_version == 1 and new_stage.step_count == 0 and not new_stage.trained_group_ids
    assert new_stage.reference_dir == ckpt and not new_stage.optimizer.state


def test_kl_off_skips_the_reference_and_bad_config_fails(tiny_model_dir):
    assert _trainer(tiny_model_dir, kl_coef=0.0).reference is None
    with pytest.raises(ValueError, match="loss_agg"):
        _trainer(tiny_model_dir, loss_agg="sum")


def test_non_finite_gradient_is_refused(tiny_model_dir):
    trainer = _trainer(tiny_model_dir, kl_coef=0.0)
    with torch.no_grad():
        trainer.model.lm_head.weight[4, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="policy_version=0"):
        trainer.step(build_batch([_group(trainer.model, 0)], pad_id=0, eps=1e-6))
    assert trainer.policy_version == 0 and not trainer.trained_group_ids


def test_sft_steps_lower_the_response_loss_and_packing_matches(tiny_model_dir):
    examples = [(PROMPT, GOOD), ([4, 5], [6, 7, 8])]
    padded = build_sft_batch(examples, pad_id=0, eos_id=31)
    packed = pack_sequences(examples, max_len=16, pad_id=0, eos_id=31)
    a, b = _trainer(tiny_model_dir, kl_coef=0.0), _trainer(tiny_model_dir, kl_coef=0.0)
    a.set_lr(CFG.sft_lr)
    b.set_lr(CFG.sft_lr)
    first_a, first_b = a.sft_step(padded), b.sft_step(packed)
    # Same 8 target tokens (4 + EOS, 3 + EOS) in both layouts: same loss and gradient norm.
    assert first_a["tokens"] == first_b["tokens"] == 8.0
    assert first_b["loss"] == pytest.approx(first_a["loss"], abs=1e-5)
    assert first_b["grad_norm"] == pytest.approx(first_a["grad_norm"], rel=1e-4)
    losses = [a.sft_step(padded)["loss"] for _ in range(5)]
    assert losses[-1] < first_a["loss"] - 0.5, (first_a["loss"], losses)
    assert a.policy_version == 6 and first_a["lr"] == CFG.sft_lr
