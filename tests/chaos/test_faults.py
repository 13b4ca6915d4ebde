"""The chaos suite: kill the real processes of a real run and check that it finishes, with every
issued group accounted for, none trained twice, the policy version only moving forward and no group
mixing versions (bench/chaos.py: the scenarios and the checks; it also prints them as a table)."""

from __future__ import annotations

import pytest

from bench.chaos import SCENARIOS, make_sft_checkpoint, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chaos")
    zoo = workdir / "zoo"
    return workdir, make_sft_checkpoint(workdir, zoo), zoo


@pytest.mark.timeout(700)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_run_survives(sft, scenario):
    workdir, ckpt, zoo = sft
    outcome = run_scenario(scenario, workdir, ckpt, zoo)
    assert outcome.recovered, f"{scenario}: {outcome.problems}\n--- log tail ---\n{outcome.log_tail}"
    books = outcome.books
    assert books["pending"] == 0 and books["trained"] > 0, books
    if scenario in ("F2", "F4"):  # the supervisor restarted the service and timed it
        assert outcome.recover_s is not None, outcome.log_tail
