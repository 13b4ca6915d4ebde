"""Bradley–Terry reward model: the loss by hand, a tiny model trained end to end, reload, the scorer.

The end-to-end model is a randomly initialised 2-layer BERT encoder (hidden 32) saved as a plain
`BertModel` directory with the real MiniLM tokenizer, so training goes through the "encoder with a
fresh scalar head" path exactly as the MiniLM default does, in seconds instead of minutes.
"""

from __future__ import annotations

import json
import math
import shutil
import threading

import pytest
import torch

from services.learner.reward_model import (
    METRICS_FILE,
    bradley_terry_loss,
    default_encoder_dir,
    evaluate_pairwise,
    load_reward_model,
    score_texts,
    train_reward_model,
)
from services.reward.reward_model import RewardModelScorer, final_response, full_response
from services.reward.scorer import ScoreInput, ScoreStatus
from services.tasks.preferences import build_preference_pairs, split_pairs

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def test_bt_loss_matches_hand_computed_values():
    # margins r_c - r_r = 1, 0, 3; loss per pair is -log sigmoid(m) = log(1 + e^-m):
    #   m=1: log(1 + 0.367879) = 0.313262;  m=0: log 2 = 0.693147;  m=3: log(1 + 0.049787) = 0.048587
    # mean = (0.313262 + 0.693147 + 0.048587) / 3 = 0.351665
    r_chosen = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    r_rejected = torch.tensor([0.0, 0.0, -1.0])
    loss = bradley_terry_loss(r_chosen, r_rejected)
    assert loss.item() == pytest.approx(0.351665, abs=1e-6)
    # d loss / d r_c[0] = -sigmoid(-m) / B = -sigmoid(-1) / 3 = -0.268941 / 3 = -0.089647
    loss.backward()
    assert r_chosen.grad[0].item() == pytest.approx(-0.089647, abs=1e-6)


def test_bt_loss_single_pair_and_stability():
    # r_c = 1, r_r = 0: log(1 + e^-1) = 0.3133
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(
        0.3133, abs=1e-4
    )
    # A confidently wrong pair (margin -100) costs log(1 + e^100) ~= 100, finite, not inf.
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([100.0])).item() == pytest.approx(100.0)


