"""Weights on the wire: safetensors payload + WeightsAnnouncement, verified before anything loads."""

from __future__ import annotations

import hashlib

import pytest
import torch

from services.pb import rollout_pb2
from services.transport.weights import pack_weights, unpack_weights


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(8, 4, generator=g),
        "lm_head.weight": torch.randn(4, 8, generator=g).t(),  # non-contiguous view
        "model.norm.weight": torch.randn(4, generator=g, dtype=torch.float32).to(torch.bfloat16),
        "step": torch.tensor([3], dtype=torch.int64),
    }


def test_round_trip_preserves_names_dtypes_and_values():
    state = _state_dict()
    announcement, payload = pack_weights(state, policy_version=7)
    assert announcement.policy_version == 7
    assert announcement.format == "safetensors"
    assert announcement.num_bytes == len(payload)
    assert announcement.sha256 == hashlib.sha256(payload).hexdigest()

    # What a rollout worker receives: the announcement as proto bytes, the payload as raw bytes.
    received = rollout_pb2.WeightsAnnouncement.FromString(announcement.SerializeToString())
    loaded = unpack_weights(received, payload)
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name


def test_packing_is_deterministic():
    first, payload_a = pack_weights(_state_dict(), policy_version=1)
    second, payload_b = pack_weights(_state_dict(), policy_version=1)
    assert payload_a == payload_b and first.sha256 == second.sha256


def _packed(version: int = 7):
    return pack_weights(_state_dict(), policy_version=version)


def test_truncated_payload_is_refused_naming_the_version():
    announcement, payload = _packed()
    with pytest.raises(ValueError, match=rf"weights v7: payload is {len(payload) - 1} bytes.*{len(payload)}"):
        unpack_weights(announcement, payload[:-1])


def test_corrupted_payload_is_refused_by_its_digest():
    announcement, payload = _packed()
    corrupted = payload[:-1] + bytes([payload[-1] ^ 0x01])  # same size, last tensor byte flipped
    with pytest.raises(ValueError, match="weights v7: SHA-256 mismatch"):
        unpack_weights(announcement, corrupted)


def test_payload_of_another_version_is_refused():
    announcement, _ = _packed(version=7)
    _, other = pack_weights({k: v + 1 if v.is_floating_point() else v for k, v in _state_dict().items()}, 8)
    assert len(other) == announcement.num_bytes  # same shapes: only the digest tells them apart
    with pytest.raises(ValueError, match="weights v7: SHA-256 mismatch"):
        unpack_weights(announcement, other)


def test_unknown_format_is_refused():
    announcement, payload = _packed()
    announcement.format = "pickle"
    with pytest.raises(
        ValueError, match=r"weights v7: unsupported format 'pickle' \(expected 'safetensors'\)"
    ):
        unpack_weights(announcement, payload)
