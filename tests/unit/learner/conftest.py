"""Shared fixtures for learner tests: a tiny random Qwen2 policy saved as an HF checkpoint directory."""

from __future__ import annotations

import pytest
import torch


def _make_tiny_qwen(directory, tie_word_embeddings: bool = False, seed: int = 0):
    """Create, save and return a 1-layer Qwen2 with a 32-token vocabulary (no tokenizer)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, tie_word_embeddings=tie_word_embeddings,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-qwen")
    _make_tiny_qwen(directory)
    return directory


@pytest.fixture(scope="session")
def make_tiny_qwen():
    """The factory itself: `make_tiny_qwen(directory, tie_word_embeddings=False, seed=0) -> model`."""
    return _make_tiny_qwen
