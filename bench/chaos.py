"""Kill the real processes of a real run and count what happened: the chaos scenarios and their table.

    python bench/chaos.py [--scenarios F1,F2,...] [--workdir DIR]

Each scenario runs `r1forge` (GRPO only, from a small cold-start checkpoint made once, tiny policy,
one-digit addition) in a subprocess, waits until GRPO has logged `FAULT_AFTER_STEP` steps, injects
its fault into the live process, and lets the run finish. Then it reads only what the run left
behind (exit code, summary.json, metrics.jsonl, the final checkpoint's trained ids) and checks:

* the run finished all its steps and exited 0;
* every issued group id is accounted for: trained, dropped by a counted reason, dead-lettered, or
  pending, and nothing the learner saw was never issued;
* no group id was trained twice (the steps' `groups_trained` add up to the distinct trained ids);
* the policy version only moved forward;
* no group mixed policy versions (the learner drops such a group as `malformed`: none were).

Scenarios: F1 kill -9 the rollout worker actor; F2 kill -9 the accuracy reward service; F3 SIGSTOP
it past its deadline, then SIGCONT; F4 kill -9 the embedded redis-server; F5 kill -9 the learner actor
(it restarts from its latest in-stage checkpoint); F8 the same for one rank of a 2-rank FSDP2 learner
(the whole group restarts from its sharded checkpoint); F6 poison messages (an unparseable entry and a task
whose prompt the engine rejects) in the prompts stream; F7 a rollout worker that dies with half of a
weight transfer loaded (a failpoint, services/transport/failpoints.py, since that moment cannot be timed
from outside).

tests/chaos/ runs every scenario with these checks; this script prints the table for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from services.transport.failpoints import ENV as FAILPOINTS_ENV  # noqa: E402
from services.transport.failpoints import arm, fired  # noqa: E402

TAG_VAR = "R1FORGE_TEST_TAG"
RL_STEPS = 8
FAULT_AFTER_STEP = 2
# The tiny policy vLLM's CPU backend serves, on one-digit addition (as tests/e2e/test_pipeline_run.py).
BASE = [
    "model.hidden_size=64",
    "model.num_heads=2",
    "model.num_kv_heads=1",
    "model.num_layers=2",
    "model.intermediate_size=128",
    "task.min_digits=1",
    "task.max_digits=1",
    "task.train_size=24",
    "task.heldout_size=8",
    "task.cold_start_size=13",
    "task.cold_start_solution=worked",
    "eval.num_prompts=8",
    "rollout.group_size=8",
    "rollout.max_new_tokens=80",
    "rollout.temperature=0.7",
    "learner.prompts_per_step=4",
    # Faults are detected and repaired within seconds; short deadlines keep each scenario short.
    "reward.timeout_s=4",
    "redis.claim_idle_s=10",
    # An in-stage checkpoint every 2 steps: a learner killed after step 2 continues from one.
    "learner.checkpoint_every=2",
]
SFT_STEPS = 100
ACCURACY = r"services\.reward --scorer accuracy"
# The embedded Redis's watchdog (services/transport/redis_server.py); the server is its child. (The server
# itself cannot be found by the run's tag: its process title overwrites its environment.)
REDIS_WATCHDOG = r"r1forge-redis-\S+ \S+/redis-server "


@dataclass
class Outcome:
    scenario: str
    returncode: int
    recovered: bool
    recover_s: float | None
    books: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    log_tail: str = ""


def r1forge_command() -> list[str]:
    """The `r1forge` console script installed beside this interpreter, else the same main via -c."""
    script = Path(sys.executable).parent / "r1forge"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from services.orchestrator.cli import main; sys.exit(main())"]


def start_r1forge(
    overrides: list[str], cwd: Path, log=None, failpoints: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """Start `r1forge *overrides` in `cwd` in its own process group; return the process and its tag.

    Every process the run starts inherits the tag (`tagged_processes` finds them), and `failpoints`
    when given. Output goes to pipes (read them with communicate), or to the open file `log` when given.
    """
    tag = uuid.uuid4().hex
    env = {
        **os.environ,
        TAG_VAR: tag,
        **({FAILPOINTS_ENV: str(failpoints)} if failpoints else {}),
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


def kill_tagged(tag: str) -> None:
    for pid in tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def find_process(tag: str, pattern: str, timeout_s: float = 30.0) -> tuple[int, str]:
    """(pid, command line) of the run's process whose command line matches `pattern`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid, cmd in tagged_processes(tag).items():
            if re.search(pattern, cmd):
                return pid, cmd
        time.sleep(0.2)
    raise LookupError(f"no process of the run matches {pattern!r}")


def run_logged(overrides: list[str], workdir: Path, log_path: Path, timeout_s: float) -> int:
    """Run `r1forge *overrides` to the end (or the timeout: -9) with its output in `log_path`; every
    process it started is killed after."""
    with log_path.open("w") as log:
        proc, tag = start_r1forge(overrides, workdir, log)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return -9
        finally:
            kill_tagged(tag)


