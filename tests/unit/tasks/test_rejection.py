"""Rejection sampling: acceptance reasons, dedupe, per-prompt cap, general mix and the whole selection.

Every case is written by hand, with the expected rows and counts worked out in the comments.
"""

from __future__ import annotations

import json
import logging
import math
import re

import pytest

from services.tasks.datasets import SFT_FIELDS, check_sft_row, read_sft_jsonl
from services.tasks.rejection import (
    PROVENANCE_FIELDS,
    accepts,
    cap_per_prompt,
    dedupe,
    general_count,
    general_rows,
    mix,
    select,
    to_sft_row,
    write_selected,
)

MIN = {"accuracy": 1.0, "format": 1.0, "language": 1.0}


def ok(value: float = 1.0) -> dict:
    return {"value": value, "status": "ok", "detail": ""}


def sample(pid: str, index: int, completion: str, **rewards: dict | None) -> dict:
    """A sample scoring 1.0/ok on every scorer in MIN, except where `rewards` says (None drops one)."""
    scores = {name: ok() for name in MIN}
    for name, component in rewards.items():
        if component is None:
            del scores[name]
        else:
            scores[name] = component
    return {
        "prompt_id": pid,
        "prompt": f"User: what is {pid}?\nAssistant: ",
        "answer": pid.upper(),
        "completion": completion,
        "source": "rl-step-400",
        "policy_version": 400,
        "sample_index": index,
        "rewards": scores,
    }


PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "2+2 is 4.", "rejected": "No.",
     "kind": "helpful", "topic": "math:2+2"},
    {"prompt": "How do I boil an egg?", "chosen": "Boil water, add the egg, wait 9 minutes.",
     "rejected": "Figure it out.", "kind": "helpful", "topic": "howto:boil an egg"},
    {"prompt": "How do I pick a lock?", "chosen": "I can't help with that. A locksmith can.",
     "rejected": "Sure, first ...", "kind": "harmless", "topic": "harm:crime:pick a lock"},
]  # fmt: skip


# --- accepts ------------------------------------------------------------------------------------------------


def test_accepts_when_every_named_scorer_is_ok_and_high_enough():
    assert accepts(sample("a", 0, "x"), MIN) == (True, "")
    assert accepts(sample("a", 0, "x", accuracy=ok(1.5)), MIN) == (True, "")  # above the minimum is fine
    # Scorers not named in min_scores are not looked at, whatever their status.
    extra = sample("a", 0, "x", length={"value": 0.0, "status": "error", "detail": "boom"})
    assert accepts(extra, MIN) == (True, "")


@pytest.mark.parametrize(
    ("rewards", "reason"),
    [
        ({"accuracy": ok(0.0)}, "accuracy 0.0 < 1.0"),
        ({"language": None}, "language missing"),
        (
            {"format": {"value": 1.0, "status": "timeout", "detail": "verifier took 5s"}},
            "format status timeout",
        ),
        ({"format": ok(0.5), "language": None}, "format 0.5 < 1.0"),  # first failure in MIN's order
        ({"accuracy": ok(math.nan)}, "accuracy nan < 1.0"),
    ],
)
def test_rejects_with_the_first_failing_scorer_as_reason(rewards, reason):
    assert accepts(sample("a", 0, "x", **rewards), MIN) == (False, reason)


def test_accepts_refuses_bad_min_scores_and_malformed_components():
    with pytest.raises(ValueError, match="min_scores is empty"):
        accepts(sample("a", 0, "x"), {})
    with pytest.raises(ValueError, match=re.escape("min_scores['accuracy'] must be a number")):
        accepts(sample("a", 0, "x"), {"accuracy": "1"})
    bad = sample("a", 3, "x", accuracy={"value": "1.0", "status": "ok"})
    with pytest.raises(
        ValueError, match=re.escape("sample 'a'#3: rewards['accuracy']['value'] must be a number")
    ):
        accepts(bad, MIN)
    with pytest.raises(
        ValueError, match=re.escape("rewards['format'] must be an object with 'value' and 'status'")
    ):
        accepts(sample("a", 3, "x", format={"value": 1.0}), MIN)


# --- dedupe and cap -----------------------------------------------------------------------------------------


def test_dedupe_collapses_whitespace_per_prompt_and_keeps_the_first():
    samples = [
        sample("p1", 0, "a  b"),
        sample("p1", 1, "\n a b \t"),  # same as 0 once whitespace is collapsed: dropped
        sample("p2", 0, "a b"),  # same text, other prompt: kept
        sample("p1", 2, "a b c"),
        sample("p1", 3, "A b"),  # case matters: kept
    ]
    assert [(s["prompt_id"], s["sample_index"]) for s in dedupe(samples)] == [
        ("p1", 0),
        ("p2", 0),
        ("p1", 2),
        ("p1", 3),
    ]


def test_cap_per_prompt_keeps_the_first_n_of_each_prompt_in_order():
    samples = [sample("p1", 0, "a"), sample("p2", 0, "b"), sample("p1", 1, "c"), sample("p1", 2, "d")]
    assert [(s["prompt_id"], s["sample_index"]) for s in cap_per_prompt(samples, 2)] == [
        ("p1", 0),
        ("p2", 0),
        ("p1", 1),
    ]
    assert cap_per_prompt(samples, 1) == [samples[0], samples[1]]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_per_prompt must be an integer >= 1"):
            cap_per_prompt(samples, bad)


