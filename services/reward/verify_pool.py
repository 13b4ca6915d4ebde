"""A small pool of math-verifier processes with a hard per-item time budget.

Why processes and not threads: math-verify's own timeout is SIGALRM, which only works on the main
thread of the main interpreter, and some inputs (power towers such as `2^2^2^2^2^2`) hang inside
sympy regardless. A thread cannot be stopped; a process can. So each item is sent to a worker
process, and a worker that has not answered within `timeout_s` is killed (SIGKILL) and replaced; the
item gets `ScoreStatus.TIMEOUT`, never a made-up 0.

How it is built:
* Workers are plain subprocesses (`python -m services.reward.verify_worker`) speaking JSON lines on
  stdin/stdout. Not `multiprocessing`: its spawn and forkserver start methods re-import the parent's
  `__main__` in every child (an orchestrator's torch import would land in every verifier), and fork
  is unsafe in a process that runs gRPC threads. JSON also keeps pickle out of the pipe.
* Slots, not threads, are pooled: a queue holds one entry per slot, either a live worker or `None`
  ("start one when needed"). The pool therefore starts lazily (no process until the first item),
  and a worker that could not be started leaves an empty slot behind instead of shrinking the pool
  until callers block forever.
* A worker says ready after warming up; the time budget starts when the item is sent, so start-up
  (about half a second) is never charged to an item.
* `run` is thread-safe; callers block on the slot queue until a worker is free.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.reward.scorer import ScoreStatus

logger = logging.getLogger(__name__)

WORKER_MODULE = "services.reward.verify_worker"
# Address-space cap of one worker: enough for sympy (~100 MB idle), small next to the run's 8 GiB.
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30
# Directory holding the `services` package, put on the workers' PYTHONPATH whatever the cwd is.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Verdict:
    """Outcome of one verification: status, value (1.0 equivalent, 0.0 not) and a reason."""

    status: ScoreStatus
    value: float
    detail: str = ""


class WorkerGone(Exception):
    """The worker process exited or closed its pipe."""


class _Worker:
    """One verifier subprocess and the parent's ends of its pipes."""

    def __init__(self, memory_limit_bytes: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, f"--memory-limit-bytes={memory_limit_bytes}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        # Both pipes exist: Popen was given PIPE for each.
        self._stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self.ready = False

    def read_line(self, timeout_s: float) -> dict | None:
        """The next reply, or None when none came within `timeout_s`. Raises WorkerGone."""
        readable, _, _ = select.select([self._stdout], [], [], timeout_s)
        if not readable:
            return None
        line = self._stdout.readline()
        if not line:
            raise WorkerGone(f"exit code {self.process.poll()}")
        return json.loads(line)

    def send(self, message: dict) -> None:
        try:
            self._stdin.write(json.dumps(message).encode("ascii") + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerGone(str(exc)) from exc

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready:
            return
        reply = self.read_line(timeout_s)
        if reply is None:
            raise TimeoutError(f"not ready after {timeout_s:g}s")
        if reply != {"ready": True}:
            raise WorkerGone(f"sent {reply!r} instead of ready")
        self.ready = True

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10.0)
        for pipe in (self._stdin, self._stdout):
            try:
                pipe.close()
            except OSError:
                pass  # A broken pipe to a dead process; nothing left to flush.


class VerifyPool:
    """`num_workers` verifier processes; `run(answer, reference)` returns a Verdict within ~`timeout_s`."""

    def __init__(
        self,
        num_workers: int,
        timeout_s: float,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        start_timeout_s: float = 60.0,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"reward.verify_workers must be at least 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"reward.verify_timeout_s must be positive, got {timeout_s}")
        self.num_workers = num_workers
        self._timeout_s = float(timeout_s)
        self._memory_limit_bytes = memory_limit_bytes
        self._start_timeout_s = start_timeout_s
        self._slots: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(num_workers):
            self._slots.put(None)
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Workers are started from this one long-lived thread: Linux's PR_SET_PDEATHSIG fires when the
        # creating *thread* exits, so a worker started from a short-lived caller thread would die with it.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-spawner")

    def run(self, answer: str, reference: str) -> Verdict:
        """Verify `answer` against `reference` in a worker process; thread-safe."""
        worker = self._slots.get()
        healthy = False
        try:
            if self._closed:
                return Verdict(ScoreStatus.ERROR, 0.0, "math verifier is shut down")
            if worker is None:
                worker = self._spawn()
            verdict, healthy = self._ask(worker, answer, reference)
            return verdict
        except OSError as exc:  # The process could not be started (out of memory, fd limits).
            logger.error("could not start a math verifier process: %s", exc)
            return Verdict(ScoreStatus.ERROR, 0.0, f"could not start a math verifier process: {exc}")
        finally:
            if worker is not None and not healthy:
                self._retire(worker)
                worker = None
            self._slots.put(worker)

    def _ask(self, worker: _Worker, answer: str, reference: str) -> tuple[Verdict, bool]:
        """Send one item to `worker`; return the verdict and whether the worker may be reused."""
        try:
            worker.wait_ready(self._start_timeout_s)
        except (TimeoutError, WorkerGone, ValueError) as exc:
            detail = f"math verifier process failed to start: {exc}"
            return Verdict(ScoreStatus.ERROR, 0.0, self._closed_or(detail)), False
        started = time.monotonic()
        try:
            worker.send({"answer": answer, "reference": reference})
            reply = worker.read_line(self._timeout_s)
        except (WorkerGone, ValueError) as exc:
            detail = f"math verifier process died on this input ({exc})"
            return Verdict(ScoreStatus.ERROR, 0.0, self._closed_or(detail)), False
        if reply is None:
            logger.warning("math verifier passed its %gs budget; killing it", self._timeout_s)
            detail = f"verification took longer than reward.verify_timeout_s={self._timeout_s:g}s"
            return Verdict(ScoreStatus.TIMEOUT, 0.0, detail), False
        logger.debug("verified in %.3fs", time.monotonic() - started)
        if "equal" in reply:
            return Verdict(ScoreStatus.OK, 1.0 if reply["equal"] else 0.0), True
        return Verdict(ScoreStatus.ERROR, 0.0, str(reply.get("error", reply))), True

    def _closed_or(self, detail: str) -> str:
        return "math verifier is shut down" if self._closed else detail

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise OSError("math verifier is shut down")
            worker = self._spawner.submit(_Worker, self._memory_limit_bytes).result()
            self._live.add(worker)
            return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)
        worker.kill()

    def live_pids(self) -> list[int]:
        """Process ids of the running workers (for tests and metrics)."""
        with self._lock:
            return sorted(w.process.pid for w in self._live if w.process.pid is not None)

    def close(self) -> None:
        """Kill every worker; calls in flight return an error verdict. Idempotent."""
        with self._lock:
            self._closed = True
            workers = list(self._live)
            self._live.clear()
        self._spawner.shutdown(wait=False)
        for worker in workers:
            worker.kill()
