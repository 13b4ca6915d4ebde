"""Prompt templates: the exact text the policy sees before it starts reasoning.

The plain template is deliberately short. The default policy is a tiny character-level model, and
every prompt character costs context and compute in each of the G samples of a group. Real Hugging
Face models (``model.path``) ship a chat template, and `render_chat_prompt` uses it so that the
instruction arrives the way the model was tuned to read it.

The instruction names the R1 tags so that the format reward has something to ask for even before any
cold-start SFT (the R1-Zero setting).
"""

from __future__ import annotations

from typing import Any


def instruction(question: str) -> str:
    """The user turn for `question` ("What is 47+85?"): the question, then the format it must answer in."""
    if not question.strip():
        raise ValueError(f"question must not be empty, got {question!r}")
    return f"{question.strip()} Think in <think></think>, then answer in <answer></answer>."


def render_prompt(question: str) -> str:
    """Plain-text prompt; the completion starts right after "Assistant: ".

    The plain template has one line per turn, so line breaks inside the question become spaces: a
    question can never start a turn of its own ("...\nAssistant: 3").
    """
    return f"User: {instruction(' '.join(question.split()))}\nAssistant: "


def render_chat_prompt(tokenizer: Any, question: str) -> str:
    """Prompt rendered with the tokenizer's chat template, or `render_prompt` when it has none.

    `tokenizer` is a Hugging Face tokenizer (or anything with `chat_template` and
    `apply_chat_template`); the generation prompt is appended so the completion is the assistant turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        return render_prompt(question)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction(question)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    if not isinstance(rendered, str):
        raise ValueError(
            f"tokenizer.apply_chat_template returned {type(rendered).__name__}, expected str; "
            "check the tokenizer's chat_template"
        )
    return rendered
