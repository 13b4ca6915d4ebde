"""`r1forge score`: the real entry point scores a JSONL file through real reward services it starts."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import assert_nothing_left_behind, run_r1forge

pytestmark = pytest.mark.e2e

ROWS = [
    # Right answer, whole template: accuracy 1, format 1.
    {
        "id": "a",
        "prompt": "What is 2+3?",
        "completion": "<think>2 plus 3 is 5</think><answer>5</answer>",
        "answer": "5",
    },
    # Wrong answer, text between the blocks: accuracy 0, format 3/4 with partial credit.
    {
        "id": "b",
        "prompt": "What is 2+3?",
        "completion": "<think>2 plus 3</think> so <answer>6</answer>",
        "answer": "5",
    },
    # An equivalent form (LaTeX fraction vs decimal) is right; no think block: format 1/4.
    {
        "id": "c",
        "prompt": "What is 1/2+1/4?",
        "completion": "<answer>\\frac{3}{4}</answer>",
        "answer": "0.75",
    },
]


def test_score_writes_every_component_per_row(tmp_path):
    src, dst = tmp_path / "rows.jsonl", tmp_path / "out" / "scored.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    overrides = ["reward.format_partial_credit=true", "+reward.stage_weights.score={accuracy:1.0,format:0.5}"]
    result = run_r1forge(["score", str(src), str(dst), *overrides], cwd=tmp_path, timeout_s=120)
    assert result.returncode == 0, result.output[-3000:]
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    got = {r["id"]: (r["rewards"]["accuracy"]["value"], r["rewards"]["format"]["value"]) for r in out}
    assert got == {"a": (1.0, 1.0), "b": (0.0, 0.75), "c": (1.0, 0.25)}
    # total = 1.0 * accuracy + 0.5 * format
    assert [r["total_reward"] for r in out] == pytest.approx([1.5, 0.375, 1.125])
    assert all(r["reward_status"] == "ok" for r in out)
    assert "scored rows 3" in result.stdout
    assert_nothing_left_behind(result)


def test_score_names_the_bad_line_and_writes_nothing(tmp_path):
    src, dst = tmp_path / "rows.jsonl", tmp_path / "scored.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    result = run_r1forge(["score", str(src), str(dst)], cwd=tmp_path, timeout_s=60)
    assert result.returncode == 2
    assert "rows.jsonl:2: missing field 'completion'" in result.stderr
    assert not dst.exists()
    assert_nothing_left_behind(result)
