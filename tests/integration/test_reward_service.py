"""The reward service over real gRPC on 127.0.0.1: in-process servers and `python -m services.reward`.

Each test crosses the real gRPC boundary (HTTP/2 on loopback) with the real servicer, interceptor,
health service and client; the only stand-in is `SlowScorer`, a scorer that sleeps, used to make a
call outlive its deadline.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.config import RewardConfig
from services.pb import reward_pb2, reward_pb2_grpc
from services.reward.client import RewardClient, RewardServiceError
from services.reward.format_checker import FormatScorer
from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus
from services.reward.server import SERVICE_NAME, build_server, parse_ready_line
from services.transport.grpc_utils import auth_metadata, make_channel, wait_healthy

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD = "<think>100 + 32 = 132</think><answer>132</answer>"
SMALL_LIMIT = 64 * 1024  # server receive limit for the oversize test: 64 KiB


def cfg(**overrides) -> RewardConfig:
    return replace(RewardConfig(timeout_s=5.0, max_attempts=2), **overrides)


def items(*completions: str, answer: str = "132") -> list[ScoreInput]:
    return [ScoreInput(i, "What is 100 + 32?", c, answer, "en") for i, c in enumerate(completions)]


class SlowScorer:
    """A scorer that takes `delay_s` per batch: stands in for a verifier stuck past the deadline."""

    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def score(self, batch: list[ScoreInput]) -> list[ScoreResult]:
        time.sleep(self.delay_s)
        return [ScoreResult(i.sample_index, 1.0, ScoreStatus.OK) for i in batch]

    def close(self) -> None:
        pass


@pytest.fixture
def serve():
    """serve(scorer, cfg) -> address of a started in-process server; all are stopped afterwards."""
    servers = []

    def start(scorer, reward_cfg: RewardConfig) -> str:
        server, port = build_server(scorer, reward_cfg, host="127.0.0.1", port=0)
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


def test_health_is_serving_and_score_round_trips(serve) -> None:
    address = serve(FormatScorer(), cfg())
    wait_healthy(address, timeout_s=10.0)
    wait_healthy(address, timeout_s=10.0, service=SERVICE_NAME)
    with RewardClient(address, cfg()) as client:
        results = client.score(items(GOOD, "132"))
    assert [(r.sample_index, r.value, r.status) for r in results] == [
        (0, 1.0, ScoreStatus.OK),
        (1, 0.0, ScoreStatus.OK),
    ]


def test_oversize_request_gets_resource_exhausted_and_server_keeps_serving(serve) -> None:
    address = serve(FormatScorer(), cfg(max_message_bytes=SMALL_LIMIT))
    # A client whose own limit is larger, so the server's receive limit is what trips.
    with make_channel(address, max_message_bytes=4 * SMALL_LIMIT) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        big = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(completion="x" * (2 * SMALL_LIMIT))])
        with pytest.raises(grpc.RpcError) as info:
            stub.Score(big, timeout=5.0)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with RewardClient(address, cfg(max_message_bytes=SMALL_LIMIT)) as client:
        [result] = client.score(items(GOOD))
    assert (result.status, result.value) == (ScoreStatus.OK, 1.0)


def test_calls_without_the_token_are_unauthenticated(serve) -> None:
    address = serve(FormatScorer(), cfg(token="s3cret"))
    with make_channel(address, max_message_bytes=1 << 20) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(completion=GOOD)])
        for metadata in [(), auth_metadata("wrong")]:
            with pytest.raises(grpc.RpcError) as info:
                stub.Score(request, timeout=5.0, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(PermissionError, match=address):
        wait_healthy(address, timeout_s=5.0)  # health checks need the token too
    with RewardClient(address, cfg(token="wrong")) as client, pytest.raises(RewardServiceError):
        client.score(items(GOOD))
    wait_healthy(address, timeout_s=5.0, token="s3cret")
    with RewardClient(address, cfg(token="s3cret")) as client:
        assert client.score(items(GOOD))[0].value == 1.0


def test_health_without_token_opens_the_health_check_alone(serve) -> None:
    """What a Kubernetes `grpc:` probe (no metadata) gets from a service with health_without_token."""
    address = serve(FormatScorer(), cfg(token="s3cret", health_without_token=True))
    wait_healthy(address, timeout_s=5.0)  # Health/Check without the token: SERVING
    wait_healthy(address, timeout_s=5.0, service=SERVICE_NAME)
    with make_channel(address, max_message_bytes=1 << 20) as channel:
        request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(completion=GOOD)])
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5.0)
        for call in [
            lambda: reward_pb2_grpc.RewardServiceStub(channel).Score(request, timeout=5.0),
            watch.next,
        ]:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_deadline_exceeded_gives_unavailable_not_zero(serve) -> None:
    address = serve(SlowScorer(delay_s=2.0), cfg())
    with RewardClient(address, cfg(timeout_s=0.5)) as client:
        results = client.score(items(GOOD, GOOD))
    assert [r.status for r in results] == [ScoreStatus.UNAVAILABLE] * 2
    assert all("DEADLINE_EXCEEDED" in r.detail and address in r.detail for r in results)


def test_no_server_gives_unavailable_with_the_address() -> None:
    address = f"127.0.0.1:{_unused_port()}"
    with RewardClient(address, cfg(timeout_s=1.0, max_attempts=3)) as client:
        results = client.score(items(GOOD))
    assert [r.status for r in results] == [ScoreStatus.UNAVAILABLE]
    # The call waits for the service to come up (wait_for_ready) until its deadline, then gives up.
    assert address in results[0].detail and "DEADLINE_EXCEEDED after 1 attempt(s)" in results[0].detail
    with pytest.raises(TimeoutError, match=address):
        wait_healthy(address, timeout_s=1.0)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_round_trip(serve, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    address = serve(FormatScorer(), cfg(tls_cert=str(cert), tls_key=str(key)))
    wait_healthy(address, timeout_s=10.0, tls_ca=str(cert))
    with RewardClient(address, cfg(tls_ca=str(cert))) as client:
        assert client.score(items(GOOD))[0].value == 1.0
    with RewardClient(address, cfg(timeout_s=1.0)) as plaintext:  # no CA: the handshake fails
        assert plaintext.score(items(GOOD))[0].status is ScoreStatus.UNAVAILABLE


# --- the real entry point in a subprocess ------------------------------------------------------


def start_service(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start `python -m services.reward ARGS`; return it and the address from its ready line."""
    log = (tmp_path / "reward-stderr.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.reward", *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if selector.select(timeout=1.0):
            line = proc.stdout.readline()
            if not line:
                break
            if parsed := parse_ready_line(line):
                return proc, parsed[1]
    proc.kill()
    raise RuntimeError(
        f"reward service did not start: {(tmp_path / 'reward-stderr.log').read_text()[-2000:]}"
    )


def test_entry_point_scores_and_survives_a_hanging_input(tmp_path: Path) -> None:
    proc, address = start_service(
        tmp_path, "--scorer", "accuracy", "--port", "0", "reward.verify_timeout_s=2"
    )
    try:
        wait_healthy(address, timeout_s=10.0)
        tower = "<answer>" + "^".join(["2"] * 8) + "</answer>"
        with RewardClient(address, cfg(timeout_s=30.0)) as client:
            results = client.score(items(GOOD, tower, "<answer>0.5</answer>", answer="132"))
            assert (results[0].status, results[0].value) == (ScoreStatus.OK, 1.0)
            assert results[1].status is ScoreStatus.TIMEOUT
            assert (results[2].status, results[2].value) == (ScoreStatus.OK, 0.0)
            # SIGTERM drains and exits cleanly.
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30.0) == 0
    finally:
        proc.kill()
        proc.wait()


