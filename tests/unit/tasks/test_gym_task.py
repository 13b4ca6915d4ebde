"""reasoning-gym task: deterministic disjoint splits, mix shares, config errors, JSON-safe metadata."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import reasoning_gym

from services.config import TaskConfig
from services.config_loader import load_config
from services.tasks import load_task
from services.tasks.gym import GymTask, cold_start_solution, derived_seed, largest_remainder

# The datasets this project uses; each must score its own reference answer after the JSON round trip.
SCORED_DATASETS = ["basic_arithmetic", "chain_sum", "gsm_symbolic", "countdown"]
SHORT_ARITHMETIC = {
    "basic_arithmetic": {"min_terms": 2, "max_terms": 2, "max_digits": 1, "operators": ["+", "-"]},
}


def gym_cfg(**overrides) -> TaskConfig:
    base = TaskConfig(
        name="gym", gym_name="basic_arithmetic", train_size=60, heldout_size=20, cold_start_size=10
    )
    return replace(base, **overrides)


def test_same_config_gives_the_same_splits():
    first, second = GymTask(gym_cfg()).splits(), GymTask(gym_cfg()).splits()
    assert first == second
    assert {k: len(v) for k, v in first.items()} == {"train": 60, "heldout": 20, "cold_start": 10}
    other_seed = GymTask(gym_cfg(seed=7)).splits()
    assert [p.question for p in other_seed["train"]] != [p.question for p in first["train"]]


def test_problems_carry_ids_source_answer_and_the_whole_entry():
    splits = GymTask(gym_cfg()).splits()
    train = splits["train"][3]
    assert train.prompt_id == "basic_arithmetic-train-000003"
    assert train.source == "basic_arithmetic" and train.solution == ""
    entry = reasoning_gym.create_dataset("basic_arithmetic", seed=1234, size=60)[3]
    assert (train.question, train.answer) == (entry["question"], str(entry["answer"]))
    assert json.loads(train.metadata_json)["metadata"]["source_dataset"] == "basic_arithmetic"
    cold = splits["cold_start"][0]
    assert cold.prompt_id == "basic_arithmetic-cold_start-000000"
    assert cold.solution.startswith("<think>") and cold.solution.endswith(f"<answer>{cold.answer}</answer>")


def test_splits_are_disjoint_by_question_and_duplicates_are_counted():
    # A tiny space (one-digit a+b or a-b: 200 questions) makes the generator repeat itself.
    task = GymTask(gym_cfg(train_size=100, heldout_size=30, cold_start_size=30, gym_kwargs=SHORT_ARITHMETIC))
    splits = task.splits()
    train = {p.question for p in splits["train"]}
    heldout = [p.question for p in splits["heldout"]]
    cold = [p.question for p in splits["cold_start"]]
    assert not train & set(heldout) and not train & set(cold) and not set(heldout) & set(cold)
    assert len(set(heldout)) == len(heldout) == 30 and len(set(cold)) == len(cold) == 30
    counts = task.report()["datasets"]["basic_arithmetic"]
    assert counts["heldout_dropped_duplicates"] > 0 and counts["cold_start_dropped_duplicates"] > 0
    assert (counts["train"], counts["heldout"], counts["cold_start"]) == (100, 30, 30)


def test_a_split_left_empty_by_a_small_question_space_is_an_error_naming_it():
    # One-digit a+b has ~100 questions; 3000 training draws take them all, so nothing is left to hold out.
    plus = {
        "basic_arithmetic": {
            **SHORT_ARITHMETIC["basic_arithmetic"],
            **{"operators": ["+"], "allow_parentheses": False, "allow_negation": False},
        }
    }
    task = GymTask(gym_cfg(train_size=3000, heldout_size=20, cold_start_size=0, gym_kwargs=plus))
    with pytest.raises(ValueError, match=r"the heldout split is empty \(task\.heldout_size=20\)"):
        task.splits()


def test_derived_seeds_differ_per_split_and_dataset():
    seeds = {derived_seed(1234, n, s) for n in ("chain_sum", "countdown") for s in ("heldout", "cold_start")}
    assert len(seeds) == 4 and 1234 not in seeds
    assert derived_seed(1234, "chain_sum", "heldout") == derived_seed(1234, "chain_sum", "heldout")


def test_mix_shares_every_split_by_largest_remainder():
    assert largest_remainder(10, {"a": 2, "b": 1, "c": 1}) == {"a": 5, "b": 3, "c": 2}
    assert largest_remainder(7, {"a": 1, "b": 1}) == {"a": 4, "b": 3}
    cfg = gym_cfg(gym_name=None, gym_weights={"chain_sum": 3, "basic_arithmetic": 1}, heldout_size=9)
    task = GymTask(cfg)
    splits = task.splits()
    for split, (chain, basic) in {"train": (45, 15), "heldout": (7, 2), "cold_start": (8, 2)}.items():
        sources = [p.source for p in splits[split]]
        assert (sources.count("chain_sum"), sources.count("basic_arithmetic")) == (chain, basic), split
    # Interleaved, so the eval's prefix of held-out sees both datasets.
    assert len({p.source for p in splits["heldout"][:4]}) == 2
    assert task.report()["weights"] == {"chain_sum": 3.0, "basic_arithmetic": 1.0}


@pytest.mark.parametrize(
    "overrides",
    [{"gym_name": None}, {"gym_weights": {"chain_sum": 1.0}}],
    ids=["neither", "both"],
)
def test_exactly_one_of_name_and_weights(overrides):
    with pytest.raises(ValueError, match="task.gym_name.*task.gym_weights"):
        GymTask(gym_cfg(**overrides))


def test_unknown_dataset_names_the_field_and_lists_the_choices():
    with pytest.raises(ValueError, match="task.gym_name") as info:
        load_task(gym_cfg(gym_name="basic_arithmetc"))
    assert "basic_arithmetic" in str(info.value) and "chain_sum" in str(info.value)
    with pytest.raises(ValueError, match="task.gym_weights names 'nope'.*countdown"):
        GymTask(gym_cfg(gym_name=None, gym_weights={"nope": 1.0}))


@pytest.mark.parametrize(
    ("kwargs", "library_says"),
    [({"bogus": 1}, "unexpected keyword argument 'bogus'"), ({"min_terms": 5, "max_terms": 2}, "max_terms")],
    ids=["unknown-arg", "invalid-value"],
)
def test_bad_kwargs_name_the_dataset_and_quote_the_library(kwargs, library_says):
    with pytest.raises(ValueError, match="task.gym_kwargs.chain_sum") as info:
        GymTask(gym_cfg(gym_name="chain_sum", gym_kwargs={"chain_sum": kwargs}))
    assert library_says in str(info.value)


def test_kwargs_may_not_set_seed_or_size():
    with pytest.raises(ValueError, match=r"task.gym_kwargs.chain_sum sets \['seed'\].*task.seed"):
        GymTask(gym_cfg(gym_name="chain_sum", gym_kwargs={"chain_sum": {"seed": 3}}))


def test_kwargs_of_other_datasets_are_reported_not_used():
    task = GymTask(gym_cfg(gym_name="chain_sum", gym_kwargs=SHORT_ARITHMETIC))
    assert {p.source for p in task.splits()["train"]} == {"chain_sum"}
    assert task.report()["unused_gym_kwargs"] == ["basic_arithmetic"]


@pytest.mark.parametrize("name", SCORED_DATASETS)
def test_metadata_round_trip_scores_the_reference_answer(name):
    problems = GymTask(gym_cfg(gym_name=name, train_size=5, heldout_size=3, cold_start_size=3)).splits()
    dataset = reasoning_gym.create_dataset(name, seed=0, size=1)
    for problem in [p for split in problems.values() for p in split]:
        entry = json.loads(problem.metadata_json)
        assert entry["metadata"]["source_dataset"] == name
        assert dataset.score_answer(problem.answer, entry) == 1.0, problem.prompt_id


def test_cold_start_solution_restates_the_expression_or_states_the_answer():
    arithmetic = {"answer": "-4", "metadata": {"expression": "5 - 3 - 6"}}
    assert cold_start_solution(arithmetic) == "<think>5 - 3 - 6 = -4</think><answer>-4</answer>"
    countdown = {"answer": "94*4 - 61 - 6", "metadata": {"expression": "94*4 - 61 - 6"}}
    assert cold_start_solution(countdown) == (
        "<think>The answer is 94*4 - 61 - 6.</think><answer>94*4 - 61 - 6</answer>"
    )


def test_gym_config_composes_and_a_command_line_name_wins():
    cfg = load_config(["task=gym"])
    assert (cfg.task.name, cfg.task.gym_name) == ("gym", "basic_arithmetic")
    assert list(cfg.reward.scorers) == ["gym", "format", "language"]
    assert load_config(["task=gym", "task.gym_name=chain_sum"]).task.gym_name == "chain_sum"
    assert load_config(["task.gym_name=chain_sum", "task=gym"]).task.gym_name == "chain_sum"


def test_default_gym_questions_fit_the_tiny_policy():
    cfg = load_config(["task=gym"])
    splits = load_task(cfg.task).splits()
    longest_question = max(len(p.question) for split in splits.values() for p in split)
    longest_solution = max(len(p.solution) for p in splits["cold_start"])
    # The prompt adds ~80 characters of template; the cold start must fit the completion budget.
    assert longest_question + 80 + cfg.rollout.max_new_tokens < cfg.rollout.max_model_len
    assert longest_solution < cfg.rollout.max_new_tokens
