"""The character-level tokenizer: lossless on printable ASCII, R1 tags as single non-special tokens."""

from __future__ import annotations

import random

import pytest

from services.models.tokenizer import BOS, CHARACTERS, EOS, PAD, R1_TAGS, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    # Loaded back from disk the way the learner and vLLM load it, not the object build_tokenizer returned.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def test_vocabulary_is_specials_then_tags_then_characters(tok):
    # 3 specials + 4 R1 tags + 97 printable characters (100 in string.printable minus \x0b \x0c \r).
    assert len(CHARACTERS) == 97
    assert len(tok) == 3 + 4 + 97
    assert [tok.pad_token, tok.bos_token, tok.eos_token] == [PAD, BOS, EOS]
    assert tok.convert_tokens_to_ids([PAD, BOS, EOS, *R1_TAGS]) == [0, 1, 2, 3, 4, 5, 6]


def test_every_printable_character_is_one_token(tok):
    text = "".join(CHARACTERS)
    ids = tok(text)["input_ids"]
    assert len(ids) == len(CHARACTERS)  # one id per character, no BOS/EOS added
    assert len(set(ids)) == len(CHARACTERS)
    assert tok.pad_token_id not in ids  # nothing fell back to the unknown token
    assert tok.decode(ids) == text


def test_arbitrary_ascii_round_trips(tok):
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(1, 60)))
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text)
        assert tok.decode(ids) == text


def test_r1_tags_are_single_tokens_and_survive_skip_special_tokens(tok):
    text = "<think>1 + 2 = 3\n  so\t3</think> <answer>3</answer>"
    ids = tok(text)["input_ids"]
    tag_ids = tok.convert_tokens_to_ids(R1_TAGS)
    # <think> + 16 characters ("1 + 2 = 3" is 9, "\n", 2 spaces, "so", "\t", "3")
    #   + </think> + " " + <answer> + "3" + </answer> = 1 + 16 + 1 + 1 + 1 + 1 + 1 = 22
    assert len(ids) == 1 + 16 + 1 + 1 + 1 + 1 + 1
    assert [i for i in ids if i in tag_ids] == [tag_ids[0], tag_ids[1], tag_ids[2], tag_ids[3]]
    for tag in R1_TAGS:
        assert tok(tag)["input_ids"] == [tok.convert_tokens_to_ids(tag)]
    # What the reward services see: BOS/EOS dropped, the tags and all whitespace kept verbatim.
    framed = [tok.bos_token_id, *ids, tok.eos_token_id]
    assert tok.decode(framed, skip_special_tokens=True) == text
    assert tok.decode(framed) == BOS + text + EOS


def test_tag_lookalikes_split_into_characters(tok):
    # Only the exact tag is one token; a broken tag is ordinary text, character by character.
    assert len(tok("<thinking>")["input_ids"]) == len("<thinking>")
    assert len(tok("</ answer>")["input_ids"]) == len("</ answer>")