def test_killed_service_gives_unavailable_within_the_deadline(tmp_path: Path) -> None:
    proc, address = start_service(tmp_path, "--scorer", "format", "--port", "0", "reward.token=t0k")
    reward_cfg = cfg(timeout_s=2.0, max_attempts=3, token="t0k")
    with RewardClient(address, reward_cfg) as client:
        assert client.score(items(GOOD))[0].value == 1.0
        proc.kill()
        proc.wait()
        started = time.monotonic()
        results = client.score(items(GOOD, "x"))
        elapsed = time.monotonic() - started
    assert [r.status for r in results] == [ScoreStatus.UNAVAILABLE] * 2
    assert address in results[0].detail
    # Bound, not a benchmark: the call waits for the service to come back until its 2 s deadline.
    assert elapsed < 2.0 + 1.0


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_language_service_scores_code_switched_reasoning(tmp_path: Path) -> None:
    """`python -m services.reward --scorer language` with the run's language list passed as a Hydra list."""
    proc, address = start_service(tmp_path, "--scorer", "language", "--port", "0", "reward.languages=[en,zh]")
    try:
        wait_healthy(address, timeout_s=30.0)
        # Target zh: 首先我们计算 (6 characters) + 结果是 (3) are Chinese, "the sum" (2 words) is not: 9/11.
        mixed = "<think>首先我们计算 the sum 结果是 7</think><answer>7</answer>"
        english = "<think>add the units, then carry the one</think><answer>7</answer>"
        batch = [
            ScoreInput(0, "3加4等于多少?", mixed, "7", "zh"),
            ScoreInput(1, "What is 3+4?", english, "7", ""),
        ]
        with RewardClient(address, cfg(timeout_s=30.0)) as client:
            zh, en = client.score(batch)
        assert zh.status is ScoreStatus.OK and zh.value == pytest.approx(9 / 11)
        assert "2/11 words not zh" in zh.detail
        # No target given: the prompt's own language (English) is the target, and every word is English.
        assert (en.status, en.value) == (ScoreStatus.OK, 1.0)
    finally:
        proc.terminate()
        proc.wait(timeout=30.0)


