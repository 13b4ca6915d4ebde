"""LoRA in the learner (`learner.lora.rank > 0`, services/learner/lora.py) on the real tiny zoo policies:
only the adapters train, weights leave merged under the plain model's names, the KL reference is the base
with the adapter off, and checkpoints resume the adapter on its original base."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import _group  # same directory (rootdir-relative imports)

from services.config import LearnerConfig, LoRAConfig
from services.learner.batch import build_batch
from services.learner.distill import build_distill_batch
from services.learner.logprobs import token_logprobs
from services.learner.sft import build_sft_batch

PROMPT, GOOD, BAD = [5, 6, 7], [8, 9, 10], [11, 12, 13]
LORA = LoRAConfig(rank=4, alpha=8.0)
CFG = LearnerConfig(lr=1e-2, kl_coef=0.05, micro_batch_size=2, num_threads=1, seed=0, lora=LORA)
MODELS = ["tiny-qwen", "tiny-deepseek"]


def _trainer(model_dir, resume=False, **overrides):
    from services.learner.trainer import GRPOTrainer

    return GRPOTrainer(model_dir, replace(CFG, **overrides), resume=resume)


def _batch(model, version=0, prompt_id="p"):
    """A GRPO batch of one group whose behaviour log-probs are `model`'s own (on-policy sampling)."""
    completions, rewards = (GOOD, BAD, GOOD[:2], BAD[:1]), (1.0, 0.0, 0.5, 0.0)
    return build_batch([_group(model, version, prompt_id, completions, rewards, PROMPT)], pad_id=0, eps=1e-6)


def _params(model, adapter: bool) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if (".lora_" in n) == adapter}


def _manual_merge(trainer) -> dict[str, torch.Tensor]:
    """W + alpha / r * B @ A for every adapted Linear, by hand from the module's own tensors."""
    out = {}
    for name, module in trainer.model.get_base_model().named_modules():
        if hasattr(module, "lora_A") and isinstance(module.base_layer, torch.nn.Linear):
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            out[f"{name}.weight"] = module.base_layer.weight + LORA.alpha / LORA.rank * b @ a
    return out


def _peft_merge(trainer) -> dict[str, torch.Tensor]:
    """peft's own in-place merge, on a copy of the wrapped policy."""
    import copy

    return copy.deepcopy(trainer.model).merge_and_unload().state_dict()


@pytest.mark.parametrize("name, tied", [("tiny-qwen", False), ("tiny-qwen", True), ("tiny-deepseek", False)])
def test_a_grpo_step_trains_only_the_adapters_and_weights_leave_merged(tiny_zoo, name, tied):
    _, model_dir = tiny_zoo(tied, name)
    trainer = _trainer(model_dir)
    plain = _trainer(model_dir, lora=LoRAConfig(rank=0))
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    (group,) = trainer.optimizer.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in trainer.model.parameters() if p.requires_grad}
    assert trainer.reference is None  # the reference is the base with the adapter off, not a second copy

    # B = 0 at the start: the merged weights are the base's, with the plain model's names in its order.
    before = dict(trainer.iter_weights())
    plain_weights = list(plain.iter_weights())
    assert list(before) == [n for n, _ in plain_weights]
    for n, t in plain_weights:
        assert torch.equal(before[n], t), n

    base, adapters = _params(trainer.model, adapter=False), _params(trainer.model, adapter=True)
    metrics = trainer.step(_batch(trainer.model))
    assert metrics["grad_norm"] > 0 and metrics["policy_version"] == 1.0 and metrics["kl"] == 0.0
    for n, p in _params(trainer.model, adapter=False).items():
        assert torch.equal(p, base[n]), n  # the base is bit-identical
    changed = {n for n, p in _params(trainer.model, adapter=True).items() if not torch.equal(p, adapters[n])}
    # With B = 0 the gradient of A (B^T times the output's gradient) is 0: the first step moves B only.
    assert changed == {n for n in adapters if ".lora_B." in n}
    trainer.step(_batch(trainer.model, 1, "q"))
    assert all(not torch.equal(p, adapters[n]) for n, p in _params(trainer.model, adapter=True).items())
    for n, p in _params(trainer.model, adapter=False).items():
        assert torch.equal(p, base[n]), n

    after = dict(trainer.iter_weights())
    manual, by_peft = _manual_merge(trainer), _peft_merge(trainer)
    assert manual and set(manual) <= set(after) and set(after) <= set(by_peft)
    for n, t in manual.items():
        torch.testing.assert_close(after[n], t.detach(), rtol=0, atol=1e-6)
        assert not torch.equal(after[n], before[n]), n
    for n, t in after.items():
        torch.testing.assert_close(t, by_peft[n], rtol=0, atol=1e-6, msg=n)
    if name == "tiny-deepseek":  # peft adapts the fused routed experts (see lora.py); they merge too
        assert not torch.equal(after["model.layers.1.mlp.experts.gate_up_proj"],
                               before["model.layers.1.mlp.experts.gate_up_proj"])  # fmt: skip
    # The merged model computes what the wrapped one does.
    merged = plain.model
    merged.load_state_dict(after, strict=False)
    row = torch.tensor([PROMPT + GOOD])
    with torch.no_grad():
        torch.testing.assert_close(
            token_logprobs(merged, row, None), token_logprobs(trainer.model, row, None), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("name", MODELS)
def test_the_reference_is_the_base_with_the_adapter_off(tiny_zoo, name):
    from transformers import AutoModelForCausalLM

    _, model_dir = tiny_zoo(name=name)
    trainer = _trainer(model_dir)
    trainer.step(_batch(trainer.model))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    row = torch.tensor([PROMPT + GOOD + BAD])
    with torch.no_grad():
        expected = token_logprobs(base, row, None)
        with trainer._reference() as reference:
            ref = token_logprobs(reference, row, None)
        policy = token_logprobs(trainer.model, row, None)
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-6)
    assert (policy - expected).abs().max() > 1e-4  # the adapter is back on after the context
    assert all(p.requires_grad for n, p in trainer.model.named_parameters() if ".lora_" in n)


