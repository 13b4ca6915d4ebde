"""The config tree and its schema: every YAML in configs/ composes and passes `check_config`, every
schema field is documented, documented overrides work, and bad input fails with a message naming the
key or field and the fix."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException

from services.config import check_config
from services.config_loader import CONFIG_DIR, load_config

CONFIG_SOURCE = Path(__file__).resolve().parents[2] / "services" / "config.py"


def _group_options() -> list[str]:
    """One Hydra override per YAML file in a config group, e.g. "model=tiny-qwen".

    Groups the root config already selects are switched with `group=option`; groups it does not list
    in its defaults are added with `+group=option`.
    """
    root_defaults = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text())["defaults"]
    selected = {next(iter(d)) for d in root_defaults if isinstance(d, dict)}
    options = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONFIG_DIR)
        if len(rel.parts) == 1:
            continue  # the root config.yaml, composed by every case
        group = "/".join(rel.parts[:-1])
        options.append(f"{'' if group in selected else '+'}{group}={path.stem}")
    return options


def test_config_tree_has_group_options():
    # Guards the parametrisation below: an empty list would make it pass vacuously.
    assert any(o.startswith("model=") for o in _group_options())
    assert any(o.startswith("pipeline=") for o in _group_options())


def test_root_config_composes_and_passes_check():
    cfg = load_config()
    check_config(cfg)
    assert cfg.rollout.group_size >= 2


@pytest.mark.parametrize("option", _group_options())
def test_every_group_option_composes_and_passes_check(option):
    cfg = load_config([option])
    check_config(cfg)
    group, name = option.lstrip("+").split("=")
    # The option's own values made it into the tree: each scalar key of the YAML is what it says.
    values = yaml.safe_load((CONFIG_DIR / group / f"{name}.yaml").read_text()) or {}
    node = cfg
    for part in group.split("/"):
        node = node[part]
    for key, value in values.items():
        if key != "defaults" and not isinstance(value, (dict, list)):
            assert node[key] == value, f"{option}: {group}.{key}"


@pytest.mark.parametrize("option", [o for o in _group_options() if o.lstrip("+").startswith("pipeline=")])
def test_every_pipeline_lists_only_known_stages(option):
    # Light: no torch, ray or vllm at import.
    from services.orchestrator.stage_registry import STAGES, get_stage

    stages = list(load_config([option]).pipeline.stages)
    assert stages, f"{option} runs no stage"
    for name in stages:
        get_stage(name)  # raises ValueError naming an unknown stage
    assert set(stages) <= set(STAGES)


def test_unknown_stage_fails_naming_it():
    from services.orchestrator.stage_registry import get_stage

    with pytest.raises(ValueError, match="'grpo_typo'"):
        get_stage("grpo_typo")


@pytest.mark.parametrize(
    "overrides",
    [
        # The examples in the README and in the `r1forge` docstring.
        ["rollout.group_size=64", "learner.kl_coef=0", "rollout.engine=hf"],
        ["launcher.ray_address=auto"],
        ["redis.url=redis://127.0.0.1:6379/0"],
        ["launcher.ray_address=auto", "redis.url=redis://redis:6379/0"],
        ["+reward.addresses.accuracy=127.0.0.1:50051"],
        # The Ray cluster commands (README "Running on a Ray cluster", with <head-ip> filled in).
        [
            "launcher.ray_address=10.0.0.1:6379",
            "+launcher.learner_resources.learner_node=0.01",
            "+launcher.rollout_resources.rollout_node=0.01",
            "redis.url=redis://redis-host:6379/0",
            "reward.token=s3cret",
            "+reward.addresses.accuracy=reward-host:50051",
            "+reward.addresses.format=reward-host:50052",
            "+reward.addresses.language=reward-host:50053",
            "model.cache_dir=/shared/zoo",
            "rollout.num_workers=4",
        ],
        ["model=smollm2-135m", "learner.lora.rank=16", "learner.lora.alpha=32"],
        # The SmolLM2-135M commands (README "A real pretrained policy").
        [
            "model=smollm2-135m",
            "pipeline=r1_zero",
            "task.min_digits=1",
            "task.heldout_size=100",
            "eval.num_prompts=100",
            "reward.untagged_answer=last_number",
            "learner.rl_steps=16",
            "learner.seed=0",
        ],
        [
            "model=smollm2-135m",
            "pipeline=r1_cold_start",
            "task.min_digits=1",
            "task.heldout_size=100",
            "eval.num_prompts=100",
            "reward.untagged_answer=last_number",
            "learner.rl_steps=16",
            "learner.sft_steps=40",
            "learner.seed=1",
            "rollout.seed=1",
        ],
    ],
)
def test_documented_overrides_compose_and_pass_check(overrides):
    cfg = load_config(overrides)
    check_config(cfg)
    for item in overrides:
        key, value = item.lstrip("+").split("=", 1)
        if "." not in key:  # a config-group choice (model=..., pipeline=...): its name field says which
            assert cfg[key].name == value, key
            continue
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == yaml.safe_load(value), key  # "0" and 0.0 are the same kl_coef


@pytest.mark.parametrize(
    "overrides",
    [
        # The task examples in the README (a group choice first, then keys of the tree).
        ["task=dataset", "task.path=data/tasks/gsm8k_sample.jsonl"],
        [
            "task=dataset",
            "task.path=data/tasks/math_sample.jsonl",
            "task.question_field=problem",
            "task.answer_field=solution",
        ],  # fmt: skip
        ["task=gym", "task.gym_name=chain_sum"],
        [
            "task=gym",
            "task.gym_name=null",
            "+task.gym_weights.chain_sum=1",
            "+task.gym_weights.basic_arithmetic=1",
        ],  # fmt: skip
        ["task=addition", "task.cold_start_solution=worked", "learner.sft_steps=300", "learner.rl_steps=40"],
    ],
)
def test_documented_task_examples_compose_and_pass_check(overrides):
    from omegaconf import OmegaConf

    from services.orchestrator.pipeline import check_task_scorers
    from services.tasks import load_task

    cfg = load_config(overrides)
    check_config(cfg)
    assert cfg.task.name == overrides[0].split("=")[1]
    for item in overrides[1:]:
        key, value = item.lstrip("+").split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == yaml.safe_load(value), key
    # The README's data/tasks/... paths resolve from any directory (services/paths.py).
    task_cfg = OmegaConf.to_object(cfg.task)
    check_task_scorers(load_task(task_cfg), cfg.reward)  # the shipped files load and the scorer runs


def test_documented_override_types():
    cfg = load_config(["rollout.group_size=64", "learner.kl_coef=0"])
    assert cfg.rollout.group_size == 64 and isinstance(cfg.rollout.group_size, int)
    assert cfg.learner.kl_coef == 0.0 and isinstance(cfg.learner.kl_coef, float)


def test_unknown_key_fails_naming_it():
    with pytest.raises(ConfigCompositionException, match=r"rollout\.nope"):
        load_config(["rollout.nope=1"])


def test_appended_unknown_key_fails_check_naming_it():
    # Hydra's own error for `rollout.nope=1` suggests `+rollout.nope=1`, which slips past the schema.
    cfg = load_config(["+rollout.nope=1"])
    with pytest.raises(ValueError, match=r"rollout\.nope: unknown config key"):
        check_config(cfg)


def test_wrong_type_fails_naming_the_key():
    with pytest.raises(ConfigCompositionException, match=r"rollout\.group_size"):
        load_config(["rollout.group_size=many"])


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["rollout.group_size=1"], "rollout.group_size=1"),
        (["rollout.engine=foo"], "rollout.engine='foo'"),
        # 3 workers x 1 thread + 1 learner thread = 4 CPUs > 2.
        (["rollout.num_workers=3", "launcher.num_cpus=2"], "launcher.num_cpus=2"),
        (["rollout.weight_sync=nccl", "rollout.device=cpu"], "rollout.weight_sync=nccl"),
        (["rollout.weight_sync=carrier_pigeon"], "rollout.weight_sync='carrier_pigeon'"),
        (["rollout.weight_bucket_mb=0"], "rollout.weight_bucket_mb=0"),
        # NCCL moves GPU tensors on both ends, into vLLM's weight-transfer engine.
        (["rollout.weight_sync=nccl", "rollout.device=cuda"], "learner.device=cpu"),
        (
            [
                "rollout.weight_sync=nccl",
                "launcher.ray_address=auto",
                "rollout.device=cuda",
                "learner.device=cuda",
                "rollout.engine=hf",
            ],
            "needs rollout.engine=vllm",
        ),
        (["learner.loss_agg=sum"], "learner.loss_agg='sum'"),
        (["learner.lora.rank=8", "learner.lora.dropout=0.05"], "learner.lora.dropout=0.05"),
        (["learner.lora.rank=-1"], "learner.lora.rank=-1"),
        (["learner.lora.alpha=0"], "learner.lora.alpha=0"),
        (["rollout.max_new_tokens=512", "rollout.max_model_len=512"], "rollout.max_new_tokens=512"),
        (["reward.scorers=[accuracy,vibes]"], "reward.scorers"),
        (["+reward.addresses.acuracy=127.0.0.1:50051"], "reward.addresses"),
        (["eval.num_prompts=500", "task.heldout_size=200"], "eval.num_prompts=500"),
        (["+reward.stage_weights.rl={vibes:1.0}"], "reward.stage_weights.rl"),
        (["+reward.source_weights.general={reward_model:1.0}"], "reward.source_weights.general"),
        (["reward.scorers=[accuracy,reward_model]"], "reward.reward_model_path"),
        (["reward.rm_device=tpu"], "reward.rm_device"),
        # Custom resources exist only on nodes started with `ray start --resources`, never on a local Ray.
        (["+launcher.learner_resources.learner_node=0.01"], "launcher.learner_resources"),
        (
            ["+launcher.rollout_resources.rollout_node=0", "launcher.ray_address=auto"],
            "launcher.rollout_resources",
        ),
        # vLLM's Qwen2 windows every layer or none; transformers would window only layers >= 2.
        (["model.sliding_window=16", "model.max_window_layers=2"], "model.max_window_layers=2"),
        (
            ["model.rope_scaling=dynamic", "model.max_position_embeddings=256", "rollout.max_model_len=512"],
            "rollout.max_model_len=512",
        ),
        # head_dim = 64 / 4 = 16, which vLLM's CPU attention kernels do not implement.
        (
            ["model.hidden_size=64", "model.num_heads=4", "rollout.engine=vllm"],
            "model.hidden_size/model.num_heads",
        ),
    ],
)
def test_check_config_rejects_bad_combinations_naming_the_field(overrides, field):
    cfg = load_config(overrides)
    with pytest.raises(ValueError) as info:
        check_config(cfg)
    assert field in str(info.value)


def test_nccl_weight_sync_on_a_machine_without_gpus_fails_at_config_check():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = load_config(["rollout.weight_sync=nccl", "rollout.device=cuda", "learner.device=cuda"])
    with pytest.raises(
        ValueError, match="rollout.weight_sync=nccl needs CUDA GPUs, and this machine has none"
    ):
        check_config(cfg)


def test_nccl_weight_sync_passes_the_check_for_a_gpu_cluster():
    # On an existing cluster the driver need not have the GPUs itself.
    overrides = ["rollout.weight_sync=nccl", "rollout.device=cuda", "learner.device=cuda"]
    check_config(load_config([*overrides, "launcher.ray_address=auto"]))


def test_check_config_reports_every_problem_at_once():
    cfg = load_config(["rollout.group_size=1", "rollout.engine=foo"])
    with pytest.raises(ValueError) as info:
        check_config(cfg)
    assert "rollout.group_size" in str(info.value) and "rollout.engine" in str(info.value)


def test_head_size_rule_applies_to_vllm_on_cpu_only():
    # The HF engine runs any head size; so does vLLM on a GPU.
    check_config(load_config(["model.hidden_size=64", "model.num_heads=4", "rollout.engine=hf"]))


def test_cpu_budget_is_not_checked_against_an_existing_cluster():
    # The cluster, not launcher.num_cpus, decides where actors fit when ray_address is set.
    check_config(load_config(["rollout.num_workers=3", "launcher.num_cpus=2", "launcher.ray_address=auto"]))


def test_placement_resources_are_accepted_with_a_cluster():
    check_config(
        load_config(
            [
                "launcher.ray_address=auto",
                "+launcher.learner_resources.learner_node=0.01",
                "+launcher.rollout_resources.rollout_node=0.01",
            ]
        )
    )


def _undocumented_fields(source: str) -> tuple[int, list[str]]:
    """(number of dataclass fields, "Class.field (line n)" for each without a comment line above it)."""
    lines = source.splitlines()
    undocumented, n_fields = [], 0
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or not any(
            _is_dataclass_decorator(d) for d in node.decorator_list
        ):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                n_fields += 1
                above = lines[stmt.lineno - 2].strip()  # lineno is 1-based
                if not above.startswith("#") or not above.lstrip("# "):
                    undocumented.append(f"{node.name}.{stmt.target.id} (line {stmt.lineno})")
    return n_fields, undocumented


def _is_dataclass_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node  # @dataclass or @dataclass(frozen=True)
    return getattr(target, "id", None) == "dataclass" or getattr(target, "attr", None) == "dataclass"


def test_field_comment_checker_catches_a_missing_comment():
    source = (
        "@dataclass(frozen=True)\n"
        "class A:\n"
        "    # Documented.\n"
        "    x: int = 1\n"
        "    y: int = 2\n"
        "    #\n"
        "    z: int = 3\n"
    )
    assert _undocumented_fields(source) == (3, ["A.y (line 5)", "A.z (line 7)"])


def test_every_config_field_has_a_comment_above_it():
    n_fields, undocumented = _undocumented_fields(CONFIG_SOURCE.read_text())
    assert n_fields > 50, "parsed too few fields: is services/config.py still made of dataclasses?"
    assert not undocumented, "config fields without a comment line directly above them:\n" + "\n".join(
        undocumented
    )


def test_reward_model_scorer_is_fine_when_the_pipeline_trains_it_or_a_path_is_given():
    check_config(load_config(["reward.scorers=[accuracy,reward_model]", "reward.reward_model_path=/some/rm"]))
    check_config(
        load_config(
            ["reward.scorers=[accuracy,reward_model]", "pipeline.stages=[reward_model,cold_start_sft]"]
        )
    )


def test_qwen_window_and_dynamic_ntk_pass_on_vllm_when_they_match_the_learner():
    check_config(
        load_config(["model.sliding_window=16", "model.max_window_layers=0", "model.rope_scaling=dynamic"])
    )
    # The hf engine runs the learner's own modules, so mixed window layers are fine there.
    check_config(load_config(["model.sliding_window=16", "model.max_window_layers=2", "rollout.engine=hf"]))


def test_pipeline_accuracy_weights_become_the_tasks_own_scorer():
    """pipeline=r1_zero weights "accuracy"; on task=gym that is the gym service, in every table."""
    from services.orchestrator.pipeline import check_task_scorers, with_correctness_scorer
    from services.reward.combine import reward_weights
    from services.tasks import load_task

    cfg = load_config(["pipeline=r1_zero", "task=gym"])
    assert list(cfg.reward.scorers) == ["accuracy", "format", "language"]  # what the pipeline file says
    bound = with_correctness_scorer(cfg, "gym")
    assert list(bound.reward.scorers) == ["gym", "format", "language"]
    assert reward_weights(bound.reward, "rl") == {"gym": 1.0, "format": 0.2, "language": 0.0}
    assert reward_weights(bound.reward, "eval") == {"gym": 1.0, "format": 0.2, "language": 0.0}
    check_task_scorers(load_task(bound.task), bound.reward)
    check_config(bound)
    # A math task keeps math-verify; a config that starts the task's scorer itself is left as written.
    assert with_correctness_scorer(cfg, "accuracy") is cfg
    both = load_config(["pipeline=r1_zero", "task=gym", "reward.scorers=[accuracy,gym,format,language]"])
    assert with_correctness_scorer(both, "gym") is both