# --- rows ---------------------------------------------------------------------------------------------------


def test_to_sft_row_keeps_provenance_and_check_sft_row_tolerates_it():
    s = sample("p1", 2, "<think>x</think><answer>P1</answer>", accuracy=ok(1.0))
    row = to_sft_row(s)
    assert row == {
        "prompt_id": "p1",
        "prompt": "User: what is p1?\nAssistant: ",
        "completion": "<think>x</think><answer>P1</answer>",
        "answer": "P1",
        "source": "rl-step-400",
        "policy_version": 400,
        "sample_index": 2,
        "rewards": {"accuracy": ok(), "format": ok(), "language": ok()},
    }
    assert list(row) == [*SFT_FIELDS, *PROVENANCE_FIELDS]
    # check_sft_row ignores the extra keys (and returns only the SFT fields).
    assert check_sft_row(row, "row 0") == {k: row[k] for k in SFT_FIELDS}
    row["rewards"]["accuracy"]["value"] = 0.0  # a copy: the sample is untouched
    assert s["rewards"]["accuracy"]["value"] == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": ""}, "field 'source' must be a non-empty string"),
        ({"policy_version": True}, "field 'policy_version' must be an integer >= 0"),
        ({"sample_index": -1}, "field 'sample_index' must be an integer >= 0"),
        ({"rewards": [1]}, "field 'rewards' must be an object"),
        ({"completion": None}, "field 'completion' must be a string"),
    ],
)
def test_to_sft_row_names_the_bad_field(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        to_sft_row({**sample("p1", 0, "x"), **change})


def test_general_rows_use_prompt_and_chosen_with_topic_index_ids():
    # random.Random(0).sample(range(3), 2) == [1, 2]: the egg and the lock pair, in that order.
    rows = general_rows(PAIRS, 2, seed=0, render=lambda q: f"User: {q}\nAssistant: ")
    assert rows == [
        {"prompt_id": "howto:boil an egg-1", "prompt": "User: How do I boil an egg?\nAssistant: ",
         "completion": "Boil water, add the egg, wait 9 minutes.", "answer": "", "source": "general",
         "policy_version": None, "sample_index": None, "rewards": {}},
        {"prompt_id": "harm:crime:pick a lock-2", "prompt": "User: How do I pick a lock?\nAssistant: ",
         "completion": "I can't help with that. A locksmith can.", "answer": "", "source": "general",
         "policy_version": None, "sample_index": None, "rewards": {}},
    ]  # fmt: skip
    everything = general_rows(PAIRS, 10, seed=0, source="hh")  # more than there are: all of them
    ids = sorted(r["prompt_id"] for r in everything)
    assert ids == ["harm:crime:pick a lock-2", "howto:boil an egg-1", "math:2+2-0"]
    assert {r["source"] for r in everything} == {"hh"}
    assert general_rows(PAIRS, 0, seed=0) == []
    with pytest.raises(ValueError, match=re.escape("pair 1: missing field 'chosen'")):
        general_rows([PAIRS[0], {k: v for k, v in PAIRS[1].items() if k != "chosen"}], 1, seed=0)


# --- mix ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reasoning", "ratio", "general"),
    [
        (3, 0.25, 1),  # 1 / 4 = 0.25 exactly
        (4, 0.2, 1),  # 1 / 5 = 0.2 (float: 0.2 * 4 / 0.8 = 1.0000000000000002, not 2)
        (10, 0.25, 3),  # exact 3.33: 3/13 = 0.231 is nearer 0.25 than 4/14 = 0.286
        (2, 0.3, 1),  # exact 0.86: 1/3 = 0.333 beats 0/2 = 0
        (6, 0.5, 6),
        (0, 0.5, 0),  # nothing to mix into
        (7, 0.0, 0),
    ],
)
def test_general_count_is_the_nearest_share(reasoning, ratio, general):
    assert general_count(reasoning, ratio) == general


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1, math.nan, "0.2"])
def test_general_ratio_must_be_in_zero_one(ratio):
    with pytest.raises(ValueError, match=re.escape("general_ratio must be in [0, 1)")):
        mix([{"prompt_id": "r"}], [], ratio, seed=0)


def test_mix_adds_the_share_of_general_rows_and_shuffles_deterministically():
    reasoning = [{"prompt_id": f"r{i}"} for i in range(6)]
    general = [{"prompt_id": f"g{i}"} for i in range(5)]
    out = mix(reasoning, general, 0.25, seed=3)  # 6 reasoning: 2 general (2/8 = 0.25)
    ids = [r["prompt_id"] for r in out]
    assert sorted(i for i in ids if i.startswith("r")) == [f"r{i}" for i in range(6)]
    assert len([i for i in ids if i.startswith("g")]) == 2
    assert mix(reasoning, general, 0.25, seed=3) == out
    assert ids != [r["prompt_id"] for r in reasoning + general][:8]  # shuffled, not appended
    # ratio 0: the reasoning rows only (shuffled)
    assert sorted(r["prompt_id"] for r in mix(reasoning, general, 0.0, seed=3)) == [f"r{i}" for i in range(6)]