def cold_start_checkpoint(workdir: Path, overrides: list[str], timeout_s: float) -> Path:
    """`checkpoints/cold_start_sft` of one `r1forge pipeline.stages=[cold_start_sft]` run in
    `workdir/sft` with `overrides`, made once (reused when present)."""
    run_dir = workdir / "sft"
    ckpt = run_dir / "checkpoints" / "cold_start_sft"
    if ckpt.is_dir():
        return ckpt
    shutil.rmtree(run_dir, ignore_errors=True)
    args = [f"run_dir={run_dir}", *overrides, "pipeline.stages=[cold_start_sft]"]
    rc = run_logged(args, workdir, workdir / "sft.log", timeout_s)
    if rc != 0 or not ckpt.is_dir():
        raise RuntimeError(f"the cold-start run failed ({rc}):\n{(workdir / 'sft.log').read_text()[-3000:]}")
    return ckpt


def make_sft_checkpoint(workdir: Path, zoo_dir: Path, timeout_s: float = 600) -> Path:
    """The cold-start checkpoint every scenario starts GRPO from (one short SFT run)."""
    return cold_start_checkpoint(
        workdir, [f"model.cache_dir={zoo_dir}", *BASE, f"learner.sft_steps={SFT_STEPS}"], timeout_s
    )


def _rl_steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum('"stage": "rl"' in line for line in path.read_text().splitlines())


