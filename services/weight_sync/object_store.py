"""The `object_store` weight-transfer engine: safetensors buckets shared through the Ray object store.

Three sides, each holding at most one bucket of its own at a time:

- learner (`publish_buckets`, run by `LearnerService.publish` as a Ray streaming generator): packs
  `trainer.iter_weights()` into buckets of at most `bucket_bytes`, yields each as a uint8 array (Ray
  writes it into the object store once; a reader on the same node maps it without a copy), and yields the
  WeightsAnnouncement last. Because the driver called the generator, the driver owns every bucket: they
  outlive a learner that dies, so a worker restarted afterwards can still be given them.
- driver (`ObjectStoreSync`): hands every worker the same announcement and the same bucket refs (no
  serialized copy per worker) and keeps the last ones for a restarted worker.
- worker (`Incoming`): fetches and verifies every bucket (size + SHA-256) before anything is loaded, so
  a bad bucket is an error naming the version and the bucket, never a half-loaded policy; the mailbox
  then holds only the refs, and `tensors()` streams the buckets' tensors into the engine one bucket at a
  time as zero-copy views.

A bucket may also be plain bytes or an array instead of a Ray ref: in-process callers (tests,
benchmarks) hand the payloads over directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from services.pb import rollout_pb2
from services.transport.weights import (
    announce,
    describe_bucket,
    group_buckets,
    read_bucket,
    serialize_bucket,
    verify_bucket,
)
from services.weight_sync import Started, WeightSync


def publish_buckets(named_tensors: Iterable, policy_version: int, bucket_bytes: int) -> Iterator:
    """Learner side: each bucket's safetensors payload as a uint8 array, then the announcement bytes."""
    import numpy as np

    described = []
    for bucket in group_buckets(named_tensors, bucket_bytes):
        payload = serialize_bucket(bucket)
        described.append(describe_bucket(payload, len(bucket)))
        yield np.frombuffer(payload, dtype=np.uint8)
    yield announce(policy_version, described).SerializeToString()


def split_published(items: list) -> tuple[bytes, list]:
    """(announcement bytes, buckets) from everything `publish_buckets` yielded, in order."""
    if not items:
        raise ValueError("the learner published nothing (no announcement)")
    return items[-1], items[:-1]


def _fetch(bucket, timeout_s: float):
    """A bucket's payload: a Ray ref is fetched (a zero-copy view on this node), bytes pass through."""
    if isinstance(bucket, (bytes, bytearray, memoryview)) or hasattr(bucket, "__array_interface__"):
        return bucket
    import ray

    return ray.get(bucket, timeout=timeout_s)


class Incoming:
    """Worker side: a published version whose buckets have all been verified; `tensors()` reads them."""

    def __init__(self, announcement: bytes, buckets: list, timeout_s: float) -> None:
        self.announcement = rollout_pb2.WeightsAnnouncement.FromString(announcement)
        self.policy_version = self.announcement.policy_version
        self.buckets, self.timeout_s = list(buckets), timeout_s
        if len(self.buckets) != len(self.announcement.buckets):
            raise ValueError(
                f"weights v{self.policy_version}: {len(self.buckets)} buckets arrived, "
                f"the announcement lists {len(self.announcement.buckets)}"
            )
        self.num_tensors = sum(b.num_tensors for b in self.announcement.buckets)
        for i, bucket in enumerate(self.buckets):
            verify_bucket(self.announcement, i, _fetch(bucket, timeout_s))

    def tensors(self) -> Iterator[tuple]:
        """(name, tensor) pairs bucket by bucket, each a read-only view of its bucket's payload."""
        for bucket in self.buckets:
            yield from read_bucket(_fetch(bucket, self.timeout_s))


class ObjectStoreSync(WeightSync):
    """Driver side: publish once, hand every worker the same bucket refs."""

    def __init__(self, bucket_bytes: int, timeout_s: float) -> None:
        self.bucket_bytes, self.timeout_s = bucket_bytes, timeout_s
        self.last: tuple[bytes, list] | None = None  # what a restarted worker is given

    def start(self, learner, workers: list) -> Started:
        import ray

        gen = learner.publish.options(num_returns="streaming").remote(self.bucket_bytes)
        deadline = time.monotonic() + self.timeout_s
        refs = []
        while True:
            ready, _ = ray.wait([gen], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(
                    f"the learner did not publish its weights within {self.timeout_s:.0f}s "
                    "(rollout.weight_sync_timeout_s)"
                )
            try:
                refs.append(next(gen))
            except StopIteration:
                break
        ann_ref, buckets = split_published(refs)
        announcement = ray.get(ann_ref)  # the learner's failure surfaces here, before any worker is touched
        ann = rollout_pb2.WeightsAnnouncement.FromString(announcement)
        self.last = (announcement, buckets)
        worker_refs = [w.update_weights.remote(announcement, buckets) for w in workers]
        return Started(ann.policy_version, ann.num_bytes, worker_refs)

    def resend(self, worker, timeout_s: float) -> int:
        import ray

        if self.last is None:
            return ray.get(worker.policy_version_held.remote(), timeout=timeout_s)
        return ray.get(worker.update_weights.remote(*self.last), timeout=timeout_s)
