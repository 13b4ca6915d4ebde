"""Checkpoints: HF-loadable, same logits after a round trip, JSON state, optimizer tensors, no pickle."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from services.learner.checkpoint import (
    load_checkpoint_meta,
    load_optimizer_state,
    optimizer_from_safetensors,
    optimizer_to_safetensors,
    save_checkpoint,
)
from services.learner.trainer import untied_state_dict

IDS = torch.tensor([[1, 2, 3, 4, 5]])


def _one_adam_step(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    model(IDS, labels=IDS).loss.backward()
    optimizer.step()
    return optimizer


def test_round_trip_same_logits_meta_and_optimizer(make_tiny_qwen, tmp_path):
    model = make_tiny_qwen(tmp_path / "init")
    optimizer = _one_adam_step(model)
    meta = {"policy_version": 3, "step": 2, "trained_group_ids": {"r/b/0", "r/a/0"}, "stage": "rl"}
    out = save_checkpoint(tmp_path / "ckpt", model, None, meta, optimizer)

    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, model(IDS).logits)
    state = load_checkpoint_meta(out)
    assert state["policy_version"] == 3 and state["step"] == 2 and state["stage"] == "rl"
    assert state["trained_group_ids"] == ["r/a/0", "r/b/0"]  # sorted
    json.loads((out / "r1forge_state.json").read_text())  # plain JSON on disk
    assert not [p.name for p in out.iterdir() if p.suffix in {".bin", ".pt", ".pkl", ".pth"}]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]  # no temp dirs left
    # vLLM loads every top-level *.safetensors as model weights: only the model may live there.
    assert [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]

    fresh = torch.optim.AdamW(loaded.parameters(), lr=1.0)
    assert load_optimizer_state(out, fresh)
    before, after = optimizer.state_dict(), fresh.state_dict()
    assert after["param_groups"][0]["betas"] == (0.8, 0.95) and after["param_groups"][0]["lr"] == 1e-2
    for index, values in before["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(after["state"][index][name], values[name])


def test_save_replaces_an_existing_checkpoint(make_tiny_qwen, tmp_path):
    model = make_tiny_qwen(tmp_path / "init")
    save_checkpoint(tmp_path / "ckpt", model, None, {"policy_version": 1, "step": 1})
    save_checkpoint(tmp_path / "ckpt", model, None, {"policy_version": 2, "step": 2})
    assert load_checkpoint_meta(tmp_path / "ckpt")["policy_version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "init"]
    with pytest.raises(ValueError, match="policy_version"):
        save_checkpoint(tmp_path / "x", model, None, {"step": 0})


def test_plain_model_dir_reads_as_version_zero(tiny_model_dir):
    assert load_checkpoint_meta(tiny_model_dir) == {"policy_version": 0, "step": 0, "trained_group_ids": []}
    assert not load_optimizer_state(tiny_model_dir, torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]))


def test_optimizer_split_round_trips_exactly(make_tiny_qwen, tmp_path):
    optimizer = _one_adam_step(make_tiny_qwen(tmp_path))
    tensors, meta = optimizer_to_safetensors(optimizer)
    json.dumps(meta)  # the non-tensor part is JSON
    rebuilt = optimizer_from_safetensors(tensors, json.loads(json.dumps(meta)))
    assert rebuilt["param_groups"] == optimizer.state_dict()["param_groups"]


@pytest.mark.parametrize("tied", [True, False])
def test_published_state_dict_loads_back(make_tiny_qwen, tmp_path, tied):
    model = make_tiny_qwen(tmp_path / "m", tie_word_embeddings=tied)
    state = untied_state_dict(model)
    # Tied: lm_head.weight is the embedding itself and is left out, as save_pretrained does.
    assert ("lm_head.weight" in state) is (not tied)
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        assert set(state) == set(f.keys())  # the same keys save_pretrained wrote
    other = make_tiny_qwen(tmp_path / "other", tie_word_embeddings=tied, seed=1)
    other.load_state_dict(state, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(other(IDS).logits, model(IDS).logits)
