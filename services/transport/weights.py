"""Policy weights as bytes on the wire: safetensors payload plus a WeightsAnnouncement proto.

The learner publishes every new policy version this way; rollout workers verify size and SHA-256
before loading, so a truncated or mixed-up payload is an error that names the version, never a
half-loaded policy. No pickle: the payload is safetensors, the metadata is protobuf. The payload moves
through the Ray object store (any device); on GPUs `rollout.weight_sync=nccl` moves tensors directly.
"""

from __future__ import annotations

import hashlib

from services.pb import rollout_pb2


def pack_weights(state_dict: dict, policy_version: int) -> tuple[rollout_pb2.WeightsAnnouncement, bytes]:
    """Serialize a state dict (name -> tensor) for publishing as `policy_version`."""
    from safetensors.torch import save

    payload = save({k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()})
    return announce(payload, policy_version), payload


def announce(payload: bytes, policy_version: int) -> rollout_pb2.WeightsAnnouncement:
    """The announcement describing an already serialized safetensors payload."""
    return rollout_pb2.WeightsAnnouncement(
        policy_version=policy_version,
        format="safetensors",
        num_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )


def unpack_weights(announcement: rollout_pb2.WeightsAnnouncement, payload: bytes) -> dict:
    """Verify and deserialize a payload; raise ValueError naming the version when it does not match."""
    from safetensors.torch import load

    v = announcement.policy_version
    if announcement.format != "safetensors":
        raise ValueError(f"weights v{v}: unsupported format {announcement.format!r} (expected 'safetensors')")
    if len(payload) != announcement.num_bytes:
        raise ValueError(
            f"weights v{v}: payload is {len(payload)} bytes, announcement says {announcement.num_bytes}"
        )
    digest = hashlib.sha256(payload).hexdigest()
    if digest != announcement.sha256:
        raise ValueError(
            f"weights v{v}: SHA-256 mismatch (got {digest[:12]}, expected {announcement.sha256[:12]})"
        )
    return load(payload)
