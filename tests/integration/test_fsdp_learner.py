"""The learner on 2 ranks (FSDP2 over gloo, one process per rank) takes the same steps as on 1 rank
(the 1-rank reference runs in the test's own process).

Same batch, same seed: the GRPO and SFT losses and every updated weight agree within 1e-5, for a dense
Qwen-style policy with tied embeddings and KL to a (sharded) reference, and for the DeepSeek-style MLA + MoE
policy with its expert-bias balancer on (expert loads summed over ranks). The batch deals 5 sequences in
micro-batches of 2, so one rank runs a zero-weight repeat. A sharded checkpoint (DCP shards + the
consolidated HF export) saved after one step resumes on 2 new ranks and continues exactly as an
uninterrupted single-rank learner.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import fsdp_rank_main  # same directory (rootdir-relative imports)
import pytest
import torch
from safetensors.torch import load_file

from services.learner.logprobs import token_logprobs
from services.pb import rollout_pb2

pytestmark = pytest.mark.integration

RANK_MAIN = Path(__file__).with_name("fsdp_rank_main.py")
REPO = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batches(model_dir: str, path: Path) -> None:
    """5 sequences in 2 groups with on-policy behaviour log-probs, plus 5 SFT examples."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    groups = []
    for g, (n, rewards) in enumerate([(3, (1.0, 0.0, 0.5)), (2, (0.0, 1.0))]):
        prompt = torch.randint(3, vocab, (4 + g,), generator=gen).tolist()
        group = rollout_pb2.ScoredGroup(id=rollout_pb2.TaskId(run_id="r", prompt_id=f"p{g}"),
                                        prompt_token_ids=prompt, policy_version=0)  # fmt: skip
        for i in range(n):
            completion = torch.randint(3, vocab, (3 + 2 * i,), generator=gen).tolist()
            row = torch.tensor([prompt + completion])
            with torch.no_grad():
                lp = token_logprobs(model, row, torch.ones_like(row))[0, len(prompt) :]
            group.completions.add(sample_index=i, completion_token_ids=completion, logprobs=lp.tolist(),
                                  total_reward=rewards[i], status=rollout_pb2.REWARD_STATUS_OK)  # fmt: skip
        groups.append(torch.tensor(list(group.SerializeToString()), dtype=torch.uint8))
    prompts = [torch.randint(3, vocab, (3 + i,), generator=gen) for i in range(5)]
    completions = [torch.randint(3, vocab, (2 + i,), generator=gen) for i in range(5)]
    torch.save({"groups": groups, "sft_prompts": prompts, "sft_completions": completions}, path)


def _run(tmp: Path, tag: str, world: int, model_dir: str, learner: dict, plan: list, resume_dir=None):
    """Run the plan on `world` rank processes (the 1-rank reference in this process: it forms no group);
    rank 0's (metrics, weights)."""
    port, procs = _port(), []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for rank in range(world):
        spec = {
            "rank": rank, "world_size": world, "port": port, "model_dir": model_dir, "learner": learner,
            "batches": str(tmp / "batches.pt"), "plan": plan, "out": str(tmp / tag), "resume_dir": resume_dir,
        }  # fmt: skip
        spec_path = tmp / f"{tag}-rank{rank}.json"
        spec_path.write_text(json.dumps(spec))
        if world == 1:
            threads = torch.get_num_threads()  # the trainer sets the learner's; later tests keep theirs
            try:
                fsdp_rank_main.main(str(spec_path))
            finally:
                torch.set_num_threads(threads)
            continue
        procs.append(subprocess.Popen([sys.executable, str(RANK_MAIN), str(spec_path)], env=env))
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0] * len(procs), f"{tag}: rank exit codes {codes}"
    return json.loads((tmp / f"{tag}.json").read_text()), load_file(str(tmp / f"{tag}.safetensors"))


def _assert_same(one, two, keys):
    (m1, w1), (m2, w2) = one, two
    assert len(m1) == len(m2)
    for a, b in zip(m1, m2):
        for key in keys:
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), (key, a[key], b[key])
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


LORA = {"lora": {"rank": 4, "alpha": 8.0}}
CASES = {
    "tiny-qwen": ("tiny-qwen", True, {"kl_coef": 0.02}),
    "tiny-deepseek": ("tiny-deepseek", False, {"kl_coef": 0.0, "moe_bias_update_speed": 0.01}),
    # LoRA: only the adapters train (sharded with their base layers); KL to the base, adapter off.
    "tiny-qwen-lora": ("tiny-qwen", True, {"kl_coef": 0.02, **LORA}),
    "tiny-deepseek-lora": ("tiny-deepseek", False, {"kl_coef": 0.02, **LORA}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_take_the_same_steps_as_one(tiny_zoo, tmp_path, name):
    zoo_name, tie, extra = CASES[name]
    _, model_dir = tiny_zoo(tie, zoo_name)
    _batches(str(model_dir), tmp_path / "batches.pt")
    learner = {"lr": 1e-3, "micro_batch_size": 2, "num_threads": 1, "seed": 0, **extra}
    plan = ["grpo", "sft", "grpo"]
    one = _run(tmp_path, "one", 1, str(model_dir), learner, plan)
    two = _run(tmp_path, "two", 2, str(model_dir), learner, plan)
    _assert_same(one, two, ["loss", "grad_norm", "tokens"])
    # The steps moved the weights (the comparison is not between two untouched models).
    base = load_file(str(Path(model_dir) / "model.safetensors"))
    moved = [n for n in base if n in one[1] and not torch.equal(base[n], one[1][n])]
    if "lora" in extra:  # merged weights: the adapted projections moved, embeddings and norms did not
        assert moved and all("proj" in n or "experts" in n or "bias" in n for n in moved), moved
    else:
        assert len(moved) > len(base) // 2, moved


@pytest.mark.parametrize("adapter", [{}, LORA], ids=["full", "lora"])
def test_a_sharded_checkpoint_resumes_on_new_ranks(tiny_zoo, tmp_path, adapter):
    _, model_dir = tiny_zoo(True, "tiny-qwen")
    _batches(str(model_dir), tmp_path / "batches.pt")
    learner = {"lr": 1e-3, "micro_batch_size": 2, "num_threads": 1, "seed": 0, "kl_coef": 0.02, **adapter}
    ckpt = tmp_path / "ckpt"
    uninterrupted = _run(tmp_path, "one", 1, str(model_dir), learner, ["grpo", "grpo"])
    first = _run(tmp_path, "first", 2, str(model_dir), learner, ["grpo", f"save:{ckpt}"])
    assert (ckpt / "trainer_state" / "dcp" / ".metadata").is_file()
    assert (ckpt / "adapter").is_dir() == bool(adapter)
    state = json.loads((ckpt / "r1forge_state.json").read_text())
    assert state["num_ranks"] == 2 and state["policy_version"] == 1
    # The consolidated export is the full policy, as one rank would have it after that step.
    exported = load_file(str(ckpt / "model.safetensors"))
    for name, tensor in first[1].items():
        torch.testing.assert_close(exported[name], tensor, atol=0, rtol=0)
    resumed = _run(tmp_path, "resumed", 2, str(model_dir), learner, ["grpo"], resume_dir=str(ckpt))
    _assert_same((uninterrupted[0][1:], uninterrupted[1]), resumed, ["loss", "grad_norm", "policy_version"])
