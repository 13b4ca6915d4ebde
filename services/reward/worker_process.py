"""What every verifier worker process does besides its own check: the JSON-lines loop and self-protection.

`verify_worker` (math-verify) and `gym_worker` (reasoning-gym) are separate modules so each imports only
its own library, but they share one protocol with `verify_pool.VerifyPool`, implemented once here:

* the first line written is {"ready": true}, after `warm_up` ran, so start-up is never charged to an
  item's time budget;
* then one reply line (a JSON object from `handle_line`) per request line, in order;
* the protocol owns the original stdout: anything a library prints goes to stderr instead;
* on Linux, PR_SET_PDEATHSIG, so a worker stuck in sympy dies with its parent instead of spinning on;
* an address-space limit (`--memory-limit-bytes`), set after the warm-up, so an input that tries to
  build a gigabyte-sized integer gets MemoryError instead of eating the run's memory;
* SIGINT is ignored: Ctrl-C goes to the parent, which stops the workers.

The parent kills a worker that passes its time budget, so workers have no timeout of their own.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def limit_memory(memory_limit_bytes: int) -> None:
    """Cap this process's address space at `memory_limit_bytes` (0 = no cap; never above the hard limit)."""
    if memory_limit_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit_bytes if hard == resource.RLIM_INFINITY else min(hard, memory_limit_bytes)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve(
    description: str,
    handle_line: Callable[[str], dict],
    warm_up: Callable[[], None],
    argv: list[str] | None = None,
) -> None:
    """Run the worker protocol on stdin/stdout until stdin closes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--memory-limit-bytes", type=int, default=0, help="address-space cap; 0 = none")
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="ascii")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    warm_up()
    limit_memory(args.memory_limit_bytes)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(handle_line(line)) + "\n")
        out.flush()
