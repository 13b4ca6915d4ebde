"""The one factory of weight-transfer engines, and what a sync reports to the step's metrics."""

from __future__ import annotations

import pytest

from services.config import RolloutConfig
from services.weight_sync import SyncStats, make_weight_sync
from services.weight_sync.nccl import NcclSync, worker_init_info
from services.weight_sync.object_store import ObjectStoreSync


def test_the_config_picks_the_engine_with_its_bucket_size_and_timeout():
    sync = make_weight_sync(RolloutConfig(weight_bucket_mb=0.5, weight_sync_timeout_s=7.0))
    assert isinstance(sync, ObjectStoreSync) and sync.bucket_bytes == 512 * 1024 and sync.timeout_s == 7.0
    assert sync.last is None  # nothing to give a restarted worker before the first sync
    nccl = make_weight_sync(RolloutConfig(weight_sync="nccl", weight_bucket_mb=256))
    assert isinstance(nccl, NcclSync) and nccl.bucket_bytes == 256 * 2**20


def test_an_unknown_engine_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"rollout.weight_sync='pigeon': .*'object_store', 'nccl'"):
        make_weight_sync(RolloutConfig(weight_sync="pigeon"))


def test_a_sync_reports_its_seconds_and_bytes():
    assert SyncStats(policy_version=3, seconds=0.25, num_bytes=1024).metrics() == {
        "weight_sync_s": 0.25,
        "weight_sync_bytes": 1024,
    }


def test_each_nccl_worker_gets_its_own_rank_after_the_learner():
    infos = [worker_init_info("10.0.0.1", 29500, 3, 1 + i, 2**20) for i in range(2)]
    assert [i["rank_offset"] for i in infos] == [1, 2]
    assert all(i["world_size"] == 3 and i["packed"] and i["packed_buffer_size_bytes"] == 2**20 for i in infos)
