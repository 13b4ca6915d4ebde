"""Evaluation metrics over scored groups (pure): pass@1 over k samples, pass@k, maj@k, format rate,
language mixing rate and response length, overall and per prompt source.

Correctness is the task's accuracy scorer (`accuracy` = math-verify, `gym` = the reasoning-gym item's
own check); a score of 1 is correct (reasoning-gym's partial scores below 1 count as wrong for pass@k
and maj@k, and at their value in pass@1, the mean score).

pass@1 is the mean over prompts of the fraction of a prompt's k samples that are correct (the unbiased
pass@1 estimator of the R1 report); `pass1_stderr` is its standard error over prompts (the sample
standard deviation of the per-prompt fractions over sqrt(prompts)), the yardstick for "did training
move it". pass@j for j <= n samples is Codex's unbiased estimator 1 - C(n-c, j) / C(n, j) averaged over
prompts (c correct of n). maj@k takes the most common extracted answer (the verifier's
`extract_answer`) per prompt (ties broken by first occurrence) and checks it against the verifier's
verdict on a sample with
that answer. The format rate counts completions that follow the whole template (score 1, also under
partial credit); the language-mixing rate counts completions whose chain of thought has any word outside
the target language (R1's "language mixing"), over those the language scorer judged; it is absent when
no language scorer ran.
"""

from __future__ import annotations

import math
from collections import Counter

from services.pb import rollout_pb2
from services.reward.math_verifier import extract_answer


def _component(c: rollout_pb2.Completion, name: str) -> float | None:
    for r in c.rewards:
        if r.name == name and r.status == rollout_pb2.REWARD_STATUS_OK:
            return r.value
    return None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values` (sample standard deviation / sqrt(n)); 0 below 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def evaluate_groups(
    groups: list[rollout_pb2.ScoredGroup], accuracy: str = "accuracy", untagged: str = "none"
) -> dict:
    """Aggregate eval metrics, judged by the `accuracy` scorer; with several prompt sources, the same
    metrics per source under "by_source". Unscorable completions are counted, never scored as wrong."""
    out = _metrics(groups, accuracy, untagged)
    sources = sorted({g.source for g in groups})
    if len(sources) > 1:
        out["by_source"] = {
            s: _metrics([g for g in groups if g.source == s], accuracy, untagged) for s in sources
        }
    return out


def _metrics(groups: list[rollout_pb2.ScoredGroup], accuracy: str, untagged: str) -> dict:
    if not groups:
        raise ValueError("evaluate_groups needs at least one group")
    k = max(len(g.completions) for g in groups)
    ks = sorted({j for j in (1, 2, 4, 8, 16, 32, 64) if j <= k} | {k})
    pass1, pass_k, maj, fmt, lang, lengths, unscored = [], {j: [] for j in ks}, [], [], [], [], 0
    for g in groups:
        acc = [_component(c, accuracy) for c in g.completions]
        scored = [a for a in acc if a is not None]
        unscored += len(acc) - len(scored)
        if scored:
            pass1.append(sum(scored) / len(scored))
            correct = sum(a == 1.0 for a in scored)
            for j in ks:
                if j <= len(scored):
                    pass_k[j].append(pass_at_k(len(scored), correct, j))
        votes = Counter(a for c in g.completions if (a := extract_answer(c.text, untagged)) is not None)
        if votes:
            top = votes.most_common(1)[0][0]
            verdict = next(
                (
                    x
                    for c, x in zip(g.completions, acc)
                    if extract_answer(c.text, untagged) == top and x is not None
                ),
                0.0,
            )
            maj.append(float(verdict == 1.0))
        else:
            maj.append(0.0)
        fmt += [f == 1.0 for c in g.completions if (f := _component(c, "format")) is not None]
        lang += [x < 1.0 for c in g.completions if (x := _component(c, "language")) is not None]
        lengths += [len(c.completion_token_ids) for c in g.completions]
    mixing = {"language_mixing_rate": sum(lang) / len(lang)} if lang else {}
    return {
        "num_prompts": len(groups),
        "samples_per_prompt": k,
        "pass1": sum(pass1) / max(1, len(pass1)),
        "pass1_stderr": standard_error(pass1),
        **{f"pass@{j}": sum(v) / len(v) for j, v in pass_k.items() if v and j > 1},
        f"maj@{k}": sum(maj) / len(maj),
        "format_rate": sum(fmt) / max(1, len(fmt)),
        **mixing,
        "response_len": sum(lengths) / max(1, len(lengths)),
        "unscored": unscored,
    }
