"""The two vLLM reload warnings the rollout workers silence, and only those: a warning that names any
weight vLLM really failed to load must still reach the log."""

import logging

from services.rollout.vllm_engine import _MlaDerivedReloadFilter, _RopeCacheReloadFilter

NOT_LOADED = "Following weights were not loaded from checkpoint: %s"


def _record(msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("vllm", logging.WARNING, __file__, 1, msg, args, None)


def test_mla_filter_drops_only_the_derived_mla_matrices():
    keep = _MlaDerivedReloadFilter().filter
    layer = "model.layers.0.self_attn.mla_attn.mla_attn"
    derived = {f"{layer}.W_UK_T", f"{layer}.W_UV"}
    assert not keep(_record(NOT_LOADED, derived))
    # A real miss beside them is reported, as are an empty set and any other message.
    assert keep(_record(NOT_LOADED, derived | {"model.layers.0.self_attn.kv_b_proj.weight"}))
    assert keep(_record(NOT_LOADED, {"lm_head.weight"}))
    assert keep(_record(NOT_LOADED, set()))
    assert keep(_record("something else %s", derived))


def test_rope_filter_drops_only_the_rotary_cache_warning():
    keep = _RopeCacheReloadFilter().filter
    assert not keep(_record("%s: Failed to load weights", "RotaryEmbedding"))
    assert keep(_record("%s: Failed to load weights", "QKVParallelLinear"))
