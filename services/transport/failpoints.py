"""Failpoints: named places where a process can be told to fail, for the chaos suite (bench/chaos.py).

Off unless `R1FORGE_FAILPOINTS=<dir>` is set in the environment (every process of a run inherits it).
A failpoint `name` fires once: the first time it is reached after `<dir>/<name>.armed` exists, it
creates `<dir>/<name>.fired` (atomically, so only one process fires it) and returns True; the caller
then fails the way the failpoint describes. Used where a fault cannot be timed from outside, e.g. a
rollout worker dying in the middle of a weight transfer.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "R1FORGE_FAILPOINTS"


def failpoint(name: str) -> bool:
    root = os.environ.get(ENV)
    if not root or not (Path(root) / f"{name}.armed").exists():
        return False
    try:
        fd = os.open(Path(root) / f"{name}.fired", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def arm(root: str | Path, name: str) -> None:
    """Arm failpoint `name` for the processes whose `R1FORGE_FAILPOINTS` is `root`."""
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / f"{name}.armed").touch()


def fired(root: str | Path, name: str) -> bool:
    return (Path(root) / f"{name}.fired").exists()
