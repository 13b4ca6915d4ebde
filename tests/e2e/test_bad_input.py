"""Bad input to `r1forge` fails fast, says what is wrong, and leaves no process behind.

Each case runs the real entry point in a subprocess. It must exit non-zero within the subprocess
deadline (a hang fails the test), print a message that names the offending setting, and leave
neither the embedded Redis nor a reward service running.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

# Seconds a failing run may take. Start-up failures need no training, but the process still imports
# torch, transformers and hydra and may create the tiny zoo policy on a busy 2-core machine.
DEADLINE_S = 90


@pytest.mark.parametrize(
    "overrides, must_name",
    [
        # Hydra itself rejects a key the schema does not have.
        (["rollout.nope=1"], ["rollout.nope"]),
        # `+` forces the key past Hydra; check_config still rejects it before anything starts.
        (["+rollout.nope=1"], ["rollout.nope", "unknown config key"]),
        # A cross-service rule: GRPO needs at least two completions per prompt.
        (["rollout.group_size=1"], ["rollout.group_size=1"]),
        # Nothing listens on port 1: the Redis probe fails before anything is started.
        (["redis.url=redis://127.0.0.1:1/0"], ["redis.url", "127.0.0.1:1"]),
        # A reward service that should already be running but is not: fails within the start-up deadline.
        (
            ["+reward.addresses.accuracy=127.0.0.1:1", "launcher.start_timeout_s=10"],
            ["reward.addresses.accuracy", "127.0.0.1:1"],
        ),
        (["model.path=/nonexistent"], ["model.path", "/nonexistent"]),
    ],
    ids=["unknown-key", "appended-unknown-key", "group-size-1", "redis-down", "reward-down", "model-path"],
)
def test_bad_input_fails_fast_naming_the_problem(r1forge, overrides, must_name):
    result = r1forge(overrides, timeout_s=DEADLINE_S)
    assert result.returncode != 0, f"r1forge {overrides} exited 0:\n{result.output[-3000:]}"
    for text in must_name:
        assert text in result.output, (
            f"{text!r} not in the output of r1forge {overrides}:\n{result.output[-3000:]}"
        )
    assert "Traceback" not in result.stdout  # errors go to stderr, the last stdout line stays meaningful
    r1forge.assert_nothing_left_behind(result)


GOOD_ROW = '{"question": "Tom has 3 apples and buys 2 more. How many now?", "answer": "3+2 = 5\\n#### 5"}'


@pytest.mark.parametrize(
    "second_line, must_name",
    [
        # Line 2 is not JSON: the file and line are named, and that it is not JSON.
        ('{"question": "Q?", "answer": ', ["bad.jsonl:2", "not valid JSON"]),
        # Line 2 lacks the answer field: the file, line and field are named, with the setting to change.
        ('{"question": "Q?", "label": "4"}', ["bad.jsonl:2", "missing field 'answer'", "task.answer_field="]),
    ],
    ids=["dataset-malformed-row", "dataset-missing-answer"],
)
def test_bad_dataset_file_fails_naming_file_line_and_field(r1forge, tmp_path, second_line, must_name):
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD_ROW}\n{second_line}\n")
    overrides = ["task=dataset", f"task.path={path}"]
    result = r1forge(overrides, timeout_s=DEADLINE_S)
    assert result.returncode != 0, f"r1forge {overrides} exited 0:\n{result.output[-3000:]}"
    assert str(path) in result.output, result.output[-3000:]
    for text in must_name:
        assert text in result.output, (
            f"{text!r} not in the output of r1forge {overrides}:\n{result.output[-3000:]}"
        )
    assert "Traceback" not in result.output  # a user error: one line, no traceback
    r1forge.assert_nothing_left_behind(result)
