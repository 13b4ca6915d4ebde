"""Client of one reward service: `RewardClient(address, cfg).score(items) -> list[ScoreResult]`.

Rules it keeps (DESIGN.md "Deadlines everywhere" and "No silent zeros"):
* every call carries a deadline (`cfg.timeout_s`) and waits for the channel to be ready within it
  (`wait_for_ready`), so a service that the supervisor restarts on its address is used again without
  the caller noticing, and one that stays down costs one deadline;
* only UNAVAILABLE (a connection that broke during the call) is retried (Score is idempotent), up to
  `cfg.max_attempts` attempts with jittered exponential backoff;
* when the service stays unreachable, or the deadline passes, every item comes back with status
  `unavailable` and a detail naming the address; the caller decides what to do with the group. It
  never gets a made-up 0.
* any other gRPC failure (UNAUTHENTICATED, RESOURCE_EXHAUSTED, INTERNAL, ...) is a configuration or
  programming error, so it raises `RewardServiceError` naming the address and gRPC's reason.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import grpc

from services.pb import reward_pb2, reward_pb2_grpc
from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus
from services.reward.server import PROTO_TO_STATUS
from services.transport import grpc_utils

logger = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.2
_BACKOFF_MAX_S = 2.0


def _backoff_s(attempt: int) -> float:
    """Jittered exponential backoff before retry `attempt` + 1: 0.1-0.2 s, 0.2-0.4 s, ... up to 2 s."""
    return min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class RewardServiceError(RuntimeError):
    """A reward service answered with an error that retrying cannot fix."""


def request_to_proto(items: list[ScoreInput]) -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(
        items=[
            reward_pb2.ScoreItem(
                sample_index=item.sample_index,
                prompt=item.prompt,
                completion=item.completion,
                answer=item.answer,
                language=item.language,
                metadata_json=item.metadata_json,
            )
            for item in items
        ]
    )


def results_from_proto(response: reward_pb2.ScoreResponse) -> list[ScoreResult]:
    return [
        ScoreResult(
            sample_index=score.sample_index,
            value=score.value,
            status=PROTO_TO_STATUS.get(score.status, ScoreStatus.ERROR),
            detail=score.detail or ("" if score.status in PROTO_TO_STATUS else "reward status unset"),
        )
        for score in response.scores
    ]


class RewardClient:
    """Calls one reward service at `address`; `cfg` is a RewardConfig-shaped object."""

    def __init__(self, address: str, cfg: Any) -> None:
        if cfg.timeout_s <= 0:
            raise ValueError(f"reward.timeout_s must be positive, got {cfg.timeout_s}")
        if cfg.max_attempts < 1:
            raise ValueError(f"reward.max_attempts must be at least 1, got {cfg.max_attempts}")
        self.address = address
        self._timeout_s = float(cfg.timeout_s)
        self._max_attempts = int(cfg.max_attempts)
        self._metadata = grpc_utils.auth_metadata(cfg.token)
        self._channel = grpc_utils.make_channel(address, cfg.max_message_bytes, tls_ca=cfg.tls_ca)
        self._stub = reward_pb2_grpc.RewardServiceStub(self._channel)

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        """One result per item, in order; status `unavailable` for all when the service cannot answer."""
        if not items:
            return []
        request = request_to_proto(items)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._stub.Score(
                    request, timeout=self._timeout_s, metadata=self._metadata, wait_for_ready=True
                )
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self._max_attempts:
                    delay = _backoff_s(attempt)
                    logger.warning(
                        "reward service at %s unavailable (attempt %d/%d), retrying in %.2fs",
                        self.address,
                        attempt,
                        self._max_attempts,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    reason = f"{code.name} after {attempt} attempt(s): {err.details()}"
                    return self._unavailable(items, reason)
                raise RewardServiceError(
                    f"reward service at {self.address} failed: {code.name}: {err.details()}"
                ) from err
            return self._check(items, results_from_proto(response))

    def _unavailable(self, items: list[ScoreInput], reason: str) -> list[ScoreResult]:
        logger.error("reward service at %s could not score %d items: %s", self.address, len(items), reason)
        detail = f"reward service at {self.address}: {reason}"
        return [ScoreResult(item.sample_index, 0.0, ScoreStatus.UNAVAILABLE, detail) for item in items]

    def _check(self, items: list[ScoreInput], results: list[ScoreResult]) -> list[ScoreResult]:
        if len(results) != len(items):
            raise RewardServiceError(
                f"reward service at {self.address} returned {len(results)} scores for {len(items)} items"
            )
        return results

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
