"""Start reward services as local processes (`python -m services.reward`) and wait until they serve.

The same command docker-compose runs, so a local run exercises the real entry point. Each process
prints one `REWARD_SERVICE_READY name=... address=host:port` line once it serves (it binds port 0, so
ports never collide); start-up past its deadline, or a process that exits, is an error naming it.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)
READY = re.compile(r"REWARD_SERVICE_READY name=(\S+) address=(\S+)")


class RewardProcesses:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, scorers: list[str], overrides: list[str], timeout_s: float) -> dict[str, str]:
        """Start one process per scorer; return scorer name -> address once all are ready."""
        addresses = {}
        for name in scorers:
            cmd = [sys.executable, "-m", "services.reward", "--scorer", name, "--port", "0", *overrides]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1)
            self.procs[name] = proc
        for name, proc in self.procs.items():
            addresses[name] = _wait_ready(name, proc, timeout_s)
            log.info("reward service %s ready at %s (pid %d)", name, addresses[name], proc.pid)
        return addresses

    def stop(self, grace_s: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def _wait_ready(name: str, proc: subprocess.Popen, timeout_s: float) -> str:
    found: list[str] = []

    def scan() -> None:
        for line in proc.stdout:
            m = READY.search(line)
            if m and not found:
                found.append(m.group(2))
        # keep draining so the child never blocks on a full pipe

    threading.Thread(target=scan, daemon=True, name=f"reward-{name}-stdout").start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found:
            return found[0]
        if proc.poll() is not None:
            raise RuntimeError(
                f"reward service {name!r} exited with code {proc.returncode} before serving "
                "(its error is printed above)"
            )
        time.sleep(0.05)
    raise TimeoutError(f"reward service {name!r} did not report ready within {timeout_s:.0f}s")
