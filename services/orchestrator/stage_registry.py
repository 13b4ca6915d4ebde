"""The stage registry: pipeline stage names (configs/pipeline/*.yaml) -> stage functions."""

from __future__ import annotations

from services.orchestrator import recipe_stages, stages

STAGES = {
    "reward_model": recipe_stages.reward_model,
    "cold_start_sft": stages.cold_start_sft,
    "rl": stages.rl,
    "rl_general": stages.rl_general,
    "eval": stages.evaluate,
    "sft_control": stages.sft_control,
    "rejection_sampling": recipe_stages.rejection_sampling,
    "sft": recipe_stages.sft,
    "distill": recipe_stages.distill,
}
# Stages that sample from the policy or update it; a pipeline with none of them starts no rollout worker.
ROLLOUT_STAGES = set(STAGES) - {"reward_model"}


def get_stage(name: str):
    if name not in STAGES:
        raise ValueError(f"pipeline stage {name!r} is unknown; choose from {sorted(STAGES)}")
    return STAGES[name]
