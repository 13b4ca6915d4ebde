"""`pip install .` (not editable) gives a working r1forge: the wheel carries the Hydra configs and the
shipped data inside the package, and an installed r1forge finds them from any directory.

The wheel is built from a copy of the checkout (a stale build/ folder in the checkout could otherwise
add files), installed with --no-deps into a fresh venv, and run from an empty directory. The fresh venv
borrows this interpreter's dependencies (torch, hydra, ...) through a .pth line naming its
site-packages: a path line only extends sys.path, and .pth files inside that folder (the editable
install's finder among them) are not processed, so the checkout's `services` cannot be imported there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What the build reads, plus folders that must stay out of the wheel.
SOURCES = ["pyproject.toml", "setup.py", "README.md", "services", "configs", "data"]
LEFT_OUT = ["protos", "tools", "tests"]

# Run inside the fresh venv, from an empty directory: compose the default config and a dataset task on a
# shipped sample, load it, and verify one answer in a math-verifier worker process.
PROBE = """
import json, services
from omegaconf import OmegaConf
from services import paths
from services.config_loader import load_config
from services.reward.verify_pool import VerifyPool
from services.tasks import load_task

default = load_config()
cfg = load_config(["task=dataset", "task.path=data/tasks/gsm8k_sample.jsonl", "task.cold_start_size=5"])
task = load_task(OmegaConf.to_object(cfg.task))
pool = VerifyPool(num_workers=1, timeout_s=60)
try:
    verdict = pool.run("1/2", "0.5")
finally:
    pool.close()
print(json.dumps({
    "services": services.__file__,
    "config_dir": str(paths.CONFIG_DIR),
    "default_task": default.task.name,
    "resolved": str(paths.resolve_data_path(cfg.task.path, "task.path")),
    "train": len(task.splits()["train"]),
    "worker_pythonpath": paths.subprocess_pythonpath(None),
    "verdict": [verdict.status.name, verdict.value],
}))
"""


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES + LEFT_OUT:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")], src, env)
    [wheel] = (tmp / "dist").glob("r1forge-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
    Path(purelib.stdout.strip(), "r1forge_dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp, env)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return {"wheel": wheel, "venv": venv.resolve(), "python": python, "cwd": cwd, "env": env}


def test_wheel_carries_configs_and_shipped_data_and_no_tests(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    shipped = [p for folder in ("configs", "data") for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert shipped
    for path in shipped:
        assert f"services/{path.relative_to(ROOT)}" in names, path
    modules = [p for p in (ROOT / "services").rglob("*.py") if "__pycache__" not in p.parts]
    for path in modules:
        assert str(path.relative_to(ROOT)) in names, path
    tops = {name.split("/")[0] for name in names}
    assert tops == {"services", installed["wheel"].name.split("-py")[0] + ".dist-info"}, tops


def test_installed_cli_composes_the_shipped_configs_from_another_directory(installed):
    r1forge = str(installed["venv"] / "bin" / "r1forge")
    shown = _run([r1forge, "--help"], installed["cwd"], installed["env"]).stdout
    # Hydra's help lists the config groups it found: the installed package's configs/.
    assert "task: addition, dataset, gym" in shown, shown
    printed = _run(
        [r1forge, "--cfg", "job", "task=dataset", "task.path=data/tasks/gsm8k_sample.jsonl"],
        installed["cwd"],
        installed["env"],
    ).stdout
    assert "name: dataset" in printed and "path: data/tasks/gsm8k_sample.jsonl" in printed, printed


def test_installed_package_loads_shipped_data_and_runs_its_workers(installed):
    out = _run([str(installed["python"]), "-c", PROBE], installed["cwd"], installed["env"]).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    venv = str(installed["venv"])
    assert probe["services"].startswith(venv), probe  # the installed package, not the checkout
    assert probe["config_dir"].startswith(venv) and probe["config_dir"].endswith("services/configs")
    assert probe["resolved"].startswith(venv) and probe["resolved"].endswith("data/tasks/gsm8k_sample.jsonl")
    assert probe["default_task"] == "addition" and probe["train"] > 0
    assert probe["worker_pythonpath"] is None  # site-packages is not pushed onto the workers' PYTHONPATH
    assert probe["verdict"] == ["OK", 1.0]