def test_gym_service_scores_a_reasoning_gym_entry(tmp_path: Path) -> None:
    """`python -m services.reward --scorer gym`: the entry crosses gRPC in metadata_json and its own
    dataset judges the answer; a hanging countdown check ends as TIMEOUT and the service keeps serving."""
    import json

    import reasoning_gym

    from services.tasks.gym import json_safe

    proc, address = start_service(tmp_path, "--scorer", "gym", "--port", "0", "reward.verify_timeout_s=2")
    try:
        wait_healthy(address, timeout_s=30.0)
        chain = json_safe(reasoning_gym.create_dataset("chain_sum", seed=5, size=1)[0])
        countdown = json_safe(reasoning_gym.create_dataset("countdown", seed=5, size=1)[0])

        def gym_item(i: int, answer: str, entry: dict) -> ScoreInput:
            completion = f"<think>work</think><answer>{answer}</answer>"
            return ScoreInput(i, entry["question"], completion, str(entry["answer"]), "en", json.dumps(entry))

        batch = [
            gym_item(0, chain["answer"], chain),
            gym_item(1, str(int(chain["answer"]) + 1), chain),
            gym_item(2, "9**9**9**9", countdown),
            gym_item(3, countdown["answer"], countdown),
        ]
        with RewardClient(address, cfg(timeout_s=30.0)) as client:
            results = client.score(batch)
        assert [(r.status, r.value) for r in results] == [
            (ScoreStatus.OK, 1.0),
            (ScoreStatus.OK, 0.0),
            (ScoreStatus.TIMEOUT, 0.0),
            (ScoreStatus.OK, 1.0),
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30.0) == 0
    finally:
        proc.kill()
        proc.wait()
