"""The `object_store` weight sync through a real Ray cluster: a learner actor streams its buckets into the
object store, two rollout-worker actors load the same bucket refs, and the buckets (owned by the driver)
outlive the learner, so a worker restarted after the learner died is still brought up to date.

The workers run the transformers engine (fast to start); vLLM's side of a bucketed load is covered by
test_weight_sync_parity.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from services.config import RewardConfig
from services.learner.service import LearnerService
from services.rollout.worker import RolloutWorker
from services.transport.redis_server import EmbeddedRedis
from services.weight_sync import make_weight_sync

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _digest(named_tensors) -> str:
    h = hashlib.sha256()
    for name, t in sorted(named_tensors, key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _learner_digest(learner: LearnerService) -> str:
    return _digest(learner.trainer.iter_weights())


def _worker_digest(worker: RolloutWorker) -> str:
    tied = worker.engine.model.config.tie_word_embeddings
    return _digest(
        (n, t) for n, t in worker.engine.model.state_dict().items() if not (tied and n == "lm_head.weight")
    )


@pytest.fixture
def ray_cluster():
    import ray

    temp_dir = tempfile.mkdtemp(prefix="r1f-ray-")  # short: Ray's socket paths must stay under 108 chars
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING")
    # The digest helpers run inside the actors (`__ray_call__`), where this test module is not importable.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_workers_share_the_learners_buckets_and_a_restarted_worker_gets_them_after_the_learner_died(
    tiny_zoo, ray_cluster, tmp_path
):
    ray = ray_cluster
    cfg, model_dir = tiny_zoo()
    rollout_cfg = OmegaConf.merge(cfg.rollout, {"engine": "hf", "weight_bucket_mb": 1 / 64})  # 16 KiB
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"prompt": "What is 2 + 3? ", "completion": "<answer>5</answer>"}) + "\n")
    with EmbeddedRedis() as redis_server:
        learner = ray.remote(LearnerService).remote(str(model_dir), OmegaConf.to_object(cfg.learner))
        worker_cls = ray.remote(max_restarts=1, max_concurrency=4)(RolloutWorker)
        reward_cfg = replace(RewardConfig(), scorers=["format"])
        workers = [
            worker_cls.remote(
                f"w{i}", str(model_dir), rollout_cfg, reward_cfg, cfg.redis, redis_server.url, {}
            )
            for i in range(2)
        ]
        ray.get([learner.load_sft_dataset.remote(str(data), seed=0, lr=0.05)])
        ray.get(learner.sft_steps.remote(2))  # the learner's weights now differ from the workers'
        version = ray.get(learner.policy_version.remote())
        assert version == 2
        before = ray.get(workers[0].__ray_call__.remote(_worker_digest))
        expected = ray.get(learner.__ray_call__.remote(_learner_digest))
        assert before != expected

        sync = make_weight_sync(rollout_cfg)
        t0 = time.perf_counter()
        started = sync.start(learner, workers)
        assert ray.get(started.refs, timeout=120) == [version, version]
        assert started.policy_version == version and started.num_bytes > 0
        announcement, buckets = sync.last
        assert len(buckets) > 2 and all(isinstance(b, ray.ObjectRef) for b in buckets)
        assert time.perf_counter() - t0 < 120
        assert ray.get([w.__ray_call__.remote(_worker_digest) for w in workers]) == [expected, expected]

        # The driver owns the buckets: the learner's death does not take them along.
        ray.kill(learner)
        assert ray.get(buckets[0]).nbytes > 0
        ray.kill(workers[1], no_restart=False)  # Ray restarts it with the initial weights
        # ray.kill is asynchronous: the old incarnation may still answer once, so wait for the restarted one
        # (back on the initial weights, version 0); a call racing the restart is retried.
        deadline = time.monotonic() + 120
        while True:
            try:
                if ray.get(workers[1].policy_version_held.remote(), timeout=30) == 0:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            assert time.monotonic() < deadline, "the killed worker did not come back on the initial weights"
            time.sleep(0.5)
        assert sync.resend(workers[1], timeout_s=120) == version
        assert ray.get(workers[1].__ray_call__.remote(_worker_digest)) == expected
        for w in workers:
            ray.get(w.close.remote())
