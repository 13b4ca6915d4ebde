"""Issue PromptTasks into the prompts stream, with stable ids and bounded backlog.

Ids are `(run_id, prompt_id, epoch)`: the same prompt in a new pass over the data is a new task, a
retry of the same task is not. The feeder cycles through its problems in a seeded order per epoch.
Each task carries its problem's `source` and scorer metadata, and the reward weights of that source.
"""

from __future__ import annotations

import random

from services.pb import rollout_pb2
from services.tasks.prompts import render_chat_prompt


class TaskFeeder:
    def __init__(
        self,
        problems: list,
        tokenizer,
        run_id: str,
        stage: str,
        language: str,
        seed: int,
        weights_by_source: dict[str, dict[str, float]] | None = None,
    ) -> None:
        if not problems:
            raise ValueError(f"stage {stage!r} has no prompts to issue")
        self.problems, self.tokenizer, self.weights_by_source = problems, tokenizer, weights_by_source or {}
        self.run_id, self.stage, self.language, self.seed = run_id, stage, language, seed
        self.epoch, self._order, self._pos = 0, self._shuffled(0), 0

    def state(self) -> dict:
        """Where the feeder is (for an in-stage checkpoint): its epoch and position in that epoch."""
        return {"epoch": self.epoch, "pos": self._pos}

    def restore(self, state: dict) -> None:
        self.epoch, self._pos = int(state["epoch"]), int(state["pos"])
        self._order = self._shuffled(self.epoch)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def next_tasks(
        self, n: int, group_size: int, min_policy_version: int, temperature: float | None = None
    ) -> list[rollout_pb2.PromptTask]:
        tasks = []
        for _ in range(n):
            if self._pos == len(self._order):
                self.epoch += 1
                self._order, self._pos = self._shuffled(self.epoch), 0
            problem = self.problems[self._order[self._pos]]
            tasks.append(
                make_task(
                    problem,
                    self.tokenizer,
                    self.run_id,
                    self.stage,
                    self.epoch,
                    group_size,
                    min_policy_version,
                    self.language,
                    temperature,
                    self.weights_by_source.get(problem.source),
                )
            )
            self._pos += 1
        return tasks


def make_task(
    problem,
    tokenizer,
    run_id: str,
    stage: str,
    epoch: int,
    group_size: int,
    min_policy_version: int,
    language: str,
    temperature: float | None = None,
    reward_weights: dict[str, float] | None = None,
    top_logprobs: int = 0,
) -> rollout_pb2.PromptTask:
    """The PromptTask for `problem` (a `services.tasks.problem.Problem`), rendered with the tokenizer's
    chat template; `reward_weights` None = the worker's configured defaults."""
    prompt = render_chat_prompt(tokenizer, problem.question)
    task = rollout_pb2.PromptTask(
        id=rollout_pb2.TaskId(run_id=run_id, prompt_id=problem.prompt_id, epoch=epoch),
        prompt=prompt,
        prompt_token_ids=tokenizer(prompt, add_special_tokens=False)["input_ids"],
        answer=problem.answer,
        language=language,
        source=problem.source,
        group_size=group_size,
        min_policy_version=min_policy_version,
        stage=stage,
        reward_weights=reward_weights or {},
        top_logprobs=top_logprobs,
        metadata_json=problem.metadata_json,
    )
    if temperature is not None:
        task.temperature = temperature
    return task
