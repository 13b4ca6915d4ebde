"""`r1forge score`'s core: validate JSONL rows, score them through any client, combine as training does."""

from __future__ import annotations

import json

import pytest

from services.reward.batch_score import read_rows, score_rows, summarize
from services.reward.format_checker import FormatScorer
from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus


class Unreachable:
    """A scorer that could not be reached (what RewardClient returns when its service is down)."""

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        return [ScoreResult(i.sample_index, 0.0, ScoreStatus.UNAVAILABLE, "down") for i in items]


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rows_keep_their_fields_and_get_every_component(tmp_path):
    rows = read_rows(
        _write(
            tmp_path,
            [
                json.dumps({"id": 7, "prompt": "p", "completion": "<think>a</think><answer>1</answer>"}),
                "",
                json.dumps({"id": 8, "prompt": "p", "completion": "<think>a</think> x <answer>1</answer>"}),
            ],
        )
    )
    out = score_rows(rows, {"format": FormatScorer(partial_credit=True)}, {"format": 0.5}, chunk=1)
    assert [r["id"] for r in out] == [7, 8]
    assert out[0]["rewards"]["format"] == {"value": 1.0, "status": "ok", "detail": ""}
    # 3 of 4 rules met (not clean) = 0.75; total = 0.5 * 0.75.
    assert out[1]["rewards"]["format"]["value"] == 0.75
    assert out[1]["total_reward"] == pytest.approx(0.375)
    assert summarize(out) == {"rows": 2, "not_ok": 0, "format": pytest.approx(0.875)}


def test_unscorable_rows_say_so_instead_of_scoring_zero(tmp_path):
    rows = read_rows(_write(tmp_path, [json.dumps({"prompt": "p", "completion": "c"})]))
    (out,) = score_rows(
        rows, {"format": FormatScorer(), "accuracy": Unreachable()}, {"format": 1, "accuracy": 1}
    )
    assert out["reward_status"] == "unavailable"
    assert out["rewards"]["accuracy"] == {"value": 0.0, "status": "unavailable", "detail": "down"}
    assert summarize([out])["not_ok"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "rows.jsonl:2: not valid JSON"),
        ('{"prompt": "p"}', "rows.jsonl:2: missing field 'completion'"),
        ('{"prompt": "p", "completion": 3}', "rows.jsonl:2: field 'completion' must be a string"),
        ('["p", "c"]', "rows.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, line, message):
    path = _write(tmp_path, [json.dumps({"prompt": "p", "completion": "c"}), line])
    with pytest.raises(ValueError, match=message):
        read_rows(path)


def test_non_utf8_and_missing_files_are_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"prompt": "p", "completion": "\xff"}\n')
    with pytest.raises(ValueError, match="rows.jsonl:1: not UTF-8"):
        read_rows(path)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        read_rows(tmp_path / "empty.jsonl")
