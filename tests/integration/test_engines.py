"""The sampling engines' contract, on the real vLLM engine and on transformers' `generate`.

What a rollout worker relies on: `spec.n` completions per prompt; one behaviour log-prob per sampled
token, each <= 0; a finish reason of "stop" (ended by EOS, which is kept as the last token) or
"length" (exactly `max_new_tokens` tokens); and behaviour log-probs that ARE the sampling
distribution, so the learner's importance ratio starts at 1. The last point is checked against an
independent plain-transformers forward of the sampled tokens: log_softmax(logits / temperature) at
every sampled position, within 1e-4. Every test runs on both zoo architectures: tiny-qwen (Qwen2) and
tiny-deepseek (DeepSeek-V3: MLA + MoE), which vLLM serves through different attention and MoE kernels.
"""

from __future__ import annotations

import pytest
import torch

from services.rollout.engine import ENGINES, SampledCompletion, SamplingSpec, make_engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PROMPTS = ["User: What is 12 + 34? Assistant: <think>", "User: What is 305 + 19? Assistant: <think>"]
MAX_NEW_TOKENS = 8
LOGPROB_ATOL = 1e-4


@pytest.fixture(scope="module", params=["tiny-qwen", "tiny-deepseek"])
def policy(tiny_zoo, request):
    """(cfg, model_dir, tokenizer, reference model): an untied tiny zoo policy loaded in transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, model_dir = tiny_zoo(False, request.param)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    return cfg, model_dir, AutoTokenizer.from_pretrained(str(model_dir)), model


@pytest.fixture(scope="module")
def vllm_engine(policy):
    cfg, model_dir, _, _ = policy
    engine = make_engine("vllm", model_dir, cfg.rollout)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf_engine(policy):
    cfg, model_dir, _, _ = policy
    engine = make_engine("hf", model_dir, cfg.rollout)
    yield engine
    engine.close()


def _check_group_contract(groups, prompts, spec: SamplingSpec, tokenizer) -> None:
    assert len(groups) == len(prompts)
    for group in groups:
        assert len(group) == spec.n
        for c in group:
            assert isinstance(c, SampledCompletion)
            assert 1 <= len(c.token_ids) <= spec.max_new_tokens
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finish_reason in {"stop", "length"}
            if c.finish_reason == "length":
                assert len(c.token_ids) == spec.max_new_tokens
            else:
                assert c.token_ids[-1] == tokenizer.eos_token_id
            assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)
        # A random policy over ~100 tokens practically never repeats an 8-token sample: sampling is real.
        assert len({tuple(c.token_ids) for c in group}) > spec.n // 2


def _max_behaviour_logprob_error(groups, prompts, model, temperature: float) -> float:
    """Largest |engine log-prob - log_softmax(logits / T)| over every sampled token."""
    worst = 0.0
    for prompt, group in zip(prompts, groups, strict=True):
        for c in group:
            ids = torch.tensor([prompt + c.token_ids])  # [1, P + L]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].float()  # [P + L, V]
            lp = (logits / temperature).log_softmax(-1)  # [P + L, V]
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(c.token_ids))  # [L]
            expected = lp[positions, torch.tensor(c.token_ids)]  # [L]
            worst = max(worst, (expected - torch.tensor(c.logprobs)).abs().max().item())
    return worst


@pytest.mark.parametrize("n", [16, 64])
def test_vllm_samples_groups_with_behaviour_logprobs(vllm_engine, policy, n):
    _, _, tokenizer, model = policy
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    spec = SamplingSpec(n=n, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
    groups = vllm_engine.generate(prompts, spec)
    _check_group_contract(groups, prompts, spec, tokenizer)
    assert _max_behaviour_logprob_error(groups, prompts, model, temperature=1.0) < LOGPROB_ATOL


def test_vllm_behaviour_logprobs_are_of_the_tempered_distribution(vllm_engine, policy):
    # logprobs_mode="processed_logprobs": the distribution actually sampled from, logits / T.
    _, _, tokenizer, model = policy
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    spec = SamplingSpec(n=4, max_new_tokens=MAX_NEW_TOKENS, temperature=0.7)
    groups = vllm_engine.generate(prompts, spec)
    _check_group_contract(groups, prompts, spec, tokenizer)
    assert _max_behaviour_logprob_error(groups, prompts, model, temperature=0.7) < LOGPROB_ATOL
    # The untempered log-probs differ, so the check above can tell the two apart.
    assert _max_behaviour_logprob_error(groups, prompts, model, temperature=1.0) > 1e-2


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_hf_engine_samples_groups_with_behaviour_logprobs(hf_engine, policy, temperature):
    _, _, tokenizer, model = policy
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    spec = SamplingSpec(n=4, max_new_tokens=MAX_NEW_TOKENS, temperature=temperature)
    groups = hf_engine.generate(prompts, spec)
    _check_group_contract(groups, prompts, spec, tokenizer)
    assert _max_behaviour_logprob_error(groups, prompts, model, temperature) < LOGPROB_ATOL


def test_hf_engine_prompt_logprobs_and_weight_loading(hf_engine, policy):
    _, _, tokenizer, model = policy
    ids = tokenizer(PROMPTS[0])["input_ids"]
    lps = hf_engine.prompt_logprobs(ids, k=5)
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)  # [T-1, V]
    assert len(lps) == len(ids) and lps[0] == {}
    for pos in range(1, len(ids)):
        assert set(full[pos - 1].topk(5).indices.tolist()) <= set(lps[pos])
        assert ids[pos] in lps[pos]
        assert all(abs(v - full[pos - 1, t].item()) < LOGPROB_ATOL for t, v in lps[pos].items())
    with pytest.raises(ValueError, match="unexpected=.*not.a.weight"):
        hf_engine.load_weights({"not.a.weight": torch.zeros(1)})


@pytest.mark.parametrize("engine_name", ["vllm", "hf"])
def test_top_logprobs_are_the_teachers_k_best_tokens(vllm_engine, hf_engine, policy, engine_name):
    """Distillation soft targets: per generated position, the k most likely tokens of the sampling
    distribution with their log-probs, best first, equal to a plain transformers forward."""
    _, _, tokenizer, model = policy
    engine = vllm_engine if engine_name == "vllm" else hf_engine
    prompt = tokenizer(PROMPTS[0])["input_ids"]
    k = 3
    (group,) = engine.generate([prompt], SamplingSpec(n=2, max_new_tokens=MAX_NEW_TOKENS, top_logprobs=k))
    for c in group:
        assert len(c.top_logprobs) == len(c.token_ids)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + c.token_ids])).logits[0].float()  # [P + L, V]
        lp = logits.log_softmax(-1)  # [P + L, V]
        for pos, top in enumerate(c.top_logprobs):
            expected = lp[len(prompt) - 1 + pos].topk(k)  # the k best at the position predicting token pos
            assert list(top) == expected.indices.tolist()
            assert list(top.values()) == pytest.approx(expected.values.tolist(), abs=LOGPROB_ATOL)
    # Without the request nothing extra is computed or returned.
    (plain,) = engine.generate([prompt], SamplingSpec(n=1, max_new_tokens=MAX_NEW_TOKENS))
    assert plain[0].top_logprobs == []


def test_make_engine_rejects_unknown_name(policy):
    cfg, model_dir, _, _ = policy
    with pytest.raises(ValueError, match=r"rollout.engine='nope'.*\['vllm', 'hf'\]"):
        make_engine("nope", model_dir, cfg.rollout)
    assert ENGINES == ("vllm", "hf")
