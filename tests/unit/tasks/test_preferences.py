"""The preference dataset: determinism, topic-disjoint split, shipped files, no length shortcut, errors."""

from __future__ import annotations

import importlib.util
import json
import operator
import re
from pathlib import Path

import pytest

from services.tasks.preferences import (
    HELPFUL_FAILURES,
    KINDS,
    PAIR_FIELDS,
    build_preference_pairs,
    read_pairs,
    split_pairs,
    topics_of,
    write_pairs,
)

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "data" / "preferences"
GOOD = build_preference_pairs(1, seed=5)[0]
OPS = {"+": operator.add, "-": operator.sub, "×": operator.mul, "÷": operator.floordiv}
REFUSAL_OPENERS = ("I'm sorry, but I can't", "I can't help", "Sorry, I can't", "That's not something I can")


def _make_preferences_tool():
    """tools/make_preferences.py as a module (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("make_preferences", ROOT / "tools" / "make_preferences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    return read_pairs(SHIPPED / "train.jsonl"), read_pairs(SHIPPED / "heldout.jsonl")


def test_same_seed_same_rows_other_seed_other_rows():
    assert build_preference_pairs(300, seed=7) == build_preference_pairs(300, seed=7)
    assert build_preference_pairs(300, seed=7) != build_preference_pairs(300, seed=8)


def test_rows_are_distinct_complete_and_both_kinds():
    rows = build_preference_pairs(600, seed=1)
    assert len(rows) == 600
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows}) == 600
    assert all(list(r) == list(PAIR_FIELDS) and r["chosen"] != r["rejected"] for r in rows)
    assert {r["kind"] for r in rows} == set(KINDS)
    assert len(topics_of(rows)) > 200  # several hundred topics exist; 600 draws already hit most


def test_split_is_topic_disjoint_and_keeps_every_row():
    rows = build_preference_pairs(800, seed=2)
    train, heldout = split_pairs(rows, heldout_fraction=0.2, seed=2)
    assert len(train) + len(heldout) == len(rows)
    assert not topics_of(train) & topics_of(heldout)
    assert {r["kind"] for r in heldout} == set(KINDS)  # each kind is split on its own
    share = len(topics_of(heldout)) / len(topics_of(rows))
    assert 0.15 < share < 0.25
    assert split_pairs(rows, 0.2, seed=2) == (train, heldout)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_a_fraction_outside_zero_one(fraction):
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_pairs(build_preference_pairs(20, seed=0), fraction, seed=0)


def test_shipped_files_are_what_the_tool_generates(shipped):
    tool = _make_preferences_tool()
    assert shipped == tool.make_preference_splits()  # the defaults reproduce the files exactly
    train, heldout = shipped
    assert not topics_of(train) & topics_of(heldout)
    assert 1800 <= len(train) <= 2200 and 300 <= len(heldout) <= 500
    assert sum(p.stat().st_size for p in SHIPPED.glob("*.jsonl")) < 1.5e6


def test_tool_check_passes_on_the_shipped_files_and_fails_on_a_stale_copy(tmp_path):
    tool = _make_preferences_tool()
    assert tool.main(["--check"]) == 0
    tool.write_preference_files(tmp_path, n=50)
    assert tool.main(["--check", "--out", str(tmp_path)]) == 1


def test_longer_response_is_no_shortcut(shipped):
    _, heldout = shipped
    longer_wins = sum(len(r["chosen"]) > len(r["rejected"]) for r in heldout) / len(heldout)
    assert 0.3 < longer_wins < 0.7


def test_a_refusal_is_chosen_for_harmful_and_rejected_for_benign_requests(shipped):
    train, _ = shipped

    def refuses(text):
        return text.startswith(REFUSAL_OPENERS)

    harmless = [r for r in train if r["kind"] == "harmless"]
    helpful = [r for r in train if r["kind"] == "helpful"]
    assert sum(refuses(r["chosen"]) for r in harmless) > 0.3 * len(harmless)
    assert sum(refuses(r["rejected"]) for r in helpful) > 0.05 * len(helpful)
    # "Sure, here is how to" opens good answers and compliance alike.
    assert any(r["chosen"].startswith("Sure, here is how to") for r in helpful)
    assert any(r["rejected"].startswith("Sure, here is how to") for r in harmless)


def test_every_failure_mode_is_represented(shipped):
    train, _ = shipped
    helpful = [r for r in train if r["kind"] == "helpful"]
    truncated = [r for r in helpful if r["chosen"].startswith(r["rejected"]) and r["rejected"] != r["chosen"]]
    rude = [r for r in helpful if "Figure it out" in r["rejected"] or "stop bothering" in r["rejected"]]
    assert len(HELPFUL_FAILURES) == 6 and truncated and rude


def test_word_problem_answers_are_right():
    rows = [r for r in build_preference_pairs(800, seed=3) if r["topic"].startswith("word-problem:")]
    assert rows
    checked = 0
    for row in rows:
        # Every chosen answer's arithmetic holds: "38 + 19 - 27 = 30", "5 × 2 = 10", "12 ÷ 4 = 3".
        for expression, result in re.findall(r"((?:\d+ [-+×÷] )+\d+) = (\d+)", row["chosen"]):
            tokens = expression.split(" ")
            value = int(tokens[0])
            for op, operand in zip(tokens[1::2], tokens[2::2]):  # left to right, as the answers read
                value = OPS[op](value, int(operand))
            assert value == int(result), row["chosen"]
            checked += 1
    assert checked > 20


def test_round_trip(tmp_path):
    rows = build_preference_pairs(30, seed=4)
    path = tmp_path / "sub" / "pairs.jsonl"
    assert write_pairs(path, rows) == 30
    assert read_pairs(path) == rows


def test_read_names_the_line_and_the_missing_field(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k != "rejected"}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(bad) + "\n")  # line 2 blank, line 3 bad
    with pytest.raises(ValueError, match=re.escape("bad.jsonl:3: missing field 'rejected'")):
        read_pairs(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad.jsonl:1: not valid JSON"),
        ('["a list"]', "bad.jsonl:1: expected a JSON object"),
        (json.dumps({**GOOD, "kind": "funny"}), "bad.jsonl:1: field 'kind' must be one of"),
        (json.dumps({**GOOD, "kind": 3}), "bad.jsonl:1: field 'kind' must be a string, got int"),
        (json.dumps({**GOOD, "rejected": GOOD["chosen"]}), "bad.jsonl:1: fields 'chosen' and 'rejected' are"),
        (json.dumps({**GOOD, "prompt": "  "}), "bad.jsonl:1: field 'prompt' must not be empty"),
    ],
)
def test_read_names_the_line_of_a_bad_value(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_pairs(path)


def test_write_validates_before_touching_the_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with pytest.raises(ValueError, match=re.escape("row 1: missing field 'chosen'")):
        write_pairs(path, [GOOD, {"prompt": "p"}])
    assert not path.exists()


def test_n_must_be_positive():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        build_preference_pairs(0, seed=0)
