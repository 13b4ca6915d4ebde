"""The supervisor over real processes: a reward service killed (-9) or frozen (SIGSTOP) is replaced on
its address, and a client made before the fault scores through the new process without being told."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from services.config_loader import load_config
from services.orchestrator.reward_procs import RewardProcesses, bring_up
from services.orchestrator.supervisor import Supervisor
from services.reward.client import RewardClient
from services.reward.scorer import ScoreInput, ScoreStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
GOOD = "<think>2+2=4</think> <answer>4</answer>"
SUP = SimpleNamespace(interval_s=0.2, check_timeout_s=1.0, unhealthy_after=2, max_restarts=2, backoff_s=0.2)


@pytest.fixture
def supervised_format_service():
    cfg = load_config(["reward.timeout_s=20"])
    procs = RewardProcesses()
    address = bring_up(procs, cfg.reward, ["format"], timeout_s=60)["format"]
    sup = Supervisor(SUP)
    sup.watch(
        "reward service format",
        lambda: procs.check("format", SUP.check_timeout_s, None, None),
        lambda: procs.restart("format", 60),
    )
    sup.start()
    try:
        yield procs, address, sup, cfg
    finally:
        sup.stop()
        procs.stop()


def _wait_recovered(sup, timeout_s=60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        incidents = sup.report().get("reward service format", {}).get("incidents", [])
        if incidents and incidents[-1]["recovered_s"] is not None:
            return sup.report()["reward service format"]
        time.sleep(0.1)
    pytest.fail(f"the supervisor did not bring the service back within {timeout_s}s: {sup.report()}")


def _score(client) -> list:
    return client.score([ScoreInput(0, "p", GOOD, "4"), ScoreInput(1, "p", "no tags", "4")])


@pytest.mark.parametrize("fault", ["kill -9", "SIGSTOP"])
def test_a_failed_reward_service_comes_back_on_its_address(supervised_format_service, fault):
    procs, address, sup, cfg = supervised_format_service
    with RewardClient(address, cfg.reward) as client:
        assert [r.value for r in _score(client)] == [1.0, 0.0]
        old = procs.procs["format"]
        os.kill(old.pid, signal.SIGKILL if fault == "kill -9" else signal.SIGSTOP)
        # A call made while the service is down waits for it (wait_for_ready) and is answered by the new one.
        results = _score(client)
        assert [(r.status, r.value) for r in results] == [(ScoreStatus.OK, 1.0), (ScoreStatus.OK, 0.0)]
        report = _wait_recovered(sup)
    assert procs.procs["format"].pid != old.pid and procs.addresses["format"] == address
    assert report["restarts"] == 1
    error = report["incidents"][0]["error"]
    assert error.startswith("exited with code -9") if fault == "kill -9" else "SERVING" in error
    sup.raise_if_failed()
