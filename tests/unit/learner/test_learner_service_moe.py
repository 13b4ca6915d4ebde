"""The learner service logs MoE expert load next to the GRPO metrics for a DeepSeek-style policy."""

from omegaconf import OmegaConf

from services.config_loader import load_config
from services.learner.service import LearnerService
from services.models.zoo import resolve_model_dir
from services.pb import rollout_pb2


def _group(prompt_ids, completions, rewards):
    g = rollout_pb2.ScoredGroup(
        id=rollout_pb2.TaskId(run_id="r", prompt_id="p", epoch=0), prompt_token_ids=prompt_ids
    )
    for i, (ids, r) in enumerate(zip(completions, rewards)):
        g.completions.add(
            sample_index=i,
            completion_token_ids=ids,
            logprobs=[-1.0] * len(ids),
            total_reward=r,
            status=rollout_pb2.REWARD_STATUS_OK,
        )
    return g


def test_moe_expert_load_is_reported(tmp_path):
    cfg = load_config(
        [
            "model=tiny-deepseek",
            f"model.cache_dir={tmp_path}",
            "model.num_layers=2",
            "model.q_lora_rank=32",
            "model.moe_intermediate_size=32",
        ]
    )
    model_dir = resolve_model_dir(cfg.model)
    service = LearnerService(str(model_dir), OmegaConf.to_object(cfg.learner))
    from services.learner.batch import build_batch

    batch = build_batch([_group([10, 11, 12], [[20, 21, 2], [22, 2]], [1.0, 0.0])], 0, 1e-6)
    load = service._expert_load(batch)
    moe_layers = cfg.model.num_layers - cfg.model.first_k_dense_replace
    assert sum(k.startswith("moe_balance_coef_l") for k in load) == moe_layers
    # Each unpadded token goes to num_experts_per_tok experts per MoE layer: (3 + 3) + (3 + 2) = 11 tokens.
    per_layer = sum(v for k, v in load.items() if k.startswith("moe_tokens_l1_"))
    assert per_layer == 11 * cfg.model.num_experts_per_tok
    assert load["moe_balance_coef"] > 0
