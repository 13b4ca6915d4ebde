"""docker-compose.yml runs the same commands a local run does; start each one here as a local process.

There is no Docker engine on the development machines, so the wiring is checked by running every
reward service's compose command (with loopback addresses) and composing the orchestrator's overrides.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.config import check_config
from services.config_loader import load_config
from services.transport.grpc_utils import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TOKEN = "compose-test-token"


def _expand(arg: str) -> str:
    return re.sub(r"\$\{R1FORGE_REWARD_TOKEN:-[^}]*\}", TOKEN, arg)


@pytest.mark.integration
@pytest.mark.parametrize("service", [s for s in COMPOSE["services"] if s.startswith("reward-")])
def test_reward_service_command_serves(service):
    cmd = [_expand(a) for a in COMPOSE["services"][service]["command"]]
    assert cmd[:3] == ["python", "-m", "services.reward"]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"  # inside compose it binds 0.0.0.0 on its own network
    cmd[cmd.index("--port") + 1] = "0"
    proc = subprocess.Popen(
        [sys.executable, *cmd[1:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"REWARD_SERVICE_READY name=(\S+) address=(\S+)", line)
        assert match, f"{service}: no ready line, got {line!r}"
        assert match.group(1) == cmd[cmd.index("--scorer") + 1]
        wait_healthy(match.group(2), timeout_s=30, token=TOKEN)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_orchestrator_overrides_compose():
    command = COMPOSE["services"]["orchestrator"]["command"]
    inner = shlex.split(command)[2]  # sh -c "<r1forge ...>"
    args = [_expand(a).replace("$${R1FORGE_REWARD_TOKEN}", TOKEN) for a in shlex.split(inner)]
    assert args[0] == "r1forge"
    overrides = [a for a in args[1:] if "=" in a and not a.startswith("$")]
    cfg = load_config(overrides)
    check_config(cfg)
    assert cfg.redis.url == "redis://redis:6379/0"
    addresses = dict(cfg.reward.addresses)
    assert set(addresses) == set(cfg.reward.scorers)
    for name, addr in addresses.items():
        host, port = addr.split(":")
        service = COMPOSE["services"][host]
        assert service["command"][service["command"].index("--port") + 1] == port, name
        assert service["command"][service["command"].index("--scorer") + 1] == name


def test_gym_profile_override_composes():
    # The documented recipe: R1FORGE_ARGS="task=gym +reward.addresses.gym=reward-gym:50054" --profile gym.
    header = (ROOT / "docker-compose.yml").read_text().splitlines()
    recipe = next(line for line in header if "--profile gym" in line)
    extra = shlex.split(recipe.split('R1FORGE_ARGS="')[1].split('"')[0])
    command = COMPOSE["services"]["orchestrator"]["command"]
    inner = shlex.split(command)[2]
    args = [_expand(a).replace("$${R1FORGE_REWARD_TOKEN}", TOKEN) for a in shlex.split(inner)]
    cfg = load_config([a for a in args[1:] if "=" in a and not a.startswith("$")] + extra)
    check_config(cfg)
    assert "gym" in cfg.reward.scorers
    gym = COMPOSE["services"]["reward-gym"]
    assert gym["profiles"] == ["gym"]
    assert cfg.reward.addresses.gym.split(":")[1] == gym["command"][gym["command"].index("--port") + 1]
