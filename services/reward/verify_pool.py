"""A small pool of verifier processes with a hard per-item time budget.

Why processes and not threads: math-verify's own timeout is SIGALRM, which only works on the main
thread of the main interpreter, and some inputs (power towers such as `2^2^2^2^2^2`) hang inside
sympy regardless. A thread cannot be stopped; a process can. So each item is sent to a worker
process, and a worker that has not answered within `timeout_s` is killed (SIGKILL) and replaced; the
item gets `ScoreStatus.TIMEOUT`, never a made-up 0.

The pool is not tied to math-verify: it runs any worker module that speaks the protocol below, so the
reasoning-gym scorer (`gym_worker`, whose `score_answer` can hang in sympy too) shares this machinery,
its time budget and its TIMEOUT/ERROR semantics instead of a copy of them. The protocol: the worker
writes {"ready": true} once warmed up, then answers each request line with one reply line,
{"equal": bool} (1.0 or 0.0), {"score": float in [0, 1]} or {"error": "<reason>"}.

How it is built:
* Workers are plain subprocesses (`python -m <worker_module>`, by default
  `services.reward.verify_worker`) speaking JSON lines on stdin/stdout. Not `multiprocessing`: its
  spawn and forkserver start methods re-import the parent's `__main__` in every child (an
  orchestrator's torch import would land in every verifier), and fork is unsafe in a process that
  runs gRPC threads. JSON also keeps pickle out of the pipe.
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
import math
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from services.paths import subprocess_pythonpath
from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus

logger = logging.getLogger(__name__)

WORKER_MODULE = "services.reward.verify_worker"
# Address-space cap of one worker: enough for sympy (~100 MB idle), small next to the run's 8 GiB.
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30


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

    def __init__(self, worker_module: str, memory_limit_bytes: int) -> None:
        env = dict(os.environ)
        # The workers import this same `services`, whatever the cwd is.
        pythonpath = subprocess_pythonpath(env.get("PYTHONPATH"))
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", worker_module, f"--memory-limit-bytes={memory_limit_bytes}"],
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


def reply_verdict(reply: dict) -> Verdict:
    """The Verdict of a worker's reply line: {"equal": bool}, {"score": float in [0, 1]} or {"error": ...}."""
    if "equal" in reply:
        return Verdict(ScoreStatus.OK, 1.0 if reply["equal"] else 0.0)
    if "score" in reply:
        score = reply["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            return Verdict(ScoreStatus.ERROR, 0.0, f"verifier returned a non-number score {score!r}")
        if not 0.0 <= score <= 1.0:
            return Verdict(ScoreStatus.ERROR, 0.0, f"verifier returned a score {score!r} outside [0, 1]")
        return Verdict(ScoreStatus.OK, float(score))
    return Verdict(ScoreStatus.ERROR, 0.0, str(reply.get("error", reply)))


class VerifyPool:
    """`num_workers` processes of `worker_module`; `request(message)` (or, for the math verifier,
    `run(answer, reference)`) returns a Verdict within ~`timeout_s`. `label` names the verifier in
    error details ("math verifier", "reasoning-gym verifier")."""

    def __init__(
        self,
        num_workers: int,
        timeout_s: float,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        start_timeout_s: float = 60.0,
        worker_module: str = WORKER_MODULE,
        label: str = "math verifier",
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"reward.verify_workers must be at least 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"reward.verify_timeout_s must be positive, got {timeout_s}")
        self.num_workers = num_workers
        self.worker_module = worker_module
        self.label = label
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
        """Verify `answer` against `reference` (the math verifier's request); thread-safe."""
        return self.request({"answer": answer, "reference": reference})

    def request(self, message: dict) -> Verdict:
        """Send the JSON-ready `message` to a worker process and return its Verdict; thread-safe."""
        worker = self._slots.get()
        healthy = False
        try:
            if self._closed:
                return Verdict(ScoreStatus.ERROR, 0.0, f"{self.label} is shut down")
            if worker is None:
                worker = self._spawn()
            verdict, healthy = self._ask(worker, message)
            return verdict
        except OSError as exc:  # The process could not be started (out of memory, fd limits).
            logger.error("could not start a %s process: %s", self.label, exc)
            return Verdict(ScoreStatus.ERROR, 0.0, f"could not start a {self.label} process: {exc}")
        finally:
            if worker is not None and not healthy:
                self._retire(worker)
                worker = None
            self._slots.put(worker)

    def _ask(self, worker: _Worker, message: dict) -> tuple[Verdict, bool]:
        """Send one item to `worker`; return the verdict and whether the worker may be reused."""
        try:
            worker.wait_ready(self._start_timeout_s)
        except (TimeoutError, WorkerGone, ValueError) as exc:
            detail = f"{self.label} process failed to start: {exc}"
            return Verdict(ScoreStatus.ERROR, 0.0, self._closed_or(detail)), False
        started = time.monotonic()
        try:
            worker.send(message)
            reply = worker.read_line(self._timeout_s)
        except (WorkerGone, ValueError) as exc:
            detail = f"{self.label} process died on this input ({exc})"
            return Verdict(ScoreStatus.ERROR, 0.0, self._closed_or(detail)), False
        if reply is None:
            logger.warning("%s passed its %gs budget; killing it", self.label, self._timeout_s)
            detail = f"verification took longer than reward.verify_timeout_s={self._timeout_s:g}s"
            return Verdict(ScoreStatus.TIMEOUT, 0.0, detail), False
        logger.debug("verified in %.3fs", time.monotonic() - started)
        if not isinstance(reply, dict):
            return Verdict(ScoreStatus.ERROR, 0.0, f"{self.label} sent {reply!r}"), False
        return reply_verdict(reply), True

    def _closed_or(self, detail: str) -> str:
        return f"{self.label} is shut down" if self._closed else detail

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise OSError(f"{self.label} is shut down")
            worker = self._spawner.submit(_Worker, self.worker_module, self._memory_limit_bytes).result()
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


def score_on_pool(
    items: list[ScoreInput],
    precheck: Callable[[ScoreInput], ScoreResult | dict],
    pool: VerifyPool,
    executor: ThreadPoolExecutor,
) -> list[ScoreResult]:
    """Score `items` with a pool-backed verifier: `precheck(item)` either settles an item at once (a
    ScoreResult) or returns the request for a worker; requests run in parallel on `executor` (one thread
    per worker process, each blocking on its item's pipe). Results come back in item order."""
    prepared = [precheck(item) for item in items]
    pending = {
        i: executor.submit(pool.request, job) for i, job in enumerate(prepared) if isinstance(job, dict)
    }
    results = []
    for i, item in enumerate(items):
        job = prepared[i]
        if isinstance(job, ScoreResult):
            results.append(job)
        else:
            verdict: Verdict = pending[i].result()
            results.append(ScoreResult(item.sample_index, verdict.value, verdict.status, verdict.detail))
    return results
