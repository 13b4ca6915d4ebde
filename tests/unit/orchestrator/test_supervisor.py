"""The supervisor's rules: when it restarts, how the backoff grows, when it gives a service up.

The watched "service" here is a plain object with the same two callables the runtime gives it for a
reward process or the embedded Redis (those are exercised for real in tests/integration and
tests/chaos); the clock is a number the test advances.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.orchestrator.supervisor import ServiceFailed, Supervisor

CFG = SimpleNamespace(interval_s=1.0, check_timeout_s=1.0, unhealthy_after=2, max_restarts=2, backoff_s=1.0)


class Service:
    def __init__(self) -> None:
        self.state = "ok"  # "ok", "hung" (answers nothing) or "dead" (process exited)
        self.restarts = 0
        self.restart_works = True

    def check(self):
        return {"ok": None, "hung": "health check timed out", "dead": "exited with code -9"}[self.state]

    def restart(self):
        self.restarts += 1
        if not self.restart_works:
            raise RuntimeError("port in use")
        self.state = "ok"


def _supervised(cfg=CFG):
    now = [0.0]
    sup = Supervisor(cfg, clock=lambda: now[0])
    svc = Service()
    sup.watch("reward service accuracy", svc.check, svc.restart)
    return sup, svc, now


def _tick(sup, now, dt=1.0):
    now[0] += dt
    sup.poll_once()


def test_a_dead_service_restarts_after_the_backoff_and_its_downtime_is_recorded():
    sup, svc, now = _supervised()
    sup.poll_once()
    svc.state = "dead"
    _tick(sup, now, 0.5)  # detected at t=0.5; first restart due after backoff_s = 1
    assert svc.restarts == 0
    _tick(sup, now)  # t=1.5: restarted
    assert svc.restarts == 1
    _tick(sup, now)  # t=2.5: healthy again
    report = sup.report()["reward service accuracy"]
    assert report["restarts"] == 1
    assert report["incidents"] == [
        {"service": "reward service accuracy", "error": "exited with code -9", "recovered_s": 2.0}
    ]
    sup.raise_if_failed()


def test_a_hung_service_is_restarted_only_after_unhealthy_after_failed_checks():
    sup, svc, now = _supervised()
    svc.state = "hung"
    _tick(sup, now, 5.0)  # one failed check: past the backoff, but one is not enough
    assert svc.restarts == 0
    _tick(sup, now)  # two in a row: restart
    assert svc.restarts == 1 and svc.state == "ok"


def test_backoff_doubles_and_an_exhausted_budget_fails_the_run_naming_the_service():
    sup, svc, now = _supervised()
    svc.restart_works = False
    svc.state = "dead"
    times = []
    for _ in range(16):
        _tick(sup, now, 0.5)
        if svc.restarts > len(times):
            times.append(now[0])
        if now[0] == 7.0:
            sup.raise_if_failed()  # still within the budget
    # Detected at 0.5: restarts at 0.5 + 1, then 2 s later (1.5 + 2); the next is due 4 s later (7.5),
    # but the budget (2) is spent: the run fails then.
    assert times == [1.5, 3.5]
    with pytest.raises(ServiceFailed, match=r"'reward service accuracy' failed again after 2 restarts"):
        sup.raise_if_failed()
    with pytest.raises(ServiceFailed, match="restart failed: RuntimeError: port in use"):
        sup.raise_if_failed()


def test_a_check_that_raises_counts_as_a_failed_check():
    sup, svc, now = _supervised()
    sup.watch("redis", lambda: 1 / 0, svc.restart)
    _tick(sup, now, 5.0)
    _tick(sup, now)
    assert "health check raised ZeroDivisionError" in sup.services["redis"].last_error
    assert svc.restarts == 1


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="unhealthy_after=0"):
        Supervisor(SimpleNamespace(**{**vars(CFG), "unhealthy_after": 0}))
