"""Joining an existing Ray cluster (`launcher.ray_address`): the connect, and what goes wrong with it.

The driver joins with `ray.init(address=...)`. A cluster started with token authentication
(RAY_AUTH_MODE=token) refuses a driver without its token; Ray reads
the token from the driver's environment (RAY_AUTH_MODE=token plus RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token), and the actors the run starts inherit it from their nodes, so r1forge needs no knob
for it: it only says so when the connect fails. After joining, a placement demand
(`launcher.*_resources`) that no node offers is logged before its actors sit pending.
"""

from __future__ import annotations

from services.orchestrator.placement import warn_if_unplaceable


def join(lc, env_vars: dict[str, str]) -> None:
    """Connect this process to the cluster at `lc.ray_address`; every actor gets `env_vars`."""
    import ray

    try:
        ray.init(address=lc.ray_address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
    except ConnectionError as e:  # Ray's cause (e.g. an AuthenticationError) stays chained below
        raise ConnectionError(
            f"launcher.ray_address={lc.ray_address}: could not join the Ray cluster. If it was started with "
            "RAY_AUTH_MODE=token, this process needs RAY_AUTH_MODE=token and the cluster's token "
            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; `ray get-auth-token` on the head "
            "prints it)"
        ) from e
    warn_if_unplaceable(lc, ray.cluster_resources())
