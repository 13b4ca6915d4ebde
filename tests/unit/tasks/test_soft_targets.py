"""Soft-target JSONL rows: round trip, and every validation error naming file:line and the field."""

from __future__ import annotations

import json
import re

import pytest

from services.tasks.soft_targets import distill_examples, read_soft_targets, write_soft_targets

ROW = {
    "prompt_id": "distill-000000",
    "prompt": "User: What is 1+2?",
    "completion": "<think>一加二</think><answer>3</answer>",
    "prompt_token_ids": [11, 12, 13],
    "completion_token_ids": [21, 22, 2],
    "topk_ids": [[21, 5], [22, 7], [2, 21]],
    "topk_logprobs": [[-0.1, -2.5], [-0.05, -4.0], [-0.7, -0.9]],
    "teacher": "Qwen/Qwen2.5-7B-Instruct",
    "teacher_version": 0,
    "k": 2,
}


def test_round_trip_keeps_rows_and_feeds_the_batch_builder(tmp_path):
    rows = [ROW, {**ROW, "prompt_id": "distill-000001", "teacher_version": 3}]
    path = tmp_path / "sub" / "soft.jsonl"
    assert write_soft_targets(path, rows) == 2
    assert read_soft_targets(path) == rows
    assert not [p for p in path.parent.iterdir() if p.name != "soft.jsonl"]  # no temp file left
    prompt, completion, topk_ids, topk_logprobs = distill_examples(rows)[0]
    assert (prompt, completion, topk_ids, topk_logprobs) == (
        ROW["prompt_token_ids"], ROW["completion_token_ids"], ROW["topk_ids"], ROW["topk_logprobs"]
    )  # fmt: skip
    with pytest.raises(ValueError, match="mix k values"):
        distill_examples([ROW, {**ROW, "k": 1, "topk_ids": [[21], [22], [2]], "topk_logprobs": [[-1.0]] * 3}])


LP, INF, NAN = "topk_logprobs", float("inf"), float("nan")
BAD_ROWS = [  # (change to ROW, expected message after "bad.jsonl:2: ")
    ({"teacher": None}, "field 'teacher' must be a string"),
    ({"teacher": ""}, "field 'teacher' must not be empty"),
    ({"teacher_version": -1}, "field 'teacher_version' must be a non-negative int"),
    ({"teacher_version": True}, "field 'teacher_version' must be a non-negative int"),
    ({"k": 0}, "field 'k' must be an int >= 1"),
    ({"prompt_token_ids": []}, "field 'prompt_token_ids' must be a non-empty list"),
    ({"completion_token_ids": [21, -1, 2]}, "field 'completion_token_ids'[1] must be a non-negative int"),
    ({"topk_ids": [[21, 5], [22, 7]]}, "field 'topk_ids' must be a list with one entry per completion token"),
    ({LP: [[-0.1, -2.5]] * 4}, "field 'topk_logprobs' must be a list with one entry per"),
    ({"topk_ids": [[21, 5], [22], [2, 21]]}, "field 'topk_ids'[1] must be a list of exactly k=2 entries"),
    ({LP: [[-0.1], [-0.05, -4.0], [-0.7, -0.9]]}, "field 'topk_logprobs'[0] must be a list of exactly k=2"),
    ({"topk_ids": [[21, 5], [22, 7], [2, 1.0]]}, "field 'topk_ids'[2][1] must be a non-negative int"),
    ({"topk_ids": [[21, -5], [22, 7], [2, 21]]}, "field 'topk_ids'[0][1] must be a non-negative int"),
    ({"topk_ids": [[21, 5], [7, 7], [2, 21]]}, "field 'topk_ids'[1] repeats a token id"),
    ({LP: [[-0.1, 0.5], [-0.05, -4.0], [-0.7, -0.9]]}, "field 'topk_logprobs'[0][1] must be a finite"),
    ({LP: [[-0.1, -2.5], [-0.05, -INF], [-0.7, -0.9]]}, "field 'topk_logprobs'[1][1] must be a finite"),
    ({LP: [[-0.1, -2.5], [-0.05, -4.0], [NAN, -0.9]]}, "field 'topk_logprobs'[2][0] must be a finite"),
    # exp(-.1) + exp(-.2) = .905 + .819 = 1.72 > 1: logits, not full-vocabulary log-probs.
    ({LP: [[-0.1, -2.5], [-0.1, -0.2], [-0.7, -0.9]]}, "field 'topk_logprobs'[1] has probabilities summing"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ROWS)
def test_read_names_line_and_field(tmp_path, change, message):
    path = tmp_path / "bad.jsonl"
    # json.dumps writes NaN and -Infinity, which json.loads reads back, so the reader must catch them.
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({**ROW, **change}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"bad.jsonl:2: {message}")):
        read_soft_targets(path)


def test_read_names_line_of_missing_field_and_invalid_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    bad = {k: v for k, v in ROW.items() if k != "topk_ids"}
    path.write_text(json.dumps(ROW) + "\n\n" + json.dumps(bad) + "\n")  # line 2 blank, line 3 bad
    with pytest.raises(ValueError, match=re.escape("bad.jsonl:3: missing field 'topk_ids'")):
        read_soft_targets(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        read_soft_targets(path)


def test_write_rejects_bad_row_and_leaves_no_file(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=re.escape("row 1: field 'topk_ids' must be a list with one entry")):
        write_soft_targets(path, [ROW, {**ROW, "topk_ids": []}])
    assert not path.exists()
