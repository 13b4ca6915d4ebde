"""A rollout worker's own loop (`serve`) against a real Redis, a real gRPC reward service and a real
engine: it waits for the weights a task asks for, loads them from its mailbox between generate calls,
samples every group with one policy version, emits and acks, and stops when told.

The worker is the plain class the Ray actor wraps, driven from threads the way the threaded actor
runs `serve` beside `update_weights` and `stop`.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from services.config import RewardConfig
from services.pb import rollout_pb2
from services.reward.format_checker import FormatScorer
from services.reward.server import build_server
from services.rollout.worker import RolloutWorker
from services.transport.names import GROUP_READERS, groups_stream_for
from services.transport.redis_server import EmbeddedRedis, connect
from services.transport.streams import StreamQueue
from services.transport.weights import pack_weights

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def setup(tiny_zoo):
    cfg, model_dir = tiny_zoo()
    reward_cfg = replace(RewardConfig(), scorers=["format"])
    server, port = build_server(FormatScorer(), reward_cfg, host="127.0.0.1", port=0)
    server.start()
    name = uuid.uuid4().hex[:8]
    redis_cfg = OmegaConf.merge(
        cfg.redis, {"prompts_stream": f"{name}:prompts", "groups_stream": f"{name}:groups"}
    )
    rollout_cfg = OmegaConf.merge(
        cfg.rollout, {"engine": "hf", "group_size": 2, "max_new_tokens": 4, "read_block_s": 0.2}
    )
    with EmbeddedRedis() as redis_server:
        worker = RolloutWorker(
            "w0", model_dir, rollout_cfg, reward_cfg, redis_cfg, redis_server.url,
            {"format": f"127.0.0.1:{port}"},
        )  # fmt: skip
        client = connect(redis_server.url, socket_timeout_s=5)
        prompts = StreamQueue.from_config(client, redis_cfg, redis_cfg.prompts_stream, "rollout",
                                          rollout_pb2.PromptTask)  # fmt: skip
        groups = StreamQueue.from_config(client, redis_cfg, groups_stream_for(redis_cfg.groups_stream, "rl"),
                                         GROUP_READERS, rollout_pb2.ScoredGroup)  # fmt: skip
        groups.ensure_group()
        yield worker, prompts, groups
        worker.close()
        client.close()
    server.stop(grace=None)


def _task(i: int, min_version: int) -> rollout_pb2.PromptTask:
    return rollout_pb2.PromptTask(
        id=rollout_pb2.TaskId(run_id="run", prompt_id=f"p{i}", epoch=0),
        prompt="What is 1 + 2?",
        prompt_token_ids=[5, 6, 7],
        answer="3",
        stage="rl",
        min_policy_version=min_version,
        reward_weights={"format": 1.0},
    )


def _read(groups: StreamQueue, n: int, timeout_s: float) -> list[rollout_pb2.ScoredGroup]:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += [d.message for d in groups.read("test", n - len(got), 0.2)]
    return got


def test_serve_waits_for_the_weights_a_task_asks_for_and_samples_each_group_with_one_version(setup):
    worker, prompts, groups = setup
    loop = {}
    thread = threading.Thread(target=lambda: loop.update(emitted=worker.serve(2)))
    thread.start()
    try:
        for i in range(2):
            prompts.add(_task(i, min_version=0))
        first = _read(groups, 2, 60)
        assert sorted(g.id.prompt_id for g in first) == ["p0", "p1"]
        assert {c.policy_version for g in first for c in g.completions} == {0}

        # Tasks that need v1 wait in the worker until v1 reaches its mailbox; none is failed or dropped.
        for i in range(2, 4):
            prompts.add(_task(i, min_version=1))
        assert _read(groups, 1, 2.0) == []
        assert worker.policy_version_held() == 0
        state = {k: v + 1.0 for k, v in worker.engine.model.state_dict().items()}
        ann, buckets = pack_weights(state.items(), policy_version=1, bucket_bytes=16 * 1024)
        assert len(buckets) > 1
        assert worker.update_weights(ann.SerializeToString(), buckets) == 1
        second = _read(groups, 2, 60)
        assert sorted(g.id.prompt_id for g in second) == ["p2", "p3"]
        for g in second:
            assert g.policy_version == 1 and {c.policy_version for c in g.completions} == {1}
        assert worker.policy_version_held() == 1
        name = next(iter(state))
        assert torch.equal(worker.engine.model.state_dict()[name], state[name])
        deadline = time.monotonic() + 10  # every task is acked right after its group is emitted
        while prompts.outstanding() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prompts.outstanding() == 0
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert loop["emitted"] == 4
