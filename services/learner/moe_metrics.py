"""Expert load of a mixture-of-experts policy: tokens per expert per layer and how balanced they are.

Routing collapse (a few experts take most tokens, the rest stop learning) is the failure to watch in
MoE RL, so the learner logs each MoE layer's load. The numbers come from forward hooks on the model's
real router modules: transformers declares them in `_can_record_outputs["router_logits"]`, and every
transformers-5 router (DeepSeek-V3, Qwen2-MoE, Mixtral, ...) returns (router_logits [N, E],
top-k weights [N, k], top-k expert indices [N, k]) over the N = B*T flattened tokens. Nothing is
re-implemented, so the selection includes whatever the model does (DeepSeek's correction bias,
group-limited routing). Padding tokens (attention_mask = 0) are left out.

Per MoE layer, with E routed experts, top-k routing and N counted tokens:
- `tokens_per_expert[i]`: how many tokens chose expert i (they sum to k * N).
- `balance_coef` = E * sum_i f_i * P_i, with f_i = tokens_per_expert[i] / (k * N) the share of routed
  slots and P_i the mean router affinity of expert i. This is the Switch Transformer load-balancing
  loss without its alpha, and DeepSeek-V3's balance loss (its f_i is E * ours) taken over the batch
  instead of per sequence. P_i is the softmax of the router logits for softmax routers and, for
  DeepSeek-V3's sigmoid router, the sigmoid affinities normalised over experts, as DeepSeek-V3 defines
  it. It is 1 when f or P is uniform and grows to E/k as routing and affinities collapse together.
- `max_violation` = (max_i load_i - mean load) / mean load ("MaxVio" of the aux-loss-free balancing
  paper): 0 when balanced, E/k - 1 when every token picks the same k experts. It sees collapse that
  `balance_coef` misses when the affinities stay flat.
"""

from __future__ import annotations

import re

import torch


def load_balance(counts: torch.Tensor, mean_affinity: torch.Tensor, top_k: int) -> tuple[float, float]:
    """(balance_coef, max_violation) of one layer from tokens per expert [E] and mean affinities [E]."""
    num_experts = counts.numel()
    counts = counts.double()  # [E]
    routed_slots = counts.sum()  # k * N
    if routed_slots == 0:
        return float("nan"), float("nan")
    f = counts / routed_slots  # [E], sums to 1
    balance_coef = num_experts * (f * mean_affinity.double()).sum()
    mean_load = routed_slots / num_experts
    max_violation = (counts.max() - mean_load) / mean_load
    return float(balance_coef), float(max_violation)


def expert_load(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
    """Route `input_ids` [B, T] through `model` (no grad) and measure every MoE layer's expert load.

    Returns {"layers": [layer index, ...], "tokens_per_expert": [[count per expert], ...],
    "balance_coef": [...], "max_violation": [...], "num_tokens": N}, one list entry per MoE layer in
    depth order. Raises ValueError for a model without MoE routers.
    """
    routers = router_modules(model)
    if not routers:
        raise ValueError(f"{type(model).__name__} has no MoE router modules; expert load needs an MoE policy")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    keep = counted_tokens(input_ids, mask)
    records: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(layer: int):
        def record(module, inputs, outputs):
            logits, _, indices = outputs  # [B*T, E], [B*T, k], [B*T, k]
            records[layer] = (logits.detach()[keep].float(), indices.detach()[keep])

        return record

    handles = [module.register_forward_hook(hook(layer)) for layer, module in routers]
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()

    sigmoid = _uses_sigmoid_router(model)
    out: dict = {"layers": [], "tokens_per_expert": [], "balance_coef": [], "max_violation": []}
    for layer in sorted(records):
        logits, indices = records[layer]  # [N, E], [N, k]
        num_experts, top_k = logits.shape[-1], indices.shape[-1]
        counts = torch.bincount(indices.reshape(-1), minlength=num_experts)  # [E]
        if sigmoid:
            scores = logits.sigmoid()  # [N, E]
            affinity = scores / scores.sum(-1, keepdim=True)
        else:
            affinity = logits.softmax(-1)  # [N, E]
        coef, violation = load_balance(counts, affinity.mean(0), top_k)
        out["layers"].append(layer)
        out["tokens_per_expert"].append(counts.tolist())
        out["balance_coef"].append(coef)
        out["max_violation"].append(violation)
    out["num_tokens"] = int(keep.sum())
    return out


def counted_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[B*T] bool in the router's flattened token order: True for real tokens, False for padding."""
    return (torch.ones_like(input_ids) if attention_mask is None else attention_mask).reshape(-1).bool()


def router_modules(model: torch.nn.Module) -> list[tuple[int, torch.nn.Module]]:
    """(layer index, router module) for each MoE layer, found through transformers' own declaration."""
    recorder = (getattr(model, "_can_record_outputs", None) or {}).get("router_logits")
    router_class = getattr(recorder, "target_class", recorder)  # an OutputRecorder or the class itself
    if not isinstance(router_class, type):
        return []
    found = []
    for name, module in model.named_modules():
        if isinstance(module, router_class):
            match = re.search(r"layers\.(\d+)\.", name)
            found.append((int(match.group(1)) if match else len(found), module))
    return found


def _uses_sigmoid_router(model: torch.nn.Module) -> bool:
    """DeepSeek-V3's router scores experts with a sigmoid (transformers implements no other for it)."""
    config = model.config
    return getattr(config, "scoring_func", None) == "sigmoid" or config.model_type in ("deepseek_v3",)
