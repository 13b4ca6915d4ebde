"""A real two-node Ray cluster with token authentication, and short RL runs on it through
`launcher.ray_address`, the way the README tells a user to run one.

Both nodes are started on this machine with the real CLI (`ray start --head` and `ray start --address=`),
each with its own temp dir, free ports, one CPU and a custom resource that names it (`learner_node` /
`rollout_node`). The run pins the learner to the head and the rollout worker to the other node
(`launcher.learner_resources` / `launcher.rollout_resources`); the test then asks Ray's state API where
those actors ran and checks that the run's own record (summary.json `ray_nodes`) says the same. Token
authentication is on (RAY_AUTH_MODE=token, a fresh RAY_AUTH_TOKEN): the run gets the token from its
environment, and a run without it fails with r1forge's error naming the knob. The same run also goes
through `ray job submit` to the head's job server, with `launcher.ray_address=auto`.

Every process of the cluster carries this module's tag in its environment, so teardown kills exactly
those (never `ray stop`, which stops every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.chaos import BASE, TAG_VAR, kill_tagged, r1forge_command, tagged_processes
from services.learner.checkpoint import load_checkpoint_meta

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
RL_STEPS = 2
# The tiny policy and one-digit task of the e2e runs (bench.chaos.BASE): 100 SFT steps teach the answer
# template, so the RL groups mix rewards; then 2 GRPO steps of 4 prompts x 8 completions.
RUN = [
    *BASE,
    "learner.sft_steps=100",
    f"learner.rl_steps={RL_STEPS}",
    "pipeline.stages=[cold_start_sft,rl]",
    "+launcher.learner_resources.learner_node=0.01",
    "+launcher.rollout_resources.rollout_node=0.01",
]


@dataclass
class Cluster:
    gcs_address: str  # what `ray start --head` prints and launcher.ray_address takes
    dashboard_url: str  # the job server and state API
    env: dict[str, str]  # the environment of every node: the auth token, the tag, PYTHONPATH
    tag: str
    root: Path

    def ray(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def state(self, kind: str) -> list[dict]:
        """`ray list <kind>` through the head's state API (authenticated with the token)."""
        out = self.ray("list", kind, "--detail", "--format=json", f"--address={self.dashboard_url}")
        assert out.returncode == 0, f"ray list {kind} failed:\n{out.stdout}\n{out.stderr}"
        return [] if out.stdout.startswith("No resource") else json.loads(out.stdout)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_args(temp_dir: Path, resource: str) -> list[str]:
    """What each of the two raylets on one host needs of its own: temp dir, ports, resources."""
    agent, metrics, env_agent, agent_grpc = _free_ports(4)
    return [
        "--num-cpus=1",
        f"--resources={json.dumps({resource: 1})}",
        "--object-store-memory=200000000",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}",
        "--min-worker-port=0",  # workers take any free port: the default range would be shared by both
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]


def _stop(tag: str, grace_s: float = 10.0) -> None:
    """SIGTERM every process of the cluster, then SIGKILL what is left after `grace_s`."""
    for pid in tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_tagged(tag)


@pytest.fixture(scope="module")
def cluster():
    # Short paths: Ray's unix sockets live under the temp dir and must stay under ~107 characters.
    root = Path(tempfile.mkdtemp(prefix="r1c-", dir="/tmp"))
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        {
            TAG_VAR: tag,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
            "RAY_USAGE_STATS_ENABLED": "0",
            # The package as every node has it installed (the image does; here: this checkout).
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "OMP_NUM_THREADS": "1",
        }
    )
    gcs, dashboard, client = _free_ports(3)
    c = Cluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", env, tag, root)
    try:
        head = c.ray(
            "start",
            "--head",
            f"--port={gcs}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            *_node_args(root / "head", "learner_node"),
            timeout_s=120,
        )
        assert head.returncode == 0, f"ray start --head failed:\n{head.stdout}\n{head.stderr}"
        worker = c.ray("start", f"--address={c.gcs_address}", *_node_args(root / "worker", "rollout_node"))
        assert worker.returncode == 0, f"ray start --address failed:\n{worker.stdout}\n{worker.stderr}"
        _wait_for_nodes(c, 2)
        yield c
    finally:
        _stop(tag)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_nodes(c: Cluster, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [x for x in c.state("nodes") if x["state"] == "ALIVE"]
        if len(alive) == n:
            return
        time.sleep(1)
    pytest.fail(f"the cluster did not show {n} alive nodes within {timeout_s}s: {c.state('nodes')}")


def _node_ids(c: Cluster) -> dict[str, str]:
    """Custom resource naming a node ("learner_node", "rollout_node") -> its node id."""
    nodes = {}
    for node in c.state("nodes"):
        for name in ("learner_node", "rollout_node"):
            if name in (node.get("resources_total") or {}):
                nodes[name] = node["node_id"]
    assert set(nodes) == {"learner_node", "rollout_node"}, c.state("nodes")
    return nodes


def _run(c: Cluster, args: list[str], cwd: Path, env: dict[str, str], timeout_s: float):
    """Run `args` in its own process group; on timeout kill it and fail with its output."""
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env={**env, TAG_VAR: tag},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args[:3])} ... did not finish within {timeout_s}s:\n{out[-6000:]}")
    finally:
        kill_tagged(tag)  # the run's own reward services and embedded Redis, should any outlive it
    (cwd / "output.log").write_text(out)
    return proc.returncode, out