def test_the_adapter_off_reference_gives_the_gradient_of_a_separate_reference_copy(tiny_zoo, tmp_path):
    """Switching the adapter off for the reference forward (peft toggles requires_grad on the adapters
    inside the step) leaves the step's gradient exactly that of a trainer with a second, loaded reference."""
    import shutil

    _, model_dir = tiny_zoo(name="tiny-qwen")
    copy_dir = shutil.copytree(model_dir, tmp_path / "reference")
    from services.learner.trainer import GRPOTrainer

    shared = _trainer(model_dir)
    separate = GRPOTrainer(model_dir, CFG, reference_dir=copy_dir)
    assert shared.reference is None and separate.reference is not None
    batch, metrics = _batch(shared.model), []
    for trainer in (shared, separate):
        trainer.step(_batch(trainer.model, 0, "warm"))  # B != 0, so the policy and the reference differ
        metrics.append(trainer.step(batch))
    assert metrics[0]["kl"] > 0 and metrics[0]["kl"] == pytest.approx(metrics[1]["kl"], rel=1e-6)
    assert metrics[0]["grad_norm"] == pytest.approx(metrics[1]["grad_norm"], rel=1e-6)
    for (n, p), q in zip(shared.model.named_parameters(), separate.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-8, msg=n)


@pytest.mark.parametrize("name", MODELS)
def test_resume_restores_adapter_and_optimizer_and_continues_identically(tiny_zoo, name, tmp_path):
    from transformers import AutoModelForCausalLM

    _, model_dir = tiny_zoo(name=name)
    # tiny-deepseek also balances its experts: the routers' biases are base buffers that move and must resume.
    speed = {"moe_bias_update_speed": 0.01} if name == "tiny-deepseek" else {}
    trainer = _trainer(model_dir, **speed)
    trainer.step(_batch(trainer.model, 0, "a"))
    ckpt = trainer.save(tmp_path / "ckpt")
    assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()
    # The checkpoint is a plain HF model of the merged weights (what vLLM loads).
    saved = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)
    merged = dict(trainer.iter_weights())
    for n, t in saved.state_dict().items():
        if n in merged:
            assert torch.equal(t, merged[n]), n
    assert not hasattr(saved, "peft_config")

    uninterrupted = trainer.step(_batch(trainer.model, 1, "b"))
    resumed = _trainer(ckpt, resume=True, **speed)
    assert resumed.base_dir.resolve() == model_dir.resolve() and resumed.reference is None
    assert resumed.policy_version == 1 and resumed.trained_group_ids == {"r/a/0"}
    lora_params = [p for p in resumed.model.parameters() if p.requires_grad]
    assert len(resumed.optimizer.state) == len(lora_params)
    again = resumed.step(_batch(resumed.model, 1, "b"))
    assert again["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-6, abs=1e-9)
    assert again["kl"] == pytest.approx(uninterrupted["kl"], rel=1e-5, abs=1e-9) and again["kl"] > 0
    for (n, p), q in zip(trainer.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7, msg=n)
    assert len(lora_params) == len(trainer.optimizer.param_groups[0]["params"])
    if speed:
        buffers = dict(trainer.model.get_base_model().named_buffers())
        for n, b in resumed.model.get_base_model().named_buffers():
            if n.endswith("e_score_correction_bias"):
                assert b.abs().max() > 0 and torch.equal(b, buffers[n]), n


def test_a_new_stage_from_a_lora_checkpoint_starts_from_its_merged_weights(tiny_zoo, tmp_path):
    _, model_dir = tiny_zoo(name="tiny-qwen")
    trainer = _trainer(model_dir)
    trainer.step(_batch(trainer.model))
    ckpt = trainer.save(tmp_path / "ckpt")
    new_stage = _trainer(ckpt)  # resume=False: the merged weights become the new base
    assert new_stage.base_dir == ckpt and new_stage.reference_dir == ckpt
    assert new_stage.policy_version == 1 and new_stage.step_count == 0 and not new_stage.optimizer.state
    assert all(p.abs().max() == 0 for n, p in new_stage.model.named_parameters() if ".lora_B." in n)
    old = dict(trainer.iter_weights())
    for n, t in new_stage.iter_weights():
        torch.testing.assert_close(t, old[n], rtol=0, atol=0)
    # And a full fine-tune may start from it too.
    assert _trainer(ckpt, lora=LoRAConfig(rank=0)).model.__class__.__name__ == "Qwen2ForCausalLM"


def test_mismatched_settings_are_refused_by_name(tiny_zoo, tmp_path):
    _, model_dir = tiny_zoo(name="tiny-qwen")
    trainer = _trainer(model_dir)
    ckpt = trainer.save(tmp_path / "lora")
    with pytest.raises(ValueError, match="learner.lora.rank=0"):
        _trainer(ckpt, resume=True, lora=LoRAConfig(rank=0))
    with pytest.raises(ValueError, match="rank=4.*rank=8"):
        _trainer(ckpt, resume=True, lora=LoRAConfig(rank=8, alpha=8.0))
    full = _trainer(model_dir, lora=LoRAConfig(rank=0)).save(tmp_path / "full")
    with pytest.raises(ValueError, match="full fine-tuning checkpoint"):
        _trainer(full, resume=True)
    with pytest.raises(ValueError, match="learner.lora.dropout=0.1"):
        _trainer(model_dir, lora=LoRAConfig(rank=4, dropout=0.1))
    with pytest.raises(ValueError, match=r"matches no module.*'q_proj'"):
        _trainer(model_dir, lora=LoRAConfig(rank=4, target_modules=["attn.c_attn"]))
    with pytest.raises(ValueError, match="would overwrite the LoRA base"):
        trainer.save(model_dir)


def test_sft_and_distill_steps_train_only_the_adapters(tiny_zoo):
    _, model_dir = tiny_zoo(name="tiny-qwen")
    trainer = _trainer(model_dir, kl_coef=0.0)
    trainer.set_lr(2e-2)
    base = _params(trainer.model, adapter=False)
    batch = build_sft_batch([(PROMPT, GOOD), ([6, 7], BAD)], pad_id=0, eos_id=None)
    first = trainer.sft_step(batch)["loss"]
    losses = [trainer.sft_step(batch)["loss"] for _ in range(5)]
    assert losses[-1] < first - 0.5, (first, losses)
    vocab = trainer.model.config.vocab_size
    topk = [[[t, (t + 1) % vocab] for t in BAD], [[-0.1, -2.5]] * len(BAD)]
    distill = trainer.distill_step(build_distill_batch([(PROMPT, BAD, *topk)], pad_id=0, k=2), beta=0.5)
    assert distill["grad_norm"] > 0 and trainer.policy_version == 7
    for n, p in _params(trainer.model, adapter=False).items():
        assert torch.equal(p, base[n]), n


def test_gradient_checkpointing_gives_the_same_adapter_gradients(tiny_zoo):
    _, model_dir = tiny_zoo(name="tiny-deepseek")
    plain, recomputed = _trainer(model_dir), _trainer(model_dir, gradient_checkpointing=True)
    assert recomputed.model.is_gradient_checkpointing
    batch, grads = _batch(plain.model), []
    for trainer in (plain, recomputed):
        captured = {}
        trainer.optimizer.register_step_pre_hook(
            lambda opt, a, k, t=trainer, c=captured: c.update(
                {n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None}
            )
        )
        trainer.step(batch)
        grads.append(captured)
    assert grads[0] and set(grads[0]) == set(grads[1])
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-7, rtol=1e-5)


def test_checkpoint_adapter_is_peft_loadable(tiny_zoo, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, model_dir = tiny_zoo(name="tiny-qwen")
    trainer = _trainer(model_dir)
    trainer.step(_batch(trainer.model))
    ckpt = trainer.save(tmp_path / "ckpt")
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    restored = PeftModel.from_pretrained(base, str(ckpt / "adapter")).eval()
    row = torch.tensor([PROMPT + GOOD])
    with torch.no_grad():
        torch.testing.assert_close(
            token_logprobs(restored, row, None), token_logprobs(trainer.model, row, None), rtol=0, atol=0
        )
    assert load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))
