"""Policy weights on the wire: safetensors buckets plus the WeightsAnnouncement proto that lists them.

The learner publishes every new policy version as a sequence of buckets, each a safetensors payload of
whole tensors holding at most `bucket_bytes` (a tensor larger than that travels alone), so neither side
ever builds one serialized copy of the whole model: the sender packs one bucket at a time from
`trainer.iter_weights()`, the receiver reads one bucket at a time into its engine.

Rollout workers verify every bucket's size and SHA-256 before loading any (`verify_bucket`), so a
truncated or mixed-up bucket is an error that names the version and the bucket, never a half-loaded
policy. `read_bucket` then yields the tensors as zero-copy views of the payload (a Ray object-store
buffer is read in place); the engine copies them into its own parameters. No pickle: the payload is
safetensors, the metadata is protobuf.
"""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from collections.abc import Iterable, Iterator

from services.pb import rollout_pb2

FORMAT = "safetensors"

# safetensors dtype names -> torch dtype names (resolved lazily: torch stays out of the import).
_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip


def group_buckets(named_tensors: Iterable, bucket_bytes: int) -> Iterator[dict]:
    """Group (name, tensor) pairs, in order, into dicts of at most `bucket_bytes` of tensor data; a
    tensor larger than `bucket_bytes` makes a bucket of its own. Only one bucket is held at a time."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes} bytes")
    bucket: dict = {}
    size = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = {}, 0
        bucket[name] = tensor
        size += nbytes
    if bucket:
        yield bucket


def serialize_bucket(tensors: dict) -> bytes:
    """One bucket as a safetensors payload (CPU, contiguous)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})


def describe_bucket(payload, num_tensors: int) -> rollout_pb2.WeightsBucket:
    """The announcement entry of one serialized bucket: size, SHA-256, tensor count."""
    view = memoryview(payload).cast("B")
    return rollout_pb2.WeightsBucket(
        num_bytes=view.nbytes, sha256=hashlib.sha256(view).hexdigest(), num_tensors=num_tensors
    )


def announce(
    policy_version: int, buckets: list[rollout_pb2.WeightsBucket]
) -> rollout_pb2.WeightsAnnouncement:
    """The announcement of `policy_version` travelling as `buckets` (in load order)."""
    return rollout_pb2.WeightsAnnouncement(
        policy_version=policy_version,
        format=FORMAT,
        num_bytes=sum(b.num_bytes for b in buckets),
        buckets=buckets,
    )


def verify_bucket(announcement: rollout_pb2.WeightsAnnouncement, index: int, payload) -> None:
    """Check bucket `index` of `announcement` against its size and SHA-256; raise ValueError naming the
    version and the bucket when it does not match."""
    v, n = announcement.policy_version, len(announcement.buckets)
    where = f"weights v{v} bucket {index + 1} of {n}"
    if announcement.format != FORMAT:
        raise ValueError(f"weights v{v}: unsupported format {announcement.format!r} (expected {FORMAT!r})")
    if not 0 <= index < n:
        raise ValueError(f"{where}: the announcement lists {n} buckets")
    expected = announcement.buckets[index]
    view = memoryview(payload).cast("B")
    if view.nbytes != expected.num_bytes:
        raise ValueError(f"{where}: payload is {view.nbytes} bytes, announcement says {expected.num_bytes}")
    digest = hashlib.sha256(view).hexdigest()
    if digest != expected.sha256:
        raise ValueError(f"{where}: SHA-256 mismatch (got {digest[:12]}, expected {expected.sha256[:12]})")


def read_bucket(payload) -> Iterator[tuple]:
    """The (name, tensor) pairs of a safetensors payload, in file order, as read-only zero-copy views of
    `payload` (bytes, a numpy array, any buffer); each view keeps the payload alive. Verify first."""
    import torch

    view = memoryview(payload).cast("B")
    (header_len,) = struct.unpack("<Q", view[:8])
    header = json.loads(bytes(view[8 : 8 + header_len]))
    header.pop("__metadata__", None)
    with warnings.catch_warnings():  # an object-store buffer is read-only; the engine only reads it
        warnings.simplefilter("ignore", UserWarning)
        data = torch.frombuffer(view, dtype=torch.uint8) if view.nbytes else torch.empty(0, dtype=torch.uint8)
    base = 8 + header_len
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        start, end = entry["data_offsets"]
        raw = data[base + start : base + end]
        if (base + start) % dtype.itemsize:  # safetensors aligns tensor data; copy if a writer did not
            raw = raw.clone()
        yield name, raw.view(dtype).reshape(entry["shape"])


def pack_weights(
    named_tensors: Iterable, policy_version: int, bucket_bytes: int
) -> tuple[rollout_pb2.WeightsAnnouncement, list[bytes]]:
    """All buckets of a set of weights in memory (tests, benchmarks): (announcement, payloads)."""
    payloads, described = [], []
    for bucket in group_buckets(named_tensors, bucket_bytes):
        payloads.append(serialize_bucket(bucket))
        described.append(describe_bucket(payloads[-1], len(bucket)))
    return announce(policy_version, described), payloads


def unpack_weights(announcement: rollout_pb2.WeightsAnnouncement, payloads: list) -> dict:
    """Verify every bucket, then read them all into one dict (tests); raise ValueError naming the version
    (and the bucket) when anything does not match."""
    if len(payloads) != len(announcement.buckets):
        raise ValueError(
            f"weights v{announcement.policy_version}: {len(payloads)} buckets arrived, "
            f"the announcement lists {len(announcement.buckets)}"
        )
    for i, payload in enumerate(payloads):
        verify_bucket(announcement, i, payload)
    return {name: t for payload in payloads for name, t in read_bucket(payload)}
