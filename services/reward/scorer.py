"""The scorer interface every reward service wraps, and the one factory that builds scorers by name.

A scorer turns a batch of completions into one `ScoreResult` per completion. It never invents a
number for a completion it could not judge: a verifier that hung reports `ScoreStatus.TIMEOUT`, one
that raised reports `ScoreStatus.ERROR`, and the client reports `ScoreStatus.UNAVAILABLE` when the
service could not be reached. Only `ScoreStatus.OK` carries a meaningful `value` (the learner gives
an unscorable completion no advantage at all, instead of a reward of 0 that would bias the group
baseline).

This module is pure: no grpc, ray, redis or vllm. The gRPC servicer and client convert between these
dataclasses and the protobuf messages of `protos/r1forge/v1/reward.proto`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

SCORER_NAMES = ("accuracy", "format", "language", "reward_model", "gym")


class ScoreStatus(enum.StrEnum):
    """Whether a score could be computed; mirrors the proto enum `r1forge.v1.RewardStatus`."""

    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class ScoreInput:
    """One completion to score, with the context a scorer needs."""

    # Index of the completion within its group, echoed back in the result.
    sample_index: int
    # Rendered prompt text.
    prompt: str
    # Completion text to score.
    completion: str
    # Reference answer for verifiers ("" when there is none).
    answer: str = ""
    # Target language of the reasoning (ISO 639-1); "" = the prompt's own language.
    language: str = ""
    # JSON object the scorer needs besides the answer (a reasoning-gym entry); "" when none.
    metadata_json: str = ""


@dataclass(frozen=True)
class ScoreResult:
    """The score of one completion; `value` is meaningful only when `status` is OK."""

    # sample_index copied from the input.
    sample_index: int
    # The score (0.0 whenever status is not OK; readers must check status first).
    value: float
    # Whether the score could be computed.
    status: ScoreStatus
    # Reason for a non-OK status, or a short note for an OK one ("" when there is nothing to say).
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ScoreStatus.OK


class Scorer(Protocol):
    """Scores batches of completions. Implementations must be safe to call from several threads."""

    # Name of the scorer (one of SCORER_NAMES); also the name of the service that wraps it.
    name: str

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        """Return one result per item, in the same order."""
        ...

    def close(self) -> None:
        """Release processes and threads; the scorer must not be used afterwards."""
        ...


def make_scorer(name: str, cfg: Any) -> Scorer:
    """Build the scorer called `name` from a RewardConfig-shaped `cfg` (dataclass or DictConfig).

    Raises ValueError naming the valid names when `name` is unknown.
    """
    # Imports are local: math_verifier imports this module for the dataclasses above.
    if name == "accuracy":
        from services.reward.math_verifier import MathVerifierScorer

        return MathVerifierScorer(cfg.verify_workers, cfg.verify_timeout_s, cfg.untagged_answer)
    if name == "gym":
        from services.reward.gym_scorer import GymScorer

        return GymScorer(cfg.verify_workers, cfg.verify_timeout_s, cfg.untagged_answer)
    if name == "format":
        from services.reward.format_checker import FormatScorer

        return FormatScorer(strict=cfg.format_strict, partial_credit=cfg.format_partial_credit)
    if name == "language":
        from services.reward.language import LanguageScorer

        return LanguageScorer(list(cfg.languages), max_words=cfg.language_max_words)
    if name == "reward_model":
        from services.reward.reward_model import RewardModelScorer

        if not cfg.reward_model_path:
            raise ValueError(
                "reward.reward_model_path is unset: train one with `r1forge pipeline=reward_model` (or put "
                "the reward_model stage before the stages that use it) and pass its checkpoint directory"
            )
        return RewardModelScorer(
            cfg.reward_model_path,
            device=cfg.rm_device,
            batch_size=cfg.rm_batch_size,
            max_length=cfg.rm_max_length,
        )
    raise ValueError(f"unknown reward scorer {name!r}: valid names are {', '.join(SCORER_NAMES)}")
