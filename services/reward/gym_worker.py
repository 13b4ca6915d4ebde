"""One reasoning-gym verifier process: `python -m services.reward.gym_worker`, JSON lines on stdin/stdout.

Request line:  {"answer": "..." | null, "entry": {question, answer, metadata: {source_dataset, ...}}}
Reply line:    {"score": <float in [0, 1]>}  or  {"error": "<reason>"}
The first line the worker writes is {"ready": true}, once reasoning-gym is imported and one item scored.

Why a process: a reasoning-gym `score_answer` is arbitrary library code, and some of it hangs (countdown
hands the answer to sympy's `parse_expr`, which evaluates `9**9**9**9` for ever). `verify_pool.VerifyPool`
kills a worker past `reward.verify_timeout_s` and the item gets TIMEOUT, as for the math verifier.

The item's own dataset judges it: `entry["metadata"]["source_dataset"]` names it, and the dataset object
(built once per name with its default config, then cached) runs `score_answer(answer, entry)`. The score
functions read the entry, not the config, for the datasets this project uses (basic_arithmetic,
chain_sum, gsm_symbolic, countdown); a dataset whose check depends on non-default config arguments would
be judged with the defaults. Every failure is an {"error"} reply, never a made-up score.
"""

from __future__ import annotations

import json
from typing import Any

import reasoning_gym
from reasoning_gym.factory import DATASETS

from services.reward.worker_process import serve

_MAX_DETAIL_CHARS = 200
# The dataset a worker scores once before saying ready (cheap; pulls in the scoring code paths).
_WARM_UP_DATASET = "basic_arithmetic"

_datasets: dict[str, Any] = {}


def dataset(name: str) -> Any:
    """The cached dataset object for `name`, built with its default config on first use."""
    if name not in _datasets:
        if name not in DATASETS:
            raise ValueError(f"unknown reasoning-gym dataset {name!r} in metadata.source_dataset")
        dataset_cls, config_cls = DATASETS[name]
        _datasets[name] = dataset_cls(config=config_cls())
    return _datasets[name]


def score_entry(answer: str | None, entry: dict) -> float:
    """The score the entry's own dataset gives `answer` (None = no answer), as a float in [0, 1]."""
    if not isinstance(entry, dict) or not isinstance(entry.get("metadata"), dict):
        raise ValueError("the entry has no metadata object")
    name = entry["metadata"].get("source_dataset")
    if not isinstance(name, str) or not name:
        raise ValueError("the entry's metadata has no source_dataset")
    return float(dataset(name).score_answer(answer, entry))


def handle_line(line: str) -> dict[str, object]:
    """Answer one request line; every failure becomes {"error": ...}, never a score."""
    try:
        request = json.loads(line)
        answer = request["answer"]
        return {"score": score_entry(None if answer is None else str(answer), request["entry"])}
    except MemoryError:
        return {"error": "reasoning-gym scorer ran out of memory"}
    except Exception as exc:  # noqa: BLE001 - any failure of the library is reported, not fatal
        return {"error": f"{type(exc).__name__}: {str(exc)[:_MAX_DETAIL_CHARS]}"}


def warm_up() -> None:
    item = reasoning_gym.create_dataset(_WARM_UP_DATASET, seed=0, size=1)[0]
    score_entry(item["answer"], item)


def main(argv: list[str] | None = None) -> None:
    serve(__doc__.splitlines()[0], handle_line, warm_up, argv)


if __name__ == "__main__":
    main()
