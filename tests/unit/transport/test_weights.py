"""Weights on the wire: safetensors buckets + WeightsAnnouncement, verified before anything loads."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from services.pb import rollout_pb2
from services.transport.weights import (
    group_buckets,
    pack_weights,
    read_bucket,
    unpack_weights,
    verify_bucket,
)
from services.weight_sync.object_store import Incoming, publish_buckets, split_published

KIB = 1024


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(8, 4, generator=g),  # 128 B
        "lm_head.weight": torch.randn(4, 8, generator=g).t(),  # non-contiguous view, 128 B
        "model.norm.weight": torch.randn(4, generator=g, dtype=torch.float32).to(torch.bfloat16),  # 8 B
        "model.layers.0.mlp.up_proj.weight": torch.randn(64, 16, generator=g),  # 4 KiB
        "model.layers.0.mlp.down_proj.weight": torch.randn(16, 64, generator=g).half(),  # 2 KiB
        "step": torch.tensor([3], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def test_buckets_keep_order_and_stay_within_the_bound_except_a_lone_oversized_tensor():
    state = _state_dict()
    bound = 3 * KIB
    buckets = list(group_buckets(state.items(), bound))
    assert [name for b in buckets for name in b] == list(state)  # every tensor once, in order
    for b in buckets:
        size = sum(_nbytes(t) for t in b.values())
        assert size <= bound or len(b) == 1, (list(b), size)
    # The 4 KiB tensor exceeds the bound: it travels alone; the others fill buckets greedily.
    assert [list(b) for b in buckets] == [
        ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"],
        ["model.layers.0.mlp.up_proj.weight"],
        ["model.layers.0.mlp.down_proj.weight", "step", "mask"],
    ]
    assert len(list(group_buckets(state.items(), 1 << 30))) == 1  # a big bound: one bucket
    assert [len(b) for b in group_buckets(state.items(), 1)] == [1] * len(state)  # a tiny one: one each


def test_bucket_size_must_be_positive():
    with pytest.raises(ValueError, match="bucket size must be positive, got 0 bytes"):
        list(group_buckets(_state_dict().items(), 0))


def test_round_trip_preserves_names_dtypes_and_values():
    state = _state_dict()
    announcement, payloads = pack_weights(state.items(), policy_version=7, bucket_bytes=3 * KIB)
    assert announcement.policy_version == 7 and announcement.format == "safetensors"
    assert len(announcement.buckets) == len(payloads) == 3
    assert announcement.num_bytes == sum(len(p) for p in payloads)
    for entry, payload in zip(announcement.buckets, payloads):
        assert entry.num_bytes == len(payload) and entry.sha256 == hashlib.sha256(payload).hexdigest()
    assert [b.num_tensors for b in announcement.buckets] == [3, 1, 3]

    # What a rollout worker receives: the announcement as proto bytes, the buckets as raw bytes.
    received = rollout_pb2.WeightsAnnouncement.FromString(announcement.SerializeToString())
    loaded = unpack_weights(received, payloads)
    assert sorted(loaded) == sorted(state)  # safetensors orders the tensors inside a bucket its own way
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_reader_matches_safetensors_and_reads_in_place():
    state = {k: v.contiguous() for k, v in _state_dict().items()}
    payload = save(state, metadata={"policy_version": "3"})
    array = np.frombuffer(payload, dtype=np.uint8)  # how a bucket comes out of the Ray object store
    array.flags.writeable = False
    read = dict(read_bucket(array))
    reference = load(payload)
    assert list(read) == sorted(reference, key=list(read).index) and set(read) == set(reference)
    for name, tensor in reference.items():
        assert read[name].dtype == tensor.dtype and torch.equal(read[name], tensor), name
    # Zero-copy: every tensor's data lies inside the payload's buffer.
    start = array.__array_interface__["data"][0]
    for tensor in read.values():
        assert start <= tensor.data_ptr() < start + len(payload)


def _packed(version: int = 7):
    return pack_weights(_state_dict().items(), policy_version=version, bucket_bytes=3 * KIB)


def test_truncated_bucket_is_refused_naming_version_and_bucket():
    announcement, payloads = _packed()
    short = payloads[1][:-1]
    with pytest.raises(
        ValueError, match=rf"weights v7 bucket 2 of 3: payload is {len(short)} bytes.*{len(payloads[1])}"
    ):
        unpack_weights(announcement, [payloads[0], short, payloads[2]])


def test_corrupted_bucket_is_refused_by_its_digest_naming_version_and_bucket():
    announcement, payloads = _packed()
    last = payloads[2]
    corrupted = last[:-1] + bytes([last[-1] ^ 0x01])  # same size, last tensor byte flipped
    with pytest.raises(ValueError, match="weights v7 bucket 3 of 3: SHA-256 mismatch"):
        unpack_weights(announcement, [payloads[0], payloads[1], corrupted])


def test_bucket_of_another_version_is_refused():
    announcement, _ = _packed(version=7)
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in _state_dict().items()}
    _, other = pack_weights(changed.items(), 8, bucket_bytes=3 * KIB)
    assert [len(p) for p in other] == [b.num_bytes for b in announcement.buckets]  # only digests differ
    with pytest.raises(ValueError, match="weights v7 bucket 1 of 3: SHA-256 mismatch"):
        unpack_weights(announcement, other)


def test_missing_bucket_and_unknown_format_are_refused():
    announcement, payloads = _packed()
    with pytest.raises(ValueError, match="weights v7: 2 buckets arrived, the announcement lists 3"):
        unpack_weights(announcement, payloads[:2])
    with pytest.raises(ValueError, match="weights v7 bucket 4 of 3: the announcement lists 3 buckets"):
        verify_bucket(announcement, 3, payloads[0])
    announcement.format = "pickle"
    with pytest.raises(ValueError, match=r"v7: unsupported format 'pickle' \(expected 'safetensors'\)"):
        unpack_weights(announcement, payloads)


def test_learner_side_stream_and_worker_side_incoming_agree():
    """`publish_buckets` (what the learner yields into the object store) read back by `Incoming` (what a
    worker deposits in its mailbox): every bucket checked up front, then the same tensors streamed."""
    state = _state_dict()
    announcement, buckets = split_published(list(publish_buckets(state.items(), 5, 3 * KIB)))
    assert all(isinstance(b, np.ndarray) and b.dtype == np.uint8 for b in buckets) and len(buckets) == 3
    incoming = Incoming(announcement, buckets, timeout_s=1.0)
    assert incoming.policy_version == 5 and incoming.num_tensors == len(state)
    streamed = list(incoming.tensors())
    names = [n for n, _ in streamed]
    assert set(names[:3]) == set(list(state)[:3]) and names[3] == "model.layers.0.mlp.up_proj.weight"
    assert sorted(names) == sorted(state)  # bucket by bucket, in order
    assert all(torch.equal(t, state[n]) for n, t in streamed)

    bad = buckets[0].copy()
    bad[-1] ^= 1
    with pytest.raises(ValueError, match="weights v5 bucket 1 of 3: SHA-256 mismatch"):
        Incoming(announcement, [bad, *buckets[1:]], timeout_s=1.0)
