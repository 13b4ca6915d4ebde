"""DeepSeek-V3's auxiliary-loss-free load balancing: the router's correction bias, nudged after every step.

DeepSeek-V3 (section 2.1.2) adds a per-expert bias b_i to the routing scores when experts are chosen
(not to the gating weights). At the end of each training step every expert's bias moves by the bias
update speed gamma against its load over the step's tokens:

    b_i <- b_i + gamma * sign(mean_j load_j - load_i)

so an overloaded expert becomes less likely to be picked and an underloaded one more likely, without an
auxiliary loss term pulling on the gradients. transformers' DeepSeek-V3 router already applies the bias
(`e_score_correction_bias`, a buffer), so this module only counts loads and moves it: forward hooks on
the real router modules (found as in `moe_metrics`) count the top-k selections of non-padding tokens in
forward passes that build gradients (the training forwards; no-grad passes such as metrics, evaluation
or the reference policy are not counted). The bias is part of the state dict, so checkpoints and the
weight sync to the rollout workers carry it like any weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from services.learner.moe_metrics import counted_tokens, router_modules


def bias_update(load: torch.Tensor, speed: float) -> torch.Tensor:
    """DeepSeek-V3's step for each expert's bias from its load [..., E]: +speed below the mean load,
    -speed above it, 0 at it."""
    load = load.double()
    return speed * torch.sign(load.mean(-1, keepdim=True) - load)


class ExpertBiasBalancer:
    """Counts expert loads over a step's training forwards and moves each router's correction bias."""

    def __init__(self, model: torch.nn.Module, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"learner.moe_bias_update_speed={speed} must be > 0 to balance experts")
        self.speed = speed
        self.routers = [
            (layer, module)
            for layer, module in router_modules(model)
            if isinstance(getattr(module, "e_score_correction_bias", None), torch.Tensor)
        ]
        if not self.routers:
            raise ValueError(
                f"learner.moe_bias_update_speed={speed} needs a router with a correction bias (DeepSeek-V3 "
                f"style, `e_score_correction_bias`); {type(model).__name__} has none. Set it to 0."
            )
        self.counts: dict[int, torch.Tensor] = {}
        self._keep: torch.Tensor | None = None
        for layer, module in self.routers:
            module.register_forward_hook(self._hook(layer))

    def _hook(self, layer: int):
        def count(module, inputs, outputs) -> None:
            if self._keep is None or not torch.is_grad_enabled():
                return
            indices = outputs[2].detach()  # [B*T, k] chosen experts, flattened token order
            chosen = indices[self._keep].reshape(-1)
            counts = torch.bincount(chosen, minlength=module.e_score_correction_bias.numel())
            self.counts[layer] = self.counts.get(layer, 0) + counts  # on the device: no sync per forward

        return count

    @contextmanager
    def tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> Iterator[None]:
        """Count the routing of the forward passes inside, leaving out padding (attention_mask = 0)."""
        self._keep = counted_tokens(input_ids, attention_mask)
        try:
            yield
        finally:
            self._keep = None

    @torch.no_grad()
    def update(self, rank=None) -> dict[str, float]:
        """Move every router's bias by the loads counted since the last update; reset the counts.

        On a multi-rank learner (`rank`, a `distributed.RankInfo`) the counts are summed over ranks first,
        so every rank moves its copy of the bias alike. Returns `moe_bias_absmax`, the largest |b_i| over
        all layers after the update.
        """
        if rank is not None and rank.sharded:
            from services.learner.distributed import all_reduce_counts

            experts = [(layer, m.e_score_correction_bias.numel()) for layer, m in self.routers]
            self.counts = all_reduce_counts(self.counts, experts)
        for layer, module in self.routers:
            counts = self.counts.get(layer)
            if counts is None:
                continue
            bias = module.e_score_correction_bias
            bias.add_(bias_update(counts, self.speed).to(bias.device, bias.dtype))
        self.counts = {}
        return {"moe_bias_absmax": max(float(m.e_score_correction_bias.abs().max()) for _, m in self.routers)}
