"""Fixtures for e2e tests: run the real `r1forge` entry point in a subprocess, find what it left behind.

Every run gets a unique `R1FORGE_TEST_TAG` in its environment (`bench.chaos.start_r1forge`). Children
inherit it (the embedded Redis watchdog, the reward services, Ray's processes), so scanning /proc for
the tag finds exactly this run's processes and never another user's on a shared machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Starting a run with its tag and finding its processes: the same code the chaos harness uses.
from bench.chaos import kill_tagged, start_r1forge, tagged_processes  # noqa: F401 (test_resume imports some)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    tag: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_r1forge(overrides: list[str], cwd: Path, timeout_s: float) -> Result:
    """Run `r1forge *overrides` in `cwd`; on timeout kill its process group and fail naming the run."""
    proc, tag = start_r1forge(overrides, cwd)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        kill_tagged(tag)
        pytest.fail(
            f"r1forge {' '.join(overrides)} did not finish within {timeout_s:.0f}s\n"
            f"--- stdout tail ---\n{stdout[-3000:]}\n--- stderr tail ---\n{stderr[-3000:]}"
        )
    return Result(proc.returncode, stdout, stderr, tag)


def leftover_processes(tag: str, grace_s: float) -> dict[int, str]:
    """The tagged processes still alive after `grace_s` (children get time to notice their parent died)."""
    deadline = time.monotonic() + grace_s
    while (alive := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return alive


def assert_nothing_left_behind(result: Result, grace_s: float = 20.0) -> None:
    alive = leftover_processes(result.tag, grace_s)
    kill_tagged(result.tag)  # never leave them to the next test, even when this one fails
    assert not alive, "processes left behind by r1forge:\n" + "\n".join(
        f"  {pid}: {cmd[:200]}" for pid, cmd in alive.items()
    )


# The smallest policy the vLLM CPU backend serves: head_dim = 64 / 2 = 32 (its smallest head size).
TINY_MODEL = [
    "model.hidden_size=64",
    "model.num_heads=2",
    "model.num_kv_heads=1",
    "model.num_layers=2",
    "model.intermediate_size=128",
]


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    """One model cache for all e2e runs, so the tiny zoo policy is created once."""
    return tmp_path_factory.mktemp("zoo")


class R1Forge:
    """Runs `r1forge` in tmp_path/run with the tiny policy; remembers each run's tag for cleanup."""

    def __init__(self, tmp_path: Path, zoo_dir: Path) -> None:
        self.tmp_path, self.zoo_dir, self.tags = tmp_path, zoo_dir, []
        self.run_dir = tmp_path / "run"

    def __call__(self, overrides: list[str], timeout_s: float) -> Result:
        base = [f"run_dir={self.run_dir}", f"model.cache_dir={self.zoo_dir}", *TINY_MODEL]
        result = run_r1forge([*base, *overrides], cwd=self.tmp_path, timeout_s=timeout_s)
        self.tags.append(result.tag)
        return result

    @staticmethod
    def assert_nothing_left_behind(result: Result, grace_s: float = 20.0) -> None:
        assert_nothing_left_behind(result, grace_s)


@pytest.fixture(scope="session")
def make_r1forge(zoo_dir):
    """`make_r1forge(workdir)` -> an `R1Forge` runner; whatever its runs left alive is killed at the end."""
    runners: list[R1Forge] = []

    def make(workdir: Path) -> R1Forge:
        runners.append(R1Forge(workdir, zoo_dir))
        return runners[-1]

    yield make
    for tag in (t for r in runners for t in r.tags):
        kill_tagged(tag)


@pytest.fixture
def r1forge(tmp_path, make_r1forge):
    """An `R1Forge` runner working in this test's tmp_path."""
    return make_r1forge(tmp_path)
