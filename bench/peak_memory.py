"""Peak memory of a whole r1forge run: every process it starts (driver, Ray, actors, Redis, reward services).

    python bench/peak_memory.py [overrides...]      # e.g. learner.rl_steps=5

Runs `r1forge` with the overrides, samples the summed RSS (and PSS where the kernel gives it, which
counts shared pages once) of the process tree plus every process tagged with this run's environment
marker (Ray's processes are not children of the driver), and prints a table and writes JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil


def tagged(tag: str) -> list[psutil.Process]:
    procs = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("R1FORGE_BENCH_TAG") == tag:
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return procs


def sample(tag: str) -> tuple[float, float, int]:
    rss = pss = 0
    procs = tagged(tag)
    for p in procs:
        try:
            mem = p.memory_full_info()
            rss += mem.rss
            pss += getattr(mem, "pss", mem.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return rss / 2**30, pss / 2**30, len(procs)


def main() -> None:
    tag = uuid.uuid4().hex
    exe = Path(sys.executable).with_name("r1forge")
    env = {**os.environ, "R1FORGE_BENCH_TAG": tag}
    proc = subprocess.Popen([str(exe), *sys.argv[1:]], env=env)
    peak_rss = peak_pss = 0.0
    peak_n = 0
    t0 = time.time()
    while proc.poll() is None:
        rss, pss, n = sample(tag)
        peak_rss, peak_pss, peak_n = max(peak_rss, rss), max(peak_pss, pss), max(peak_n, n)
        time.sleep(1.0)
    result = {
        "overrides": sys.argv[1:],
        "exit_code": proc.returncode,
        "wall_s": round(time.time() - t0, 1),
        "peak_rss_gib": round(peak_rss, 2),
        "peak_pss_gib": round(peak_pss, 2),
        "max_processes": peak_n,
    }
    print(f"{'metric':<16}{'value':>10}")
    for k in ("wall_s", "peak_rss_gib", "peak_pss_gib", "max_processes", "exit_code"):
        print(f"{k:<16}{result[k]:>10}")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "peak_memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
