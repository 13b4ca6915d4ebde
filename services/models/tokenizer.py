"""A character-level tokenizer made locally, saved in the Hugging Face fast-tokenizer format.

Nothing may be downloaded at run time, so the zoo policies need a tokenizer the project can build
itself. One token per printable ASCII character keeps the vocabulary tiny (the embedding is most of a
tiny model) and makes every arithmetic digit its own token. The R1 tags are single tokens so that the
format is cheap to learn. The files written are the standard `tokenizer.json` + config, so both
transformers (`AutoTokenizer`) and vLLM load them like any hub tokenizer.
"""

from __future__ import annotations

import string
from pathlib import Path

BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
R1_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHARACTERS = sorted(set(string.printable) - set("\x0b\x0c\r"))  # 97 printable characters


def build_tokenizer(out_dir: str | Path):
    """Create the character-level tokenizer and save it to `out_dir`; return the loaded fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, *R1_TAGS, *CHARACTERS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    # Split into single characters, keeping whitespace as tokens; decoding joins them back unchanged.
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    # The R1 tags are added tokens so they match before character splitting; not "special", so
    # decoding with skip_special_tokens keeps them in the text the reward services see.
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    tok.add_tokens(R1_TAGS, special_tokens=False)
    tok.save_pretrained(str(out_dir))
    return tok