def redis_server(tag: str, timeout_s: float = 30.0) -> tuple[int, int]:
    """(pid, port) of the run's embedded redis-server: the child of its watchdog, titled
    "redis-server 127.0.0.1:<port>"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        watchdogs = {pid for pid, cmd in tagged_processes(tag).items() if re.search(REDIS_WATCHDOG, cmd)}
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) not in watchdogs or stat[0] == "Z":
                    continue
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            m = re.search(r"redis-server 127\.0\.0\.1:(\d+)", title)
            if m:
                return int(entry.name), int(m.group(1))
        time.sleep(0.2)
    raise LookupError("the run's embedded redis-server was not found (no watchdog child titled redis-server)")


def _redis_url(tag: str) -> str:
    return f"redis://127.0.0.1:{redis_server(tag)[1]}/0"


def inject_poison(tag: str) -> None:
    """An unparseable entry and a task the engine rejects (a token id outside the vocabulary)."""
    import redis

    from services.pb import rollout_pb2

    client = redis.Redis.from_url(_redis_url(tag))
    client.xadd("r1forge:prompts", {"pb": b"\xff\x00 not a protobuf", "type": "r1forge.v1.PromptTask"})
    bad = rollout_pb2.PromptTask(
        id=rollout_pb2.TaskId(run_id="poison", prompt_id="out-of-vocab", epoch=0),
        prompt="?",
        prompt_token_ids=[10**7],
        answer="1",
        group_size=8,
        stage="rl",
    )
    client.xadd("r1forge:prompts", {"pb": bad.SerializeToString(), "type": "r1forge.v1.PromptTask"})
    client.close()


def _fault(scenario: str, tag: str, failpoints: Path) -> None:
    if scenario == "F1":
        os.kill(find_process(tag, r"ray::RolloutWorker")[0], signal.SIGKILL)
    elif scenario == "F2":
        os.kill(find_process(tag, ACCURACY)[0], signal.SIGKILL)
    elif scenario == "F3":
        pid, _ = find_process(tag, ACCURACY)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(6.0)  # past reward.timeout_s=4: calls in flight miss their deadline
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:  # the supervisor replaced it meanwhile
            pass
    elif scenario == "F4":
        os.kill(redis_server(tag)[0], signal.SIGKILL)  # the server, not its watchdog
    elif scenario == "F5":
        os.kill(find_process(tag, r"ray::LearnerService")[0], signal.SIGKILL)
    elif scenario == "F6":
        inject_poison(tag)
    elif scenario == "F7":
        arm(failpoints, "update_weights_midway")  # the next weight transfer kills its worker midway
    elif scenario == "F8":
        os.kill(find_process(tag, r"ray::LearnerRank")[0], signal.SIGKILL)  # either rank: both must recover
    else:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {list(SCENARIOS)}")


SCENARIOS = {
    "F1": "kill -9 the rollout worker",
    "F2": "kill -9 the accuracy reward service",
    "F3": "SIGSTOP the accuracy service 6 s (deadline 4 s), SIGCONT",
    "F4": "kill -9 the embedded redis-server",
    "F5": "kill -9 the learner",
    "F6": "poison messages in the prompts stream",
    "F7": "a rollout worker dies midway through a weight transfer",
    "F8": "kill -9 one rank of a 2-rank (FSDP2) learner",
}
# Scenario-specific overrides on top of BASE.
SCENARIO_OVERRIDES = {"F8": ["learner.num_ranks=2", "launcher.num_cpus=3"]}


def run_scenario(
    scenario: str, workdir: Path, sft_ckpt: Path, zoo_dir: Path, timeout_s: float = 600
) -> Outcome:
    """Run GRPO from `sft_ckpt`, inject `scenario`'s fault after FAULT_AFTER_STEP steps, check the run."""
    run_dir, log_path = workdir / f"run-{scenario}", workdir / f"{scenario}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: its metrics are the only ones read
    failpoints = workdir / f"failpoints-{scenario}"
    shutil.rmtree(failpoints, ignore_errors=True)
    overrides = [
        f"run_dir={run_dir}", f"model.cache_dir={zoo_dir}", *BASE, f"model.path={sft_ckpt}",
        "pipeline.stages=[rl]", f"learner.rl_steps={RL_STEPS}", *SCENARIO_OVERRIDES.get(scenario, []),
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc, tag = start_r1forge(overrides, workdir, log, failpoints)
        try:
            deadline = time.monotonic() + timeout_s
            while _rl_steps_logged(run_dir) < FAULT_AFTER_STEP and proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{scenario}: GRPO did not log {FAULT_AFTER_STEP} steps in time")
                time.sleep(0.2)
            if proc.poll() is None:
                _fault(scenario, tag, failpoints)
            rc = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = -9
        finally:
            kill_tagged(tag)
    out = check_run(scenario, rc, run_dir, log_path)
    if scenario == "F7" and not fired(failpoints, "update_weights_midway"):
        out.problems.append("the weight-transfer failpoint never fired")
        out.recovered = False
    return out


def check_run(scenario: str, rc: int, run_dir: Path, log_path: Path) -> Outcome:
    out = Outcome(scenario, rc, recovered=False, recover_s=None, log_tail=log_path.read_text()[-4000:])
    if rc != 0:
        out.problems.append(f"exit code {rc}")
        return out
    summary = json.loads((run_dir / "summary.json").read_text())
    books = out.books = summary["rl_accounting"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rl = [r for r in rows if r["stage"] == "rl"]
    if len(rl) != RL_STEPS:
        out.problems.append(f"{len(rl)} of {RL_STEPS} steps logged")
    settled = books["trained"] + sum(books["dropped"].values()) + books["dead_lettered"] + books["pending"]
    if settled != books["issued"] or books["unknown"]:
        out.problems.append(f"ids not accounted for: {books}")
    trained_ids = json.loads((run_dir / "checkpoints" / "rl" / "r1forge_state.json").read_text())[
        "trained_group_ids"
    ]
    if (
        sum(r["groups_trained"] for r in rl) != len(set(trained_ids))
        or len(set(trained_ids)) != books["trained"]
    ):
        out.problems.append("a group id was trained twice (or a trained id is missing)")
    versions = [r["policy_version"] for r in rl]
    if versions != sorted(versions):
        out.problems.append(f"the policy version moved backwards: {versions}")
    if scenario == "F6" and books["foreign"] != 1:
        out.problems.append(f"the poison task's dead-letter marker was not dropped as foreign: {books}")
    if books["dropped"].get("malformed", 0):
        out.problems.append(f"{books['dropped']['malformed']} malformed groups (mixed versions?)")
    if scenario in ("F5", "F8") and books.get("learner_restarts") != 1:
        out.problems.append(f"the learner was restarted {books.get('learner_restarts')} times, not once")
    incidents = [i for s in summary.get("restarts", {}).values() for i in s["incidents"]]
    times = [i["recovered_s"] for i in incidents if i["recovered_s"] is not None]
    out.recover_s = max(times) if times else None
    out.recovered = not out.problems
    return out


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| scenario | recovered | s to recover | issued | trained | dropped (by reason) | dead-lettered "
        "| duplicates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        b = o.books or {}
        dropped = ", ".join(f"{k} {v}" for k, v in b.get("dropped", {}).items()) or "0"
        rec = f"{o.recover_s:.1f} (supervisor)" if o.recover_s is not None else "-"
        ok = "yes" if o.recovered else "NO: " + "; ".join(o.problems)
        lines.append(
            f"| {o.scenario} {SCENARIOS[o.scenario]} | {ok} "
            f"| {rec} | {b.get('issued', '-')} | {b.get('trained', '-')} | {dropped} "
            f"| {b.get('dead_lettered', '-')} | {b.get('duplicate_copies', '-')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="r1forge-chaos-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    zoo = workdir / "zoo"
    ckpt = make_sft_checkpoint(workdir, zoo)
    outcomes = []
    for scenario in args.scenarios.split(","):
        t0 = time.perf_counter()
        outcomes.append(run_scenario(scenario, workdir, ckpt, zoo))
        print(
            f"{scenario}: {time.perf_counter() - t0:.0f}s, problems: {outcomes[-1].problems or 'none'}",
            flush=True,
        )
    print(table(outcomes))
    (workdir / "chaos.json").write_text(json.dumps([o.__dict__ for o in outcomes], indent=2, default=str))
    print(f"runs and logs in {workdir}")
    return 0 if all(o.recovered for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
