"""services/paths.py: the shipped configs and data are found from any directory; a user's relative path
wins over a shipped one; a path found nowhere is an error naming it and where it was looked for."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from services import paths
from services.config import TaskConfig
from services.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "data/tasks/gsm8k_sample.jsonl"


def test_checkout_layout_finds_the_repository_folders():
    # In a checkout services/configs does not exist: the folders beside services/ are the shipped ones.
    assert paths.RESOURCE_ROOT == ROOT
    assert (paths.CONFIG_DIR / "config.yaml").is_file()
    assert (paths.DATA_DIR / "preferences" / "train.jsonl").is_file()


def test_shipped_data_path_resolves_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_data_path(SAMPLE, "task.path") == ROOT / SAMPLE
    problems = load_task(TaskConfig(name="dataset", path=SAMPLE, cold_start_size=5)).splits()
    assert problems["train"] and problems["heldout"]


def test_a_file_in_the_current_directory_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / SAMPLE
    own.parent.mkdir(parents=True)
    own.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    assert paths.resolve_data_path(SAMPLE, "task.path") == Path(SAMPLE)
    assert paths.resolve_data_path(SAMPLE, "task.path").resolve() == own.resolve()


def test_missing_paths_name_the_key_the_path_and_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        paths.resolve_data_path("data/tasks/nope.jsonl", "task.path")
    message = str(e.value)
    assert message.startswith("task.path=data/tasks/nope.jsonl: no such file")
    assert str(tmp_path / "data/tasks/nope.jsonl") in message
    assert str(ROOT / "data/tasks/nope.jsonl") in message
    # Only data/... is looked up among the shipped files: a user's other relative paths stay cwd-relative.
    with pytest.raises(FileNotFoundError, match=re.escape("task.path=configs/config.yaml: no such file")):
        paths.resolve_data_path("configs/config.yaml", "task.path")
    with pytest.raises(FileNotFoundError, match=re.escape(f"task.heldout_path={tmp_path}/x.jsonl: no such")):
        load_task(TaskConfig(name="dataset", path=SAMPLE, heldout_path=str(tmp_path / "x.jsonl")))


def test_checkout_subprocesses_get_the_checkout_on_their_pythonpath():
    assert paths.subprocess_pythonpath(None) == str(ROOT)
    assert paths.subprocess_pythonpath("/elsewhere") == os.pathsep.join([str(ROOT), "/elsewhere"])


def test_reward_model_pairs_default_to_the_shipped_files_and_resolve_like_task_path(tmp_path, monkeypatch):
    from services.orchestrator.recipe_stages import _pairs_file

    monkeypatch.chdir(tmp_path)
    assert _pairs_file(None, "train_path", "train.jsonl") == str(ROOT / "data/preferences/train.jsonl")
    given = "data/preferences/heldout.jsonl"
    assert _pairs_file(given, "heldout_path", "heldout.jsonl") == str(ROOT / given)
    missing = "reward_model.train_path=mine.jsonl: no such file"
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        _pairs_file("mine.jsonl", "train_path", "train.jsonl")
