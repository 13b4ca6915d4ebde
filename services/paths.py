"""Where r1forge's shipped files are: the Hydra config tree, the sample data sets, the `services` package.

Two layouts, one answer:

* a checkout (``PYTHONPATH=$PWD``, ``pip install -e .``): ``configs/`` and ``data/`` sit beside
  ``services/`` at the repository root;
* an installed wheel (``pip install .``): setup.py maps them into the package, as ``services/configs/``
  and ``services/data/``, so they travel with it to a cluster node or a Docker image.

`RESOURCE_ROOT` is the folder that holds ``configs/`` and ``data/`` in whichever layout this `services`
came from. A relative data path in a config (``task.path``, ``reward_model.train_path``, ...) is found
by `resolve_data_path`: in the current directory first (a user's own file), then, for ``data/...``,
among the shipped files, from any directory.
"""

from __future__ import annotations

import os
import site
from pathlib import Path

# The `services` package folder, and the folder that holds it (the checkout root, or site-packages).
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_PARENT = PACKAGE_DIR.parent
RESOURCE_ROOT = PACKAGE_DIR if (PACKAGE_DIR / "configs").is_dir() else PACKAGE_PARENT
# The Hydra config tree (config.yaml, model/, task/, pipeline/).
CONFIG_DIR = RESOURCE_ROOT / "configs"
# The shipped data: tasks/ (GSM8K and MATH samples) and preferences/ (the reward model's pairs).
DATA_DIR = RESOURCE_ROOT / "data"


def resolve_data_path(path: str | os.PathLike[str], key: str) -> Path:
    """`path` (the value of config key `key`) as an existing path. Absolute (or ~) paths are taken as given;
    a relative one is looked up in the current directory first (a user's own file), then, when it starts
    with ``data/``, among the shipped files, so ``data/tasks/gsm8k_sample.jsonl`` works from any directory
    and for an installed package. FileNotFoundError naming the path and where it was looked for."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    places = [str(given if given.is_absolute() else Path.cwd() / given)]
    if not given.is_absolute() and given.parts[:1] == ("data",):
        shipped = RESOURCE_ROOT / given
        if shipped.exists():
            return shipped
        places.append(f"{shipped} (r1forge's shipped data)")
    raise FileNotFoundError(f"{key}={path}: no such file or directory (looked for {' and '.join(places)})")


def subprocess_pythonpath(current: str | None) -> str | None:
    """PYTHONPATH for a child `python -m services...` so that it imports this same `services`, whatever its
    cwd: `PACKAGE_PARENT` in front of `current` for a checkout; `current` unchanged for an installed
    package, whose site-packages the child has anyway (putting site-packages on PYTHONPATH would move it
    ahead of the standard library)."""
    site_dirs = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if PACKAGE_PARENT in site_dirs:
        return current
    return os.pathsep.join(p for p in (str(PACKAGE_PARENT), current) if p)
