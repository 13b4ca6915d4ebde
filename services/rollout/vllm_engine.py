"""The vLLM sampling engine, in process, with weights swapped into the running engine.

Why it is built this way:
- The engine runs in the rollout actor's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so a
  weight swap is a direct call, and a Ray actor method never interleaves a swap with a generate:
  the sampler sees one version or the next, never a mix.
- New weights go through `worker.reload_weights(..., is_checkpoint_format=True)`, vLLM's layerwise
  reload, which runs each layer's post-load processing again. Plain `model.load_weights` skips that
  processing, and on the CPU backend it is where linear weights are packed for oneDNN.
- Tied embeddings: the checkpoint has no `lm_head.weight`, so the layerwise reload never re-processes
  the LM head, and on the CPU backend the LM head keeps its packed copy of the OLD embedding (found
  by a parity test: 1e-2 log-prob error). `_reload_weights` re-runs the LM head's post-load
  processing after a tied reload; the parity test covers both cases.
- Per-request sampling seeds crash the CPU backend in vLLM 0.32 ("CPU Generator does not use
  offset"), so the engine is seeded once at construction instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from services.rollout.engine import SampledCompletion, SamplingSpec

log = logging.getLogger(__name__)


def _reload_weights(worker, items: list) -> int:
    """Runs inside the vLLM worker: load checkpoint-format weights, re-process a tied LM head."""
    worker.reload_weights(weights_iterator=iter(items), is_checkpoint_format=True)
    model = worker.get_model()
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head"):
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)
    return len(items)


class VllmEngine:
    def __init__(self, model_dir: str | Path, cfg) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if cfg.device == "cpu":
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        from vllm import LLM

        kwargs = dict(
            model=str(model_dir),
            dtype="float32" if cfg.device == "cpu" else "auto",
            max_model_len=cfg.max_model_len,
            enforce_eager=True,
            seed=cfg.seed,
            max_num_seqs=cfg.max_num_seqs,
            # Behaviour log-probs of the distribution actually sampled from (after temperature).
            logprobs_mode="processed_logprobs",
        )
        if cfg.device == "cpu":
            # Sized by config, never by vLLM's default share of the node's memory.
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * 2**30)
        else:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[SampledCompletion]]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_new_tokens,
            logprobs=0,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        groups = []
        for out in outputs:
            group = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [c.logprobs[i][tok].logprob for i, tok in enumerate(ids)]
                reason = "length" if c.finish_reason == "length" else "stop"
                group.append(SampledCompletion(ids, lps, c.text, reason))
            groups.append(group)
        return groups

    def load_weights(self, weights: dict) -> None:
        loaded = self.llm.collective_rpc(_reload_weights, args=(list(weights.items()),))
        self.llm.reset_prefix_cache()
        log.debug("reloaded %s tensors into vLLM", loaded)

    def prompt_logprobs(self, token_ids: list[int], k: int) -> list[dict[int, float]]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=k)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=token_ids)], params, use_tqdm=False)[0]
        return [{tid: lp.logprob for tid, lp in (d or {}).items()} for d in out.prompt_logprobs]

    def close(self) -> None:
        del self.llm
