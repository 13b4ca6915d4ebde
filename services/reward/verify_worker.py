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

The JSON-lines loop, the ready line, the address-space limit and PR_SET_PDEATHSIG are shared with
the other verifier workers (`worker_process.serve`).
"""

from __future__ import annotations

import json
import logging

from math_verify import parse, verify

from services.reward.worker_process import serve

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


def warm_up() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" is on purpose.
    verify_answer("1", "1")  # The first call builds math-verify's grammars; keep it out of item budgets.


def main(argv: list[str] | None = None) -> None:
    serve(__doc__.splitlines()[0], handle_line, warm_up, argv)


if __name__ == "__main__":
    main()
