"""The transformers sampling engine: `generate` with per-token log-probs, for what vLLM cannot serve.

Slower than vLLM, but it runs any architecture transformers implements on any device, which makes it
the fallback (`rollout.engine=hf`) and an independent reference in tests. Log-probs are taken from the
processed scores (after temperature and top-p), the same distribution the tokens were sampled from,
matching the vLLM engine's `processed_logprobs`.
"""

from __future__ import annotations

from pathlib import Path

from services.rollout.engine import SampledCompletion, SamplingSpec


class HfEngine:
    def __init__(self, model_dir: str | Path, cfg) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(cfg.seed)
        self.device = cfg.device
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(cfg.device)
        self.model.eval()
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[SampledCompletion]]:
        return [self._generate_one(p, spec) for p in prompts]

    def _generate_one(self, prompt: list[int], spec: SamplingSpec) -> list[SampledCompletion]:
        import torch

        ids = torch.tensor([prompt], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=spec.temperature > 0,
                temperature=max(spec.temperature, 1e-5),
                top_p=spec.top_p,
                top_k=0,
                max_new_tokens=spec.max_new_tokens,
                num_return_sequences=spec.n,
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, len(prompt) :]  # [G, T]
        scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # [G, T, V] processed scores
        token_lp = scores.gather(-1, new.unsqueeze(-1)).squeeze(-1)  # [G, T]
        k = spec.top_logprobs
        top = scores.topk(k, dim=-1) if k else None  # values/indices [G, T, k]
        group = []
        for g, (row, lps) in enumerate(zip(new.tolist(), token_lp.tolist())):
            n = row.index(self.eos_id) + 1 if self.eos_id in row else len(row)
            reason = "stop" if self.eos_id in row[:n] else "length"
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            tops = (
                [dict(zip(i, v)) for i, v in zip(top.indices[g, :n].tolist(), top.values[g, :n].tolist())]
                if k
                else []
            )
            group.append(SampledCompletion(row[:n], lps[:n], text, reason, tops))
        return group

    def load_weights(self, weights) -> None:
        """Copy the learner's weights (a dict, or an iterable of (name, tensor) consumed once) into the
        model, one tensor at a time; a name the model lacks, or one it needs that never came, is an error."""
        import torch

        params = self.model.state_dict()  # name -> tensor sharing the parameter's storage
        loaded = set()
        with torch.no_grad():
            for name, tensor in weights.items() if isinstance(weights, dict) else weights:
                if name not in params:
                    raise ValueError(f"weights do not match the policy: unexpected={[name]}")
                if params[name].shape != tensor.shape:
                    raise ValueError(
                        f"weights do not match the policy: {name} has shape {list(tensor.shape)}, "
                        f"the policy's is {list(params[name].shape)}"
                    )
                params[name].copy_(tensor)
                loaded.add(name)
        tied = getattr(self.model.config, "tie_word_embeddings", False)
        missing = sorted(k for k in set(params) - loaded if not (tied and k == "lm_head.weight"))
        if missing:
            raise ValueError(f"weights do not match the policy: missing={missing}")

    def prompt_logprobs(self, token_ids: list[int], k: int) -> list[dict[int, float]]:
        import torch

        with torch.no_grad():
            logits = self.model(torch.tensor([token_ids], device=self.device)).logits[0].float()
        lp = logits.log_softmax(-1)  # [T, V]
        top = lp[:-1].topk(k, dim=-1)
        result: list[dict[int, float]] = [{}]
        for pos, (vals, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            entry = dict(zip(idx, vals))
            entry[token_ids[pos]] = lp[pos - 1, token_ids[pos]].item()
            result.append(entry)
        return result

    def close(self) -> None:
        del self.model
