"""The accuracy scorer: answer extraction, math-verify equivalences, and hard time budgets.

The scorer tests run the real verifier processes (they are the unit under test: the time budget is
only real if a process is really killed). One scorer is shared by the module to pay the worker
start-up (about half a second each) once.
"""

import os
import threading

import pytest

from services.reward.math_verifier import MAX_ANSWER_CHARS, MathVerifierScorer, extract_answer, last_boxed
from services.reward.scorer import ScoreInput, ScoreStatus, make_scorer
from services.reward.verify_pool import Verdict, VerifyPool
from services.reward.verify_worker import handle_line, verify_answer

# The default budget of the config (reward.verify_timeout_s); a normal item takes well under 0.5 s.
TIMEOUT_S = 2.0
# `2^2^2^...` is right-associative: 2^(2^(2^...)). sympy tries to evaluate the tower and hangs.
POWER_TOWER = "^".join(["2"] * 8)


@pytest.fixture(scope="module")
def scorer():
    scorer = MathVerifierScorer(num_workers=2, timeout_s=TIMEOUT_S)
    yield scorer
    scorer.close()


def item(completion: str, answer: str = "132", index: int = 0) -> ScoreInput:
    return ScoreInput(sample_index=index, prompt="What is 100 + 32?", completion=completion, answer=answer)


def tagged(answer: str) -> str:
    return f"<think>work</think><answer>{answer}</answer>"


# --- extraction (pure) -------------------------------------------------------------------------


def test_extract_takes_the_last_answer_block() -> None:
    assert extract_answer("<answer>5</answer> wait, no: <answer> 132 </answer>") == "132"


def test_extract_falls_back_to_the_last_boxed() -> None:
    assert extract_answer("first \\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{a{b}c") is None  # unbalanced braces: no answer, not a guess


def test_extract_returns_none_without_answer() -> None:
    assert extract_answer("the answer is 132") is None
    assert extract_answer("</answer> 132 <answer>") is None  # tags in the wrong order


def test_untagged_last_number_is_read_only_when_asked() -> None:
    text = "3 + 9 is 11? No: 3 + 9 = 1,212 apples."
    assert extract_answer(text) is None  # the default: no tag, no answer
    assert extract_answer(text, "last_number") == "1212"
    assert extract_answer("It is -4.5.", "last_number") == "-4.5"
    assert extract_answer("no digits here", "last_number") is None
    # A tag or a box still wins over any number after it.
    assert extract_answer("<answer>7</answer> and 8", "last_number") == "7"
    assert extract_answer("\\boxed{7} and 8", "last_number") == "7"


def test_untagged_scoring_in_the_verifier_processes() -> None:
    lenient = make_scorer("accuracy", _reward_cfg(untagged_answer="last_number"))
    try:
        results = lenient.score([item("so 100 + 32 = 132"), item("so 100 + 32 = 131")])
    finally:
        lenient.close()
    assert [(r.value, r.status) for r in results] == [(1.0, ScoreStatus.OK), (0.0, ScoreStatus.OK)]
    with pytest.raises(ValueError, match="reward.untagged_answer='first'"):
        MathVerifierScorer(1, TIMEOUT_S, untagged="first")


def _reward_cfg(**changes):
    from services.config_loader import load_config

    return load_config([f"reward.{k}={v}" for k, v in changes.items()]).reward


# --- math-verify equivalence, in this process (pure) -------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reference", "equal"),
    [
        ("132", "132", True),
        ("1/2", "0.5", True),
        ("\\frac{1}{2}", "0.5", True),
        ("$\\frac{1}{2}$", "1/2", True),
        ("133", "132", False),
        ("-132", "132", False),
        ("2", "0.5", False),
    ],
)
def test_verify_answer(answer: str, reference: str, equal: bool) -> None:
    assert verify_answer(answer, reference) is equal


def test_worker_reports_errors_instead_of_false() -> None:
    # A malformed request line is an error reply, never {"equal": false}.
    assert "error" in handle_line("not json")
    assert "error" in handle_line('{"answer": "1", "reference": ""}')  # unparseable reference


# --- the scorer with its worker processes ------------------------------------------------------


def test_scorer_equivalences_in_one_batch(scorer: MathVerifierScorer) -> None:
    cases = [
        (tagged("132"), "132", 1.0),
        (tagged("1/2"), "0.5", 1.0),
        (tagged("\\frac{1}{2}"), "0.5", 1.0),
        ("so the total is \\boxed{132}", "132", 1.0),
        (tagged("133"), "132", 0.0),
        ("<answer>132</answer> no wait <answer>131</answer>", "132", 0.0),  # the last answer counts
    ]
    results = scorer.score([item(c, a, i) for i, (c, a, _) in enumerate(cases)])
    assert [r.sample_index for r in results] == list(range(len(cases)))
    assert [(r.status, r.value) for r in results] == [(ScoreStatus.OK, v) for _, _, v in cases]


