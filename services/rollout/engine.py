"""The sampling-engine interface and its one factory.

A rollout worker needs three things from an engine: sample G completions per prompt with the
behaviour log-probs of every sampled token, swap in new policy weights atomically, and (for the
parity check) report top-k log-probs of a fixed sequence. vLLM is the real engine; transformers'
`generate` is the fallback for architectures or devices vLLM cannot serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

ENGINES = ("vllm", "hf")


@dataclass(frozen=True)
class SamplingSpec:
    n: int  # completions per prompt (G)
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_logprobs: int = 0  # k most likely tokens' log-probs per generated position (distillation teachers)


@dataclass
class SampledCompletion:
    token_ids: list[int]  # generated ids, prompt excluded
    logprobs: list[float]  # behaviour log-prob of each generated token, same length
    text: str
    finish_reason: str  # "stop" or "length"
    # With spec.top_logprobs = k: per generated position, the k most likely token ids -> log-probs of the
    # sampling distribution (after temperature), most likely first. Empty otherwise.
    top_logprobs: list[dict[int, float]] = field(default_factory=list)


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[SampledCompletion]]:
        """Sample spec.n completions for each prompt (token ids); one list per prompt."""

    def load_weights(self, weights) -> None:
        """Replace the policy weights before the next generate: a dict of HF checkpoint names -> tensors,
        or an iterable of (name, tensor) pairs consumed once (the buckets of a weight sync, streamed)."""

    def prompt_logprobs(self, token_ids: list[int], k: int) -> list[dict[int, float]]:
        """Top-k log-probs at every position of a fixed sequence (position 0 is empty)."""

    def close(self) -> None: ...


def make_engine(name: str, model_dir: str | Path, cfg) -> RolloutEngine:
    """Build the named engine (`rollout.engine`) over the checkpoint in `model_dir`."""
    if name == "vllm":
        from services.rollout.vllm_engine import VllmEngine

        return VllmEngine(model_dir, cfg)
    if name == "hf":
        from services.rollout.hf_engine import HfEngine

        return HfEngine(model_dir, cfg)
    raise ValueError(f"rollout.engine={name!r} is not an engine; choose one of {list(ENGINES)}")