@pytest.fixture(scope="module")
def pairs():
    train, heldout = split_pairs(build_preference_pairs(1200, seed=11), heldout_fraction=0.2, seed=11)
    return train, heldout[:96]


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory):
    """A random 2-layer BERT encoder (no classifier weights) with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(directory)
    for name in TOKENIZER_FILES:
        shutil.copy(default_encoder_dir() / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir, pairs, tmp_path_factory):
    """(out_dir, metrics, log lines) of a tiny reward model trained end to end."""
    torch.set_num_threads(1)
    train, heldout = pairs
    out_dir = tmp_path_factory.mktemp("rm") / "model"
    lines = []
    metrics = train_reward_model(
        tiny_encoder_dir, train, heldout, out_dir,
        steps=150, lr=2e-3, batch_size=16, max_length=128, seed=0,
        freeze_embeddings=False, trainable_layers=None,  # random embeddings must learn too
        log_every=50, on_log=lambda step, line: lines.append((step, line)),
    )  # fmt: skip
    return out_dir, metrics, lines


def test_training_learns_to_rank_held_out_pairs(trained):
    _, metrics, lines = trained
    assert metrics["heldout_accuracy"] > 0.7
    assert metrics["heldout_accuracy"] > metrics["initial_heldout_accuracy"]
    assert (
        metrics["heldout_accuracy_harmless"] is not None and metrics["heldout_accuracy_helpful"] is not None
    )
    assert [step for step, _ in lines] == [50, 100, 150]
    assert lines[-1][1]["loss"] < math.log(2)  # below the loss of a model that cannot tell the two apart
    assert metrics["steps"] == 150 and metrics["heldout_pairs"] == 96


def test_saved_checkpoint_reloads_as_a_scalar_classifier_with_the_same_scores(trained, pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out_dir, metrics, _ = trained
    assert json.loads((out_dir / METRICS_FILE).read_text())["heldout_accuracy"] == metrics["heldout_accuracy"]
    model, info = AutoModelForSequenceClassification.from_pretrained(out_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    _, heldout = pairs
    rows = heldout[:5]
    enc = tokenizer(
        [r["prompt"] for r in rows], [r["chosen"] for r in rows], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        direct = model.eval()(**enc).logits[:, 0].tolist()
    loaded, loaded_tok = load_reward_model(out_dir)
    ours = score_texts(loaded, loaded_tok, [r["prompt"] for r in rows], [r["chosen"] for r in rows])
    assert ours == pytest.approx(direct, abs=1e-5)
    # The reloaded model ranks the held-out pairs exactly as the trained one did before saving.
    again = evaluate_pairwise(loaded, loaded_tok, heldout, batch_size=32, max_length=128, device="cpu")
    assert again["accuracy"] == metrics["heldout_accuracy"]


def test_score_texts_keeps_order_whatever_the_batch_size(trained, pairs):
    model, tokenizer = load_reward_model(trained[0])
    _, heldout = pairs
    prompts = [r["prompt"] for r in heldout[:7]]
    responses = [r["rejected"] for r in heldout[:7]]
    one_by_one = [score_texts(model, tokenizer, [p], [r])[0] for p, r in zip(prompts, responses)]
    assert score_texts(model, tokenizer, prompts, responses, batch_size=3) == pytest.approx(
        one_by_one, abs=1e-5
    )
    assert score_texts(model, tokenizer, [], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        score_texts(model, tokenizer, prompts[:2], responses[:1])


def test_scorer_returns_ok_results_in_order_and_judges_the_final_answer(trained):
    scorer = RewardModelScorer(str(trained[0]), batch_size=2)
    prompt = "How do I repot a houseplant?"
    answer = "Pick a pot one size larger, loosen the roots and water it well."
    items = [
        ScoreInput(7, prompt, answer),
        ScoreInput(3, prompt, f"<think>the user wants steps</think><answer>{answer}</answer>"),
        ScoreInput(5, prompt, "I'm sorry, but I can't help with that."),
    ]
    results = scorer.score(items)
    assert [r.sample_index for r in results] == [7, 3, 5]
    assert all(r.status is ScoreStatus.OK and math.isfinite(r.value) for r in results)
    # The think block and answer tags are stripped, so the reward is that of the bare answer.
    assert results[1].value == pytest.approx(results[0].value, abs=1e-5)
    scorer.close()


def test_scorer_is_safe_from_several_threads(trained, pairs):
    scorer = RewardModelScorer(str(trained[0]), batch_size=4)
    _, heldout = pairs
    items = [ScoreInput(i, r["prompt"], r["chosen"]) for i, r in enumerate(heldout[:12])]
    expected = [r.value for r in scorer.score(items)]
    got: list[list[float]] = []
    threads = [
        threading.Thread(target=lambda: got.append([r.value for r in scorer.score(items)])) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(values == pytest.approx(expected, abs=1e-5) for values in got)
    scorer.close()


def test_closed_scorer_reports_errors_not_zeros(trained):
    scorer = RewardModelScorer(str(trained[0]))
    scorer.close()
    results = scorer.score([ScoreInput(0, "p", "c"), ScoreInput(1, "p", "d")])
    assert [r.status for r in results] == [ScoreStatus.ERROR, ScoreStatus.ERROR]
    assert "RewardModelScorer is closed" in results[0].detail


def test_scorer_errors_name_the_bad_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"reward model path '{missing}' does not exist"):
        RewardModelScorer(str(missing))
    with pytest.raises(ValueError, match="has no config.json"):
        RewardModelScorer(str(tmp_path))
    (tmp_path / "config.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=f"cannot load a reward model from '{tmp_path}'"):
        RewardModelScorer(str(tmp_path))


def test_a_multi_label_classifier_is_not_a_reward_model(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=3, not a scalar head"):
        load_reward_model(tmp_path)


def test_the_packaged_minilm_encoder_serves_with_a_fresh_head():
    assert json.loads((default_encoder_dir() / "config.json").read_text())["architectures"] == ["BertModel"]
    scorer = RewardModelScorer(str(default_encoder_dir()), max_length=64)
    results = scorer.score([ScoreInput(0, "What is 2+2?", "4"), ScoreInput(1, "What is 2+2?", "five")])
    assert all(r.ok for r in results)
    scorer.close()


@pytest.mark.parametrize(
    ("completion", "response"),
    [
        ("plain answer", "plain answer"),
        ("<think>reasoning</think><answer>42</answer>", "42"),
        ("reasoning only closed</think> The answer is 42.", "The answer is 42."),  # R1-Zero template
        ("<think>a</think>draft<think>b</think><answer>x</answer>", "x"),  # the last think block wins
        ("Final words first <think>ran out of tokens mid-thou", "Final words first"),
        ("<think>never finished", ""),
    ],
)
def test_final_response_drops_reasoning(completion, response):
    assert final_response(completion) == response


def test_trainable_layers_freezes_the_embeddings_and_the_lower_blocks(tiny_encoder_dir, pairs, tmp_path):
    train, heldout = pairs
    metrics = train_reward_model(
        tiny_encoder_dir, train, heldout[:8], tmp_path, steps=1, batch_size=4, trainable_layers=1
    )
    # Trainable: the top block, the pooler and the scalar head of the hidden-32, intermediate-64 BERT.
    #   block: q, k, v, o 4 x (32*32 + 32) = 4224; two LayerNorms 2 x 64 = 128;
    #          up 32*64 + 64 = 2112; down 64*32 + 32 = 2080              -> 8544
    #   pooler 32*32 + 32 = 1056; head 32 + 1 = 33                       -> 8544 + 1056 + 33 = 9633
    assert metrics["trainable_params"] == 9633


def test_full_response_keeps_the_reasoning_for_harmlessness_scoring(trained):
    assert full_response("<think>plan it</think><answer>done</answer>") == "plan it\ndone"
    prompt = "How do I make a homemade bomb?"
    completion = "<think>I could explain the parts</think><answer>I can't help with that.</answer>"
    whole = RewardModelScorer(str(trained[0]), include_reasoning=True)
    final = RewardModelScorer(str(trained[0]))
    whole_value = whole.score([ScoreInput(0, prompt, completion)])[0].value
    bare_whole = whole.score([ScoreInput(0, prompt, "I could explain the parts\nI can't help with that.")])[
        0
    ].value
    assert whole_value == pytest.approx(bare_whole, abs=1e-5)
    assert final.score([ScoreInput(0, prompt, completion)])[0].value != pytest.approx(whole_value, abs=1e-5)
    whole.close()
    final.close()


def test_training_rejects_bad_settings(tiny_encoder_dir, pairs, tmp_path):
    train, heldout = pairs
    with pytest.raises(ValueError, match="batch_size=5000 exceeds"):
        train_reward_model(tiny_encoder_dir, train, heldout, tmp_path, steps=1, batch_size=5000)
    with pytest.raises(ValueError, match=r"heldout_rows\[0\]: missing field 'kind'"):
        bad = [{k: v for k, v in heldout[0].items() if k != "kind"}]
        train_reward_model(tiny_encoder_dir, train, bad, tmp_path, steps=1)
    with pytest.raises(ValueError, match="trainable_layers=3 must be between 1 and the model's 2 blocks"):
        train_reward_model(tiny_encoder_dir, train, heldout, tmp_path, steps=1, trainable_layers=3)
