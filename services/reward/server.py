"""The reward gRPC service: a thin servicer around one `Scorer`.

It converts `ScoreRequest` into `ScoreInput`s, calls `scorer.score` and converts the results back;
all judgement lives in the scorer. The transport rules come from `services.transport.grpc_utils`:
explicit message limits (an oversize request gets RESOURCE_EXHAUSTED from gRPC itself and the server
keeps serving), token auth when a token is configured, the standard health service, optional TLS.

The service also defines the one line a started service prints on stdout, which launchers parse to
learn the port that was picked (`--port 0`):

    REWARD_SERVICE_READY name=accuracy address=127.0.0.1:43117
"""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc

from services.pb import reward_pb2, reward_pb2_grpc, rollout_pb2
from services.reward.scorer import ScoreInput, Scorer, ScoreResult, ScoreStatus
from services.transport import grpc_utils

logger = logging.getLogger(__name__)

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name
READY_PREFIX = "REWARD_SERVICE_READY"
_READY_RE = re.compile(rf"^{READY_PREFIX} name=(?P<name>\S+) address=(?P<address>\S+)$")

STATUS_TO_PROTO = {
    ScoreStatus.OK: rollout_pb2.REWARD_STATUS_OK,
    ScoreStatus.TIMEOUT: rollout_pb2.REWARD_STATUS_TIMEOUT,
    ScoreStatus.ERROR: rollout_pb2.REWARD_STATUS_ERROR,
    ScoreStatus.UNAVAILABLE: rollout_pb2.REWARD_STATUS_UNAVAILABLE,
}
# UNSPECIFIED is "treated as an error by every reader" (rollout.proto).
PROTO_TO_STATUS = {proto: status for status, proto in STATUS_TO_PROTO.items()}


def ready_line(name: str, address: str) -> str:
    """The stdout line announcing that service `name` listens on `address`."""
    return f"{READY_PREFIX} name={name} address={address}"


def parse_ready_line(line: str) -> tuple[str, str] | None:
    """(name, address) from a ready line, or None for any other line."""
    match = _READY_RE.match(line.strip())
    return (match["name"], match["address"]) if match else None


def items_from_proto(request: reward_pb2.ScoreRequest) -> list[ScoreInput]:
    return [
        ScoreInput(
            sample_index=item.sample_index,
            prompt=item.prompt,
            completion=item.completion,
            answer=item.answer,
            language=item.language,
            metadata_json=item.metadata_json,
        )
        for item in request.items
    ]


def response_to_proto(name: str, results: list[ScoreResult]) -> reward_pb2.ScoreResponse:
    return reward_pb2.ScoreResponse(
        scorer=name,
        scores=[
            reward_pb2.ItemScore(
                sample_index=r.sample_index, value=r.value, status=STATUS_TO_PROTO[r.status], detail=r.detail
            )
            for r in results
        ],
    )


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """Score(ScoreRequest) -> ScoreResponse through one scorer."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer

    def Score(
        self, request: reward_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> reward_pb2.ScoreResponse:
        items = items_from_proto(request)
        try:
            results = self._scorer.score(items)
        except Exception as exc:
            logger.exception("scorer %s failed on a batch of %d items", self._scorer.name, len(items))
            context.abort(grpc.StatusCode.INTERNAL, f"scorer {self._scorer.name} failed: {exc}")
        if len(results) != len(items):
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"scorer {self._scorer.name} returned {len(results)} scores for {len(items)} items",
            )
        return response_to_proto(self._scorer.name, results)


def build_server(scorer: Scorer, cfg: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[grpc.Server, int]:
    """A reward server for `scorer`, bound but not started; returns (server, bound_port).

    `cfg` is a RewardConfig-shaped object: max_message_bytes, token, tls_cert and tls_key are read, and
    health_without_token when it has one.
    Call `server.start()`, and `server.stop(grace)` to drain in-flight calls before exiting.
    """
    server = grpc_utils.new_server(
        cfg.max_message_bytes, token=cfg.token, open_health=getattr(cfg, "health_without_token", False)
    )
    reward_pb2_grpc.add_RewardServiceServicer_to_server(RewardServicer(scorer), server)
    grpc_utils.add_health(server, [SERVICE_NAME])
    credentials = grpc_utils.server_credentials(cfg.tls_cert, cfg.tls_key)
    bound = grpc_utils.bind(server, host, port, credentials)
    return server, bound
