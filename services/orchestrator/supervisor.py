"""The supervisor: health-check every service the run owns on an interval, restart what died.

It runs as a daemon thread of the driver (`Runtime` starts it once everything is up). Each watched
service is a `Watched`: a name, a `check()` that returns None when healthy and the error otherwise,
and a `restart()`. What it watches:

* each reward service process r1forge started: the process is alive and its gRPC health service
  answers SERVING (a hung or SIGSTOPped process fails the check and is replaced);
* the embedded Redis: its server process is alive and answers PING.

Ray restarts rollout worker actors itself (`max_restarts`); the driver watches their loops while it
waits on anything and re-syncs a restarted worker's weights and restarts its loop
(`rollouts.StreamingRollouts`, `rollouts.resync_worker`). Services the user runs (`reward.addresses`,
`redis.url`) are not r1forge's to restart; a failure there shows up as retried and then dead-lettered
groups.

A service is restarted after `unhealthy_after` failed checks in a row (at once when its process has
exited), after a backoff that doubles with each restart. One that has used `max_restarts` fails the
run: `raise_if_failed()`, which the stages call between steps, raises an error naming the service
and its last error. Every incident is recorded with how long the service was down (`report()`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class ServiceFailed(RuntimeError):
    """A supervised service died more often than its restart budget allows."""


@dataclass
class Watched:
    name: str
    check: Callable[[], str | None]  # None when healthy, else what is wrong ("exited ...": dead)
    restart: Callable[[], None]
    failures: int = 0  # failed checks in a row
    restarts: int = 0
    last_error: str = ""
    restart_error: str = ""  # why the last restart failed, if it did
    down_since: float | None = None  # monotonic time of the first failed check of the current incident
    next_restart_at: float = 0.0
    incidents: list[dict] = field(default_factory=list)


class Supervisor:
    def __init__(self, cfg, clock: Callable[[], float] = time.monotonic) -> None:
        if cfg.max_restarts < 0 or cfg.unhealthy_after < 1 or cfg.interval_s <= 0:
            raise ValueError(
                f"supervisor: max_restarts={cfg.max_restarts} (>= 0), unhealthy_after={cfg.unhealthy_after} "
                f"(>= 1) and interval_s={cfg.interval_s} (> 0) are out of range"
            )
        self.cfg = cfg
        self.clock = clock
        self.services: dict[str, Watched] = {}
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, check: Callable[[], str | None], restart: Callable[[], None]) -> None:
        with self._lock:
            self.services[name] = Watched(name, check, restart)

    def poll_once(self) -> None:
        """One round: check every service, restart the ones that are due, record recoveries."""
        with self._lock:
            services = list(self.services.values())
        for s in services:
            if self.failure is not None:
                return
            try:
                error = s.check()
            except Exception as e:  # a check that raises is a failed check, never a dead supervisor
                error = f"health check raised {type(e).__name__}: {e}"
            now = self.clock()
            if error is None:
                if s.down_since is not None:
                    s.incidents[-1]["recovered_s"] = round(now - s.down_since, 2)
                    log.warning("supervisor: %s is back after %.1fs", s.name, now - s.down_since)
                s.failures, s.down_since = 0, None
                continue
            s.failures += 1
            s.last_error = error
            if s.down_since is None:
                s.down_since = now
                s.next_restart_at = now + self.cfg.backoff_s * 2**s.restarts
                s.incidents.append({"service": s.name, "error": error, "recovered_s": None})
                log.warning("supervisor: %s is unhealthy: %s", s.name, error)
            exited = error.startswith("exited")  # a dead process: no point in checking it again
            if (exited or s.failures >= self.cfg.unhealthy_after) and now >= s.next_restart_at:
                self._restart(s, now)

    def _restart(self, s: Watched, now: float) -> None:
        if s.restarts >= self.cfg.max_restarts:
            self.failure = (
                f"service {s.name!r} failed again after {s.restarts} restarts "
                f"(supervisor.max_restarts={self.cfg.max_restarts}); last error: {s.last_error}"
                + (f"; last restart: {s.restart_error}" if s.restart_error else "")
            )
            log.error("supervisor: %s", self.failure)
            return
        s.restarts += 1
        s.next_restart_at = now + self.cfg.backoff_s * 2**s.restarts
        log.warning("supervisor: restarting %s (restart %d of %d)", s.name, s.restarts, self.cfg.max_restarts)
        try:
            s.restart()
        except Exception as e:
            s.restart_error = f"restart failed: {type(e).__name__}: {e}"
            log.error("supervisor: %s: %s", s.name, s.restart_error)
        else:
            s.failures, s.restart_error = 0, ""

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            raise ServiceFailed(self.failure)

    def report(self) -> dict:
        """Per service: restarts used, and each incident's first error and seconds until healthy."""
        with self._lock:
            return {
                s.name: {"restarts": s.restarts, "incidents": list(s.incidents)}
                for s in self.services.values()
                if s.incidents
            }

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.interval_s):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
