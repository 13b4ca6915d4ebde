"""Shared gRPC plumbing: message limits, token auth, health, TLS, channels and a readiness wait.

Every r1forge gRPC server and client goes through these helpers so the safe defaults hold in one
place rather than being repeated per service:
* message limits are explicit on both ends (gRPC's own default is a 4 MiB receive limit and no send
  limit), so an oversize message gets RESOURCE_EXHAUSTED from gRPC itself, never a crash;
* a configured shared token is checked on every call, health checks included, by a server
  interceptor (`authorization: Bearer <token>`), and a call without it gets UNAUTHENTICATED; the one
  opt-in exception is `Health/Check` with `open_health` (Kubernetes' native grpc probes send no metadata);
* every server exposes the standard `grpc.health.v1.Health` service, so orchestrators, Kubernetes
  probes and `wait_healthy` all ask the same question;
* TLS is optional: a certificate and key on the server, a CA bundle on the client.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

AUTH_METADATA_KEY = "authorization"
# The unary health check; with `open_health` it alone is answered without the token (Watch still needs it).
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
# Reconnect quickly after a peer restarts, instead of gRPC's default 1 s initial / 120 s max backoff.
_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Server options with explicit send and receive limits of `max_message_bytes`."""
    _check_limit(max_message_bytes)
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel options with explicit send and receive limits and a fast reconnect backoff."""
    _check_limit(max_message_bytes)
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *_RECONNECT_OPTIONS,
    ]


def _check_limit(max_message_bytes: int) -> None:
    if max_message_bytes <= 0:
        raise ValueError(f"max_message_bytes must be a positive number of bytes, got {max_message_bytes}")


def format_address(host: str, port: int) -> str:
    """The "host:port" string, with an IPv6 host in brackets ("[::1]:50051")."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token` (empty when no token is configured)."""
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),) if token else ()


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Rejects every call whose `authorization` metadata is not `Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, token: str, open_methods: Sequence[str] = ()) -> None:
        if not token:
            raise ValueError(
                "TokenAuthInterceptor needs a non-empty token; leave the token unset to disable auth"
            )
        self._expected = f"Bearer {token}".encode()
        self._open = frozenset(open_methods)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method in self._open:
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTH_METADATA_KEY:
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return continuation(handler_call_details)
        logger.warning("rejected %s: missing or wrong token", handler_call_details.method)
        return _denying_handler(continuation(handler_call_details))


def _denying_handler(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that aborts with UNAUTHENTICATED."""

    def deny(_request, context: grpc.ServicerContext):
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong token: send metadata 'authorization: Bearer <token>' with the shared token",
        )

    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(deny)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    return grpc.unary_stream_rpc_method_handler(deny)


def default_max_workers() -> int:
    """Server threads: one per usable core, plus two so health checks answer while every core works."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # Not Linux.
        cores = os.cpu_count() or 1
    return cores + 2


def new_server(
    max_message_bytes: int,
    token: str | None = None,
    max_workers: int | None = None,
    open_health: bool = False,
) -> grpc.Server:
    """A thread-pool server with explicit message limits and, when `token` is set, token auth (which
    `open_health` lifts for `Health/Check` alone)."""
    open_methods = [HEALTH_CHECK_METHOD] if open_health else []
    interceptors: Sequence[grpc.ServerInterceptor] = (
        [TokenAuthInterceptor(token, open_methods)] if token else []
    )
    return grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers or default_max_workers(), thread_name_prefix="grpc"
        ),
        interceptors=interceptors,
        options=server_options(max_message_bytes),
    )


def add_health(server: grpc.Server, service_names: Sequence[str]) -> health.HealthServicer:
    """Register the standard health service with `service_names` and "" (the whole server) SERVING."""
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *service_names):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def server_credentials(tls_cert: str | None, tls_key: str | None) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM file paths, or None for plaintext; both paths or neither."""
    if not tls_cert and not tls_key:
        return None
    if not (tls_cert and tls_key):
        raise ValueError("TLS needs both tls_cert and tls_key (PEM file paths); set both or neither")
    pair = (Path(tls_key).expanduser().read_bytes(), Path(tls_cert).expanduser().read_bytes())
    return grpc.ssl_server_credentials([pair])


def bind(server: grpc.Server, host: str, port: int, credentials: grpc.ServerCredentials | None = None) -> int:
    """Bind `server` to host:port (port 0 picks a free one); return the bound port or raise naming it."""
    address = format_address(host, port)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"could not bind gRPC server to {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {address} (address in use or not local)")
    return bound


def make_channel(address: str, max_message_bytes: int, tls_ca: str | None = None) -> grpc.Channel:
    """A channel to `address` with explicit limits; TLS verified against the `tls_ca` PEM when given."""
    options = channel_options(max_message_bytes)
    if not tls_ca:
        return grpc.insecure_channel(address, options=options)
    root = Path(tls_ca).expanduser().read_bytes()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)


def wait_healthy(
    address: str,
    timeout_s: float,
    service: str = "",
    token: str | None = None,
    tls_ca: str | None = None,
) -> None:
    """Block until the health service at `address` reports `service` SERVING.

    Raises TimeoutError naming the address and the last answer when it does not within `timeout_s`,
    and PermissionError at once when the server rejects the token.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with make_channel(address, 1 << 20, tls_ca) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=min(remaining, 5.0),
                    metadata=auth_metadata(token),
                    wait_for_ready=True,
                )
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise PermissionError(
                        f"gRPC service at {address} rejected the token: {err.details()}"
                    ) from err
                last = f"{err.code().name}: {err.details()}"
            else:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))
    raise TimeoutError(
        f"gRPC service {service or '<server>'} at {address} was not SERVING within {timeout_s:g}s"
        f" (last: {last})"
    )
