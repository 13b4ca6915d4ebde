"""Evaluation metrics over scored groups (pure): pass@1 over k samples, maj@k, format rate, language
mixing rate and response length.

pass@1 is the mean over prompts of the fraction of a prompt's k samples that are correct (the
unbiased pass@1 estimator of the R1 report); maj@k takes the most common extracted answer per
prompt (ties broken by first occurrence) and checks it against the verifier's verdict on a sample
with that answer. The format rate counts completions that follow the whole template (score 1, also
under partial credit); the language-mixing rate counts completions whose chain of thought has any word
outside the target language (R1's "language mixing"), over those the language scorer judged; it is
absent when no language scorer ran.
"""

from __future__ import annotations

import re
from collections import Counter

from services.pb import rollout_pb2

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _component(c: rollout_pb2.Completion, name: str) -> float | None:
    for r in c.rewards:
        if r.name == name and r.status == rollout_pb2.REWARD_STATUS_OK:
            return r.value
    return None


def _answer(text: str) -> str | None:
    found = ANSWER.findall(text)
    return found[-1].strip() if found else None


def evaluate_groups(groups: list[rollout_pb2.ScoredGroup]) -> dict:
    """Aggregate eval metrics; unscorable completions are counted, never scored as wrong."""
    if not groups:
        raise ValueError("evaluate_groups needs at least one group")
    pass1, maj, fmt, lang, lengths, unscored = [], [], [], [], [], 0
    for g in groups:
        acc = [_component(c, "accuracy") for c in g.completions]
        scored = [a for a in acc if a is not None]
        unscored += len(acc) - len(scored)
        if scored:
            pass1.append(sum(scored) / len(scored))
        votes = Counter(a for c in g.completions if (a := _answer(c.text)) is not None)
        if votes:
            top = votes.most_common(1)[0][0]
            verdict = next(
                (x for c, x in zip(g.completions, acc) if _answer(c.text) == top and x is not None), 0.0
            )
            maj.append(verdict)
        else:
            maj.append(0.0)
        fmt += [f == 1.0 for c in g.completions if (f := _component(c, "format")) is not None]
        lang += [x < 1.0 for c in g.completions if (x := _component(c, "language")) is not None]
        lengths += [len(c.completion_token_ids) for c in g.completions]
    k = max(len(g.completions) for g in groups)
    mixing = {"language_mixing_rate": sum(lang) / len(lang)} if lang else {}
    return {
        "num_prompts": len(groups),
        "samples_per_prompt": k,
        "pass1": sum(pass1) / max(1, len(pass1)),
        f"maj@{k}": sum(maj) / len(maj),
        "format_rate": sum(fmt) / max(1, len(fmt)),
        **mixing,
        "response_len": sum(lengths) / max(1, len(lengths)),
        "unscored": unscored,
    }