def _actor_ids(c: Cluster) -> set[str]:
    return {a["actor_id"] for a in c.state("actors")}


def _check_run(c: Cluster, run_dir: Path, earlier_actors: set[str]) -> None:
    """The run trained on both nodes: learner on the head, rollout on the worker, policy version up."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if r["stage"] == "rl"]
    assert [r["step"] for r in rl] == list(range(1, RL_STEPS + 1)), rl
    assert sum(r["groups_trained"] for r in rl) > 0, rl
    before = load_checkpoint_meta(run_dir / "checkpoints" / "cold_start_sft")["policy_version"]
    after = load_checkpoint_meta(run_dir / "checkpoints" / "rl")["policy_version"]
    assert after > before and summary["policy_version"] == after, (before, after, summary)

    nodes = _node_ids(c)
    # Ray's own record of this run's actors (dead by now; the state API keeps them).
    ran: dict[str, set[str]] = {}
    for actor in c.state("actors"):
        if actor["actor_id"] not in earlier_actors and actor["class_name"] in (
            "LearnerService",
            "RolloutWorker",
        ):
            ran.setdefault(actor["class_name"], set()).add(actor["node_id"])
    assert ran == {"LearnerService": {nodes["learner_node"]}, "RolloutWorker": {nodes["rollout_node"]}}, (
        ran,
        nodes,
    )
    # The run's own record says the same.
    assert summary["ray_nodes"] == {"learner": [nodes["learner_node"]], "rollout": [nodes["rollout_node"]]}, (
        summary
    )


def test_an_rl_run_through_ray_address_uses_both_nodes(cluster, tmp_path):
    c = cluster
    earlier = _actor_ids(c)
    run_dir = tmp_path / "run"
    args = [
        *r1forge_command(),
        f"run_dir={run_dir}",
        f"model.cache_dir={tmp_path / 'zoo'}",
        *RUN,
        f"launcher.ray_address={c.gcs_address}",
    ]
    t0 = time.monotonic()
    rc, out = _run(c, args, tmp_path, c.env, timeout_s=420)
    assert rc == 0, f"r1forge on the two-node cluster failed:\n{out[-6000:]}"
    print(f"r1forge on two nodes: {time.monotonic() - t0:.0f}s")
    _check_run(c, run_dir, earlier)


def test_a_run_without_the_clusters_token_fails_naming_the_knob(cluster, tmp_path):
    c = cluster
    env = {k: v for k, v in c.env.items() if not k.startswith("RAY_AUTH")}
    args = [
        *r1forge_command(),
        f"run_dir={tmp_path / 'run'}",
        f"model.cache_dir={tmp_path / 'zoo'}",
        *BASE,
        "pipeline.stages=[eval]",
        f"launcher.ray_address={c.gcs_address}",
    ]
    rc, out = _run(c, args, tmp_path, env, timeout_s=180)
    assert rc != 0, out[-3000:]
    assert f"launcher.ray_address={c.gcs_address}: could not join the Ray cluster" in out, out[-3000:]
    assert "Authentication token is missing or incorrect" in out, out[-3000:]  # Ray's own cause


def test_ray_job_submit_runs_r1forge_on_the_cluster(cluster, tmp_path):
    """The README's `ray job submit` recipe, with an eval-only pipeline (the RL run is the test above):
    the job server runs the entrypoint on the head, which joins with launcher.ray_address=auto."""
    c = cluster
    earlier = _actor_ids(c)
    run_dir = tmp_path / "run"
    job_id = f"r1forge-{uuid.uuid4().hex[:8]}"
    args = [
        RAY,
        "job",
        "submit",
        f"--address={c.dashboard_url}",
        f"--submission-id={job_id}",
        "--",
        "r1forge",
        f"run_dir={run_dir}",
        f"model.cache_dir={tmp_path / 'zoo'}",
        *BASE,
        "pipeline.stages=[eval]",
        "launcher.ray_address=auto",
        "+launcher.rollout_resources.rollout_node=0.01",
    ]
    rc, out = _run(c, args, tmp_path, c.env, timeout_s=300)
    jobs = {j["submission_id"]: j["status"] for j in c.state("jobs")}
    assert rc == 0 and jobs.get(job_id) == "SUCCEEDED", f"{jobs}\n{out[-6000:]}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "eval_0_pass1" in summary or any(k.endswith("_pass1") for k in summary), summary
    worker = _node_ids(c)["rollout_node"]
    ran = {
        a["node_id"]
        for a in c.state("actors")
        if a["actor_id"] not in earlier and a["class_name"] == "RolloutWorker"
    }
    assert ran == {worker} and summary["ray_nodes"] == {"rollout": [worker]}, (ran, summary)
