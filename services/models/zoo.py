"""The policy model zoo: tiny policies created locally as ordinary Hugging Face checkpoint dirs.

`resolve_model_dir` is the one entry point: with `model.path` set it validates and returns that
directory (any HF causal-LM checkpoint); otherwise it creates the named zoo policy once under
`model.cache_dir`, keyed by its shape, and returns it. The result is a directory with config.json,
model.safetensors and the tokenizer files, which the learner (transformers) and the rollout workers
(vLLM) both load. Architectures come from transformers' own implementations, never hand-written
copies, so what trains here is what a user serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from services.models.tokenizer import TOKENIZER_VERSION, build_tokenizer

log = logging.getLogger(__name__)
ZOO = ("tiny-qwen",)


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
    if cfg.name not in ZOO:
        raise ValueError(
            f"model.name={cfg.name!r} is not in the zoo; choose one of {list(ZOO)} or set model.path"
        )
    shape = {k: cfg[k] if hasattr(cfg, "__getitem__") else getattr(cfg, k) for k in _SHAPE_KEYS}
    key = {"name": cfg.name, "tokenizer": TOKENIZER_VERSION, **shape}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(cfg.cache_dir).expanduser() / f"{cfg.name}-{digest}"
    if not (out / "model.safetensors").is_file():
        create_zoo_model(cfg.name, shape, out)
    return out


_SHAPE_KEYS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "init_seed",
)


def create_zoo_model(name: str, shape: dict, out: Path) -> Path:
    """Create a random-init zoo policy with its tokenizer and save it to `out` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    tmp = out.with_name(out.name + ".tmp")
    tok = build_tokenizer(tmp)
    config = Qwen2Config(
        vocab_size=_round_up(len(tok), 64),
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        intermediate_size=shape["intermediate_size"],
        max_position_embeddings=shape["max_position_embeddings"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(shape["init_seed"])
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(out)
    log.info("created zoo policy %s (%.2fM params) at %s", name, model.num_parameters() / 1e6, out)
    return out


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple
