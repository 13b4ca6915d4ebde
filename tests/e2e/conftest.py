"""Fixtures for e2e tests: run the real `r1forge` entry point in a subprocess, find what it left behind.

Every run gets a unique `R1FORGE_TEST_TAG` in its environment. Children inherit it (the embedded
Redis watchdog and its redis-server, the reward services, Ray's processes), so scanning /proc for the
tag finds exactly this run's processes and never another user's on a shared machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAG_VAR = "R1FORGE_TEST_TAG"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    tag: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def r1forge_command() -> list[str]:
    """The `r1forge` console script installed beside this interpreter, else the same main via -c."""
    script = Path(sys.executable).parent / "r1forge"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from services.orchestrator.cli import main; sys.exit(main())"]


def start_r1forge(overrides: list[str], cwd: Path, log=None) -> tuple[subprocess.Popen, str]:
    """Start `r1forge *overrides` in `cwd` in its own process group; return the process and its tag.

    Output goes to pipes (read them with communicate), or to the open file `log` when given.
    """
    tag = uuid.uuid4().hex
    env = {
        **os.environ,
        TAG_VAR: tag,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    proc = subprocess.Popen(
        [*r1forge_command(), *overrides],
        cwd=cwd,
        env=env,
        stdout=log or subprocess.PIPE,
        stderr=log or subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a hang can be killed whole
    )
    return proc, tag


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


def tagged_processes(tag: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries `tag`."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has exited; only its parent's wait is missing
            found[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited while we looked, or not ours to read
    return found


def leftover_processes(tag: str, grace_s: float) -> dict[int, str]:
    """The tagged processes still alive after `grace_s` (children get time to notice their parent died)."""
    deadline = time.monotonic() + grace_s
    while (alive := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return alive


def kill_tagged(tag: str) -> None:
    for pid in tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
