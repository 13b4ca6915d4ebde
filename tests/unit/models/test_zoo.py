"""The model zoo: a tiny policy created once per shape, `model.path` validated, unknown names refused."""

from __future__ import annotations

import json

import pytest

from services.config_loader import load_config
from services.models.zoo import resolve_model_dir

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.num_kv_heads=1",
        "model.intermediate_size=64"]  # fmt: skip


def test_zoo_policy_is_created_once_and_reused(tmp_path):
    cfg = load_config([f"model.cache_dir={tmp_path}", *TINY])
    first = resolve_model_dir(cfg.model)
    assert first.parent == tmp_path and first.name.startswith("tiny-qwen-")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (first / name).is_file(), name
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    second = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY]).model)
    assert second == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no leftover .tmp dir

    config = json.loads((first / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (32, 1, 1)
    assert config["vocab_size"] == 128  # 104 tokens rounded up to a multiple of 64
    assert config["tie_word_embeddings"] is False


def test_a_different_shape_gets_its_own_directory(tmp_path):
    base = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY]).model)
    tied = resolve_model_dir(
        load_config([f"model.cache_dir={tmp_path}", *TINY, "model.tie_word_embeddings=true"]).model
    )
    assert tied != base
    assert json.loads((tied / "config.json").read_text())["tie_word_embeddings"] is True


def test_model_path_to_an_existing_checkpoint_is_used_as_is(tmp_path):
    made = resolve_model_dir(load_config([f"model.cache_dir={tmp_path / 'zoo'}", *TINY]).model)
    cfg = load_config([f"model.path={made}", f"model.cache_dir={tmp_path / 'unused'}"])
    assert resolve_model_dir(cfg.model) == made
    assert not (tmp_path / "unused").exists()


def test_missing_model_path_names_the_field(tmp_path):
    cfg = load_config([f"model.path={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match=r"model\.path=.*nowhere.*no config\.json"):
        resolve_model_dir(cfg.model)


def test_unknown_zoo_name_names_the_choices(tmp_path):
    cfg = load_config([f"model.cache_dir={tmp_path}", "model.name=gpt-17"])
    with pytest.raises(ValueError, match=r"model\.name='gpt-17'.*\['tiny-qwen'\]"):
        resolve_model_dir(cfg.model)
    assert list(tmp_path.iterdir()) == []