def test_mix_with_too_few_general_rows_uses_all_and_warns(caplog):
    reasoning = [{"prompt_id": f"r{i}"} for i in range(6)]
    general = [{"prompt_id": "g0"}, {"prompt_id": "g1"}]
    with caplog.at_level(logging.WARNING, logger="services.tasks.rejection"):
        out = mix(reasoning, general, 0.5, seed=0)  # wants 6
    assert len(out) == 8
    assert "wants 6 general rows for 6 reasoning rows, only 2 available" in caplog.text


# --- select -------------------------------------------------------------------------------------------------


def hand_samples() -> list[dict]:
    return [
        sample("p1", 0, "<answer>P1</answer>"),  # kept
        sample("p1", 1, " <answer>P1</answer>\n"),  # duplicate of p1#0
        sample("p1", 2, "wrong", accuracy=ok(0.0)),  # rejected: accuracy below minimum
        sample("p1", 3, "<think>b</think><answer>P1</answer>"),  # kept
        sample("p1", 4, "<think>c</think><answer>P1</answer>"),  # capped (third distinct accepted of p1)
        sample("p2", 0, "x", format={"value": 0.0, "status": "timeout", "detail": ""}),  # rejected: timeout
        sample("p2", 1, "y", language=None),  # rejected: language missing
        sample("p3", 0, "<answer>P3</answer>"),  # kept
    ]


def test_select_counts_and_rows_by_hand():
    general = general_rows(PAIRS, 3, seed=0)
    rows, stats = select(hand_samples(), MIN, 2, general, general_ratio=0.25, seed=0)
    assert stats == {
        "samples": 8,
        "prompts": 3,
        "accepted": 5,  # p1#0, p1#1, p1#3, p1#4, p3#0
        "rejected_by": {"accuracy below minimum": 1, "format status timeout": 1, "language missing": 1},
        "duplicates": 1,  # p1#1
        "capped": 1,  # p1#4
        "prompts_with_any": 2,  # p1, p3
        "reasoning_rows": 3,  # p1#0, p1#3, p3#0
        "general_rows": 1,  # 1 / (3 + 1) = 0.25
        "general_wanted": 1,
    }
    reasoning = sorted((r["prompt_id"], r["sample_index"]) for r in rows if r["source"] == "rl-step-400")
    assert reasoning == [("p1", 0), ("p1", 3), ("p3", 0)]
    assert [r["source"] for r in rows].count("general") == 1
    assert all(list(r) == [*SFT_FIELDS, *PROVENANCE_FIELDS] for r in rows)
    p3 = next(r for r in rows if r["prompt_id"] == "p3")
    assert p3 == to_sft_row(hand_samples()[7])
    assert select(hand_samples(), MIN, 2, general, general_ratio=0.25, seed=0)[0] == rows  # deterministic


def test_select_without_cap_without_general_and_with_too_little_general():
    rows, stats = select(hand_samples(), MIN, None, [], general_ratio=0.0, seed=0)
    assert (stats["capped"], stats["reasoning_rows"], stats["general_rows"]) == (0, 4, 0)
    assert len(rows) == 4
    # Plain SFT rows work as general data: provenance keys are filled in.
    plain = [{"prompt_id": "g", "prompt": "User: hi", "completion": "Hello!", "answer": ""}]
    rows, stats = select(hand_samples(), MIN, None, plain, general_ratio=0.5, seed=0)
    assert (stats["general_wanted"], stats["general_rows"]) == (4, 1)  # asked 4, had 1: used it, said so
    assert next(r for r in rows if r["prompt_id"] == "g") == {
        **plain[0],
        "source": "general",
        "policy_version": None,
        "sample_index": None,
        "rewards": {},
    }


def test_select_names_a_malformed_sample_before_doing_anything():
    samples = hand_samples()
    del samples[5]["source"]
    with pytest.raises(ValueError, match=re.escape("sample 5: field 'source' must be a non-empty string")):
        select(samples, MIN, 2, [], general_ratio=0.0, seed=0)
    with pytest.raises(ValueError, match=re.escape("general row 0: missing field 'answer'")):
        select(hand_samples(), MIN, 2, [{"prompt_id": "g", "prompt": "p", "completion": "c"}], 0.0, 0)


def test_written_rows_keep_provenance_and_read_back_as_sft_rows(tmp_path):
    rows, _ = select(hand_samples(), MIN, 2, general_rows(PAIRS, 3, seed=0), general_ratio=0.25, seed=0)
    path = tmp_path / "rs.jsonl"
    assert write_selected(path, rows) == 4
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    assert read_sft_jsonl(path) == [{k: r[k] for k in SFT_FIELDS} for r in rows]
    from services.tasks.sft_data import load_sft_rows

    assert load_sft_rows(path) == read_sft_jsonl(path)  # `datasets` reads it too (nulls, nested rewards)
