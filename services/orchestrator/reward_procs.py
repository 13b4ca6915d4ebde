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
        self.cmds: dict[str, list[str]] = {}
        self.addresses: dict[str, str] = {}

    def start(self, scorers: list[str], overrides: list[str], timeout_s: float) -> dict[str, str]:
        """Start one process per scorer; return scorer name -> address once all are ready."""
        addresses, new = {}, {}
        for name in scorers:
            if name in self.procs:
                raise ValueError(f"reward service {name!r} is already running in this run")
            self.cmds[name] = [sys.executable, "-m", "services.reward", "--scorer", name, "--port", "{port}"]
            self.cmds[name] += overrides
            self.procs[name] = new[name] = _spawn(self.cmds[name], port=0)
        for name, proc in new.items():
            addresses[name] = self.addresses[name] = _wait_ready(name, proc, timeout_s)
            log.info("reward service %s ready at %s (pid %d)", name, addresses[name], proc.pid)
        return addresses

    def check(self, name: str, timeout_s: float, token: str | None, tls_ca: str | None) -> str | None:
        """None when service `name` runs and answers SERVING; else what is wrong ("exited ..." if dead)."""
        from services.transport.grpc_utils import wait_healthy

        proc = self.procs[name]
        if proc.poll() is not None:
            return f"exited with code {proc.returncode}"
        try:
            wait_healthy(self.addresses[name], timeout_s, token=token, tls_ca=tls_ca)
        except (TimeoutError, PermissionError) as e:
            return str(e)
        return None

    def restart(self, name: str, timeout_s: float) -> str:
        """Kill service `name` (if still there) and start it again on the same address, so that clients
        reconnect without being told; returns the address."""
        old = self.procs[name]
        if old.poll() is None:
            old.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
        old.wait()
        port = int(self.addresses[name].rsplit(":", 1)[1])
        self.procs[name] = proc = _spawn(self.cmds[name], port)
        address = _wait_ready(name, proc, timeout_s)
        log.warning("reward service %s restarted at %s (pid %d)", name, address, proc.pid)
        return address

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
        self.addresses.clear()


def _spawn(cmd: list[str], port: int) -> subprocess.Popen:
    argv = [str(port) if arg == "{port}" else arg for arg in cmd]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1)


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


def reward_overrides(rw) -> list[str]:
    """`reward.*` config as Hydra overrides for a reward service process (scalars and lists of scalars)."""
    out = []
    for key, value in rw.items():
        if isinstance(value, (int, float, str)):
            out.append(f"reward.{key}={value}")
        elif value is not None and not hasattr(value, "keys") and hasattr(value, "__len__"):
            out.append(f"reward.{key}=[{','.join(str(v) for v in value)}]")
    return out


def bring_up(
    procs: RewardProcesses, rw, names: list[str], timeout_s: float, extra: list[str] | None = None
) -> dict[str, str]:
    """Start the services `names` with the run's reward config (+ `extra` overrides); wait until healthy."""
    from services.transport.grpc_utils import wait_healthy

    if not names:
        return {}
    started = procs.start(names, reward_overrides(rw) + list(extra or []), timeout_s)
    for addr in started.values():
        wait_healthy(addr, timeout_s, token=rw.token, tls_ca=rw.get("tls_ca"))
    return started


def check_given(rw, names: list[str], timeout_s: float) -> None:
    """Fail fast, naming the address, when a reward service the user gave does not serve."""
    from services.transport.grpc_utils import wait_healthy

    for name in names:
        addr = rw.addresses[name]
        try:
            wait_healthy(addr, timeout_s, token=rw.token, tls_ca=rw.get("tls_ca"))
        except TimeoutError as e:
            raise TimeoutError(
                f"reward service {name!r} at reward.addresses.{name}={addr} is not serving after "
                f"{timeout_s:g}s ({e}); start it, fix the address, or remove the override so that r1forge "
                "starts one itself"
            ) from None
