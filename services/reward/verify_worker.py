"""One math-verifier worker process: `python -m services.reward.verify_worker`, JSON lines on stdin/stdout.

Request line:  {"answer": "...", "reference": "..."}
Reply line:    {"equal": true|false}  or  {"error": "<reason>"}
The first line the worker writes is {"ready": true}, once math-verify is imported and warmed up, so
the parent never charges start-up to an item's time budget.

The parent (`verify_pool.VerifyPool`) kills a worker that passes its time budget, so this code has no
timeout of its own: math-verify's SIGALRM timeouts are switched off (`parsing_timeout=None`,
`timeout_seconds=None`) because when they fire, math-verify returns an empty parse or False, which
would turn "could not verify" into a silent score of 0. Errors are raised instead of swallowed
(`raise_on_error=True`) for the same reason.

The worker also protects the machine on its own:
* an address-space limit (`--memory-limit-bytes`), so that a power tower that tries to build a
  gigabyte-sized integer gets MemoryError instead of eating the run's memory;
* on Linux, PR_SET_PDEATHSIG, so a worker stuck in sympy dies with its parent instead of spinning on.
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

from math_verify import parse, verify

_PR_SET_PDEATHSIG = 1
_MAX_DETAIL_CHARS = 200


def verify_answer(answer: str, reference: str) -> bool:
    """True when `answer` is mathematically equivalent to `reference` ("1/2" vs "0.5")."""
    gold = parse(reference, parsing_timeout=None, raise_on_error=True)
    if not gold:
        raise ValueError("the reference answer could not be parsed")
    predicted = parse(answer, parsing_timeout=None, raise_on_error=True)
    if not predicted:
        return False
    return bool(verify(gold, predicted, timeout_seconds=None, raise_on_error=True))


def handle_line(line: str) -> dict[str, object]:
    """Answer one request line; every failure becomes {"error": ...}, never {"equal": false}."""
    try:
        request = json.loads(line)
        return {"equal": verify_answer(str(request["answer"]), str(request["reference"]))}
    except MemoryError:
        return {"error": "verifier ran out of memory"}
    except Exception as exc:  # noqa: BLE001 - any failure of the verifier is reported, not fatal
        # Never format parsed expressions here: str() of a huge sympy object can hang by itself.
        return {"error": f"{type(exc).__name__}: {str(exc)[:_MAX_DETAIL_CHARS]}"}


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _limit_memory(memory_limit_bytes: int) -> None:
    if memory_limit_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit_bytes if hard == resource.RLIM_INFINITY else min(hard, memory_limit_bytes)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-limit-bytes", type=int, default=0, help="address-space cap; 0 = none")
    args = parser.parse_args(argv)
    # The protocol owns the original stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="ascii")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" is on purpose.
    verify_answer("1", "1")  # The first call builds math-verify's grammars; keep it out of item budgets.
    _limit_memory(args.memory_limit_bytes)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(handle_line(line)) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
