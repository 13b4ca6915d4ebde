"""Scorer "reward_model": a learned Bradley–Terry reward model judges helpfulness and harmlessness.

DeepSeek-R1's last RL stage (§2.3.4) adds preference reward models next to the rule-based rewards,
for prompts that have no verifiable answer. For helpfulness R1 judges the *final summary* only, so
that the reward model does not interfere with the reasoning process; that is the default here
(`final_response` makes the cut, see its docstring). For harmlessness R1 judges the *whole* response,
reasoning included, since harm can hide in the chain of thought: pass `include_reasoning=True` for a
harmlessness reward model (the think content is then kept and only the tags are dropped).

`value` is the raw Bradley–Terry logit of the model, with no squashing or offset: only differences
between rewards are meaningful, and GRPO normalises rewards within each group, which removes the
offset and the scale. A completion the model could not score (an exception in its batch, a
non-finite logit) gets `ScoreStatus.ERROR` with the reason in `detail`, never a silent 0.

The model (any AutoModelForSequenceClassification directory with one output, or a plain encoder
directory, which gets an untrained scalar head, see `services.learner.reward_model`) is loaded once.
Scoring runs in batches of `batch_size` under one lock: torch modules are not safe to run from
several threads at once, and a second thread gains nothing on the same cores or GPU.
"""

from __future__ import annotations

import logging
import math
import threading

from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus

log = logging.getLogger(__name__)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def final_response(completion: str) -> str:
    """The part of `completion` a reward model judges: the text after the reasoning, tags unwrapped.

    * Everything up to and including the last `</think>` is dropped (this also covers the R1-Zero
      template, whose prompt opens the think block, so the completion has only the closing tag).
    * A `<think>` that is never closed (the completion ran out of tokens mid-thought) drops everything
      from it on: the unfinished reasoning is not a response.
    * The `<answer>`/`</answer>` tags are removed and their content kept: the reward model was trained on
      plain responses, and the format reward judges the tags separately.
    """
    if THINK_CLOSE in completion:
        completion = completion[completion.rindex(THINK_CLOSE) + len(THINK_CLOSE) :]
    elif THINK_OPEN in completion:
        completion = completion[: completion.index(THINK_OPEN)]
    return _untag(completion)


def full_response(completion: str) -> str:
    """`completion` with the think and answer tags removed and their contents kept (reasoning included)."""
    return _untag(completion.replace(THINK_OPEN, "").replace(THINK_CLOSE, "\n"))


def _untag(text: str) -> str:
    return text.replace(ANSWER_OPEN, "").replace(ANSWER_CLOSE, "").strip()


class RewardModelScorer:
    """Scorer "reward_model": `score_texts` of (prompt, final response) through a loaded reward model."""

    name = "reward_model"

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 256,
        include_reasoning: bool = False,
    ) -> None:
        """Load the model at `path` once; ValueError naming `path` when it cannot be loaded.

        `device` is "cpu", "cuda", "cuda:N" or "auto" (CUDA when present). `include_reasoning` scores
        the whole completion (R1's harmlessness rule) instead of the final answer (its helpfulness rule).
        """
        from services.learner.reward_model import load_reward_model

        if batch_size < 1:
            raise ValueError(f"reward_model batch_size={batch_size} must be >= 1")
        if max_length < 8:
            raise ValueError(f"reward_model max_length={max_length} must be >= 8 tokens")
        self._path = str(path)
        self._batch_size = batch_size
        self._max_length = max_length
        self._response = full_response if include_reasoning else final_response
        self._lock = threading.Lock()
        self._model, self._tokenizer = load_reward_model(path, device)
        self._device = next(self._model.parameters()).device
        log.info("reward model %s loaded on %s", self._path, self._device)

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        results: list[ScoreResult] = []
        for start in range(0, len(items), self._batch_size):
            results.extend(self._score_batch(items[start : start + self._batch_size]))
        return results

    def _score_batch(self, batch: list[ScoreInput]) -> list[ScoreResult]:
        from services.learner.reward_model import score_texts

        try:
            with self._lock:
                if self._model is None:
                    raise RuntimeError("RewardModelScorer is closed")
                values = score_texts(
                    self._model,
                    self._tokenizer,
                    [item.prompt for item in batch],
                    [self._response(item.completion) for item in batch],
                    batch_size=self._batch_size,
                    max_length=self._max_length,
                    device=self._device,
                )
        except Exception as e:  # any failure is reported per completion, never turned into a score
            log.warning("reward model %s failed on a batch of %d: %r", self._path, len(batch), e)
            detail = f"reward model failed: {type(e).__name__}: {e}"
            return [ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, detail) for item in batch]
        return [_result(item, value) for item, value in zip(batch, values)]

    def close(self) -> None:
        """Drop the model and tokenizer (and the CUDA cache when on a GPU); later calls report ERROR."""
        with self._lock:
            self._model = self._tokenizer = None
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def _result(item: ScoreInput, value: float) -> ScoreResult:
    if not math.isfinite(value):
        return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, f"reward model returned {value}")
    return ScoreResult(item.sample_index, value, ScoreStatus.OK)
