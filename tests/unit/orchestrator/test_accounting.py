"""An RL stage's books: every issued id in exactly one state, and when a stage must fail the run."""

from __future__ import annotations

import pytest

from services.orchestrator.stages import _dropped, account, check_accounting, staleness_totals


def _books(outcomes, duplicates=0, reasons=None):
    return {
        "outcomes": outcomes,
        "duplicate_copies": duplicates,
        "foreign": 0,
        "dead_letter_reasons": reasons or {},
    }


def test_every_issued_id_lands_in_exactly_one_state():
    issued = {f"r/p{i}/0" for i in range(7)}
    learner = _books(
        {
            "r/p0/0": "trained", "r/p1/0": "trained", "r/p2/0": "zero_variance", "r/p3/0": "stale",
            "r/p4/0": "dead_lettered", "r/x/0": "trained",  # r/x/0 was never issued by this stage
        },
        duplicates=2,
        reasons={"r/p4/0": "scoring failed: accuracy unavailable (failed on all 3 deliveries)"},
    )  # fmt: skip
    books = account(issued, learner)
    assert books == {
        "issued": 7,
        "trained": 2,
        "dropped": {"stale": 1, "zero_variance": 1},
        "dead_lettered": 1,
        "pending": 2,  # p5 and p6 never reached the learner
        "unknown": 1,
        "duplicate_copies": 2,
        "foreign": 0,
        "dead_letter_reasons": {
            "r/p4/0": "scoring failed: accuracy unavailable (failed on all 3 deliveries)"
        },
    }
    settled = books["trained"] + sum(books["dropped"].values()) + books["dead_lettered"] + books["pending"]
    assert settled == books["issued"]


def test_a_stage_that_trained_nothing_fails():
    books = account({"r/a/0", "r/b/0"}, _books({"r/a/0": "zero_variance", "r/b/0": "zero_variance"}))
    with pytest.raises(RuntimeError, match=r"stage 'rl' trained no group \(issued 2, trained 0"):
        check_accounting("rl", books, max_failed_share=0.5)


def test_a_stage_that_lost_too_many_groups_to_failures_fails_with_a_reason():
    outcomes = {f"r/p{i}/0": "trained" for i in range(8)}
    outcomes["r/p8/0"] = "dead_lettered"
    outcomes["r/p9/0"] = "failed"
    issued = set(outcomes)
    reason = {"r/p8/0": "scoring failed: accuracy timeout"}
    check_accounting("rl", account(issued, _books(outcomes, reasons=reason)), max_failed_share=0.2)  # 2/10
    with pytest.raises(RuntimeError, match=r"lost 2 of 10 groups .*max_failed_share=0.1 .*accuracy timeout"):
        check_accounting("rl", account(issued, _books(outcomes, reasons=reason)), max_failed_share=0.1)


def test_step_line_names_every_drop_reason():
    assert _dropped({"dropped_zero_variance": 2, "dropped_stale": 0, "dropped_dead_lettered": 1}) == (
        "zero_variance 2, dead_lettered 1"
    )
    assert _dropped({"dropped_stale": 0}) == "0"


def test_staleness_totals_add_the_stage_steps_histograms_in_lag_order():
    rows = [
        {"stage": "rl", "step": 1, "staleness_0": 8},
        {"stage": "rl", "step": 2, "staleness_1": 6, "staleness_0": 2, "staleness_10": 1},
        {"stage": "rl_general", "step": 1, "staleness_0": 8},  # another stage
        {"stage": "rl", "step": 3, "loss": 0.5},  # a step without groups
    ]
    totals = staleness_totals(rows, "rl")
    assert totals == {"staleness_0": 10, "staleness_1": 6, "staleness_10": 1}
    assert list(totals) == ["staleness_0", "staleness_1", "staleness_10"]
    assert staleness_totals(rows, "distill") == {}