def test_missing_answer_is_a_real_zero(scorer: MathVerifierScorer) -> None:
    [result] = scorer.score([item("The answer is 132.")])
    assert (result.status, result.value) == (ScoreStatus.OK, 0.0)
    assert "no <answer>" in result.detail


def test_missing_reference_is_an_error(scorer: MathVerifierScorer) -> None:
    [result] = scorer.score([item(tagged("132"), answer="  ")])
    assert result.status is ScoreStatus.ERROR
    assert "reference" in result.detail


def test_power_tower_times_out_and_the_next_item_still_scores(scorer: MathVerifierScorer) -> None:
    hanging, normal = scorer.score([item(tagged(POWER_TOWER), index=0), item(tagged("132"), index=1)])
    assert hanging.status is ScoreStatus.TIMEOUT
    assert "verify_timeout_s" in hanging.detail
    assert (normal.status, normal.value) == (ScoreStatus.OK, 1.0)
    # The pool keeps working after the kill: a later call on any worker scores normally.
    later = scorer.score([item(tagged("132"), index=i) for i in range(4)])
    assert [(r.status, r.value) for r in later] == [(ScoreStatus.OK, 1.0)] * 4


def test_timed_out_worker_is_killed_and_replaced() -> None:
    scorer = MathVerifierScorer(num_workers=1, timeout_s=TIMEOUT_S)
    try:
        scorer.score([item(tagged("132"))])
        [first_pid] = scorer.pool.live_pids()
        [result] = scorer.score([item(tagged(POWER_TOWER))])
        assert result.status is ScoreStatus.TIMEOUT
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # the hung worker is gone, not left spinning
        [again] = scorer.score([item(tagged("132"))])
        assert (again.status, again.value) == (ScoreStatus.OK, 1.0)
        assert scorer.pool.live_pids() != [first_pid]
    finally:
        scorer.close()


def test_worker_outlives_the_thread_that_first_used_it() -> None:
    # Linux kills a PR_SET_PDEATHSIG child when the *thread* that created it exits; the pool starts
    # workers from its own long-lived thread so a short-lived caller thread cannot take them down.
    pool = VerifyPool(num_workers=1, timeout_s=TIMEOUT_S)
    try:
        caller = threading.Thread(target=pool.run, args=("132", "132"))
        caller.start()
        caller.join()
        [pid] = pool.live_pids()
        assert pool.run("132", "132") == Verdict(ScoreStatus.OK, 1.0)
        assert pool.live_pids() == [pid]
    finally:
        pool.close()


def test_oversized_inputs_are_refused_before_parsing(scorer: MathVerifierScorer) -> None:
    huge_number = "9" * 100_000
    one_megabyte = "x" * 1_000_000
    results = scorer.score(
        [
            item(tagged(huge_number), index=0),
            item(tagged(one_megabyte), index=1),
            item(one_megabyte, index=2),  # 1 MB without any answer: a plain 0
            item(tagged("132"), answer="1" * (MAX_ANSWER_CHARS + 1), index=3),
        ]
    )
    assert [r.status for r in results] == [
        ScoreStatus.ERROR,
        ScoreStatus.ERROR,
        ScoreStatus.OK,
        ScoreStatus.ERROR,
    ]
    assert "answer too long" in results[0].detail
    assert "reference answer too long" in results[3].detail
    assert results[2].value == 0.0


def test_invalid_utf8_is_replaced_not_fatal(scorer: MathVerifierScorer) -> None:
    # "\udcff" is what surrogateescape makes of the byte 0xff: not encodable as UTF-8.
    [bad, good] = scorer.score([item(tagged("13\udcff2"), index=0), item(tagged("132"), index=1)])
    assert bad.status is ScoreStatus.OK  # "13\ufffd2" is scored (as wrong or right), not crashed on
    assert (good.status, good.value) == (ScoreStatus.OK, 1.0)


def test_closed_scorer_reports_errors_not_zeros() -> None:
    scorer = MathVerifierScorer(num_workers=1, timeout_s=TIMEOUT_S)
    scorer.pool.close()
    [result] = scorer.score([item(tagged("132"))])
    assert result.status is ScoreStatus.ERROR
    scorer.close()


def test_pool_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="verify_workers"):
        VerifyPool(num_workers=0, timeout_s=1.0)
    with pytest.raises(ValueError, match="verify_timeout_s"):
        VerifyPool(num_workers=1, timeout_s=0.0)


def test_make_scorer_names_valid_scorers() -> None:
    with pytest.raises(ValueError, match="accuracy, format"):
        make_scorer("bleu", cfg=None)
