"""The learner: GRPO / SFT losses, batch building, the training step and checkpoints.

Modules, each one concept, none importing Redis, Ray, gRPC or vLLM (the service edge does that):
- `grpo`: advantages, clipped surrogate, k3 KL, loss aggregation (pure torch maths);
- `batch`: which scored groups train (dedupe, staleness, failures, zero variance) and their tensors;
- `logprobs`: per-token log-probs of sequences under a causal LM;
- `sft`: supervised batches with response-only loss masks, packing, an epoch iterator;
- `trainer`: `GRPOTrainer`, the optimizer step over micro-batches, weights as safetensors bytes;
- `checkpoint`: HF-loadable checkpoints plus r1forge state as JSON and safetensors.
- `distill`: soft-target batches and the CE + KL distillation loss;
- `reward_model`: Bradley-Terry training of a scalar reward model;
- `moe_metrics` / `moe_balance`: MoE expert load, and DeepSeek-V3's aux-loss-free bias balancing.
- `lora`: LoRA adapters (peft) on a frozen policy: merged weights out, adapter + base in checkpoints.

This file imports nothing so that importing the package stays cheap (torch loads on first use).
"""
