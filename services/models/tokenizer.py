"""A character-level tokenizer made locally, saved in the Hugging Face fast-tokenizer format.

Nothing may be downloaded at run time, so the zoo policies need a tokenizer the project can build
itself. One token per printable ASCII character keeps the vocabulary tiny (the embedding is most of a
tiny model) and makes every arithmetic digit its own token. The R1 tags are single tokens so that the
format is cheap to learn. The files written are the standard `tokenizer.json` + config, so both
transformers (`AutoTokenizer`) and vLLM load them like any hub tokenizer.

It is a byte-level BPE with no merges, not a WordLevel model: for a checkpoint whose config says
`model_type: qwen2`, transformers 5 (and vLLM through it) loads the tokenizer as `Qwen2Tokenizer`, which
rebuilds a byte-level pre-tokenizer over the saved vocabulary. A plain-character vocabulary then loses
every space and newline (they become byte-level symbols it does not contain). Storing the vocabulary in
the byte-level alphabet makes both loaders produce the same one-token-per-character encoding.
"""

from __future__ import annotations

import string
from pathlib import Path

# Part of the zoo's cache key: bump it whenever the tokenizer's files change, so cached policies are remade.
TOKENIZER_VERSION = 2
BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
R1_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHARACTERS = sorted(set(string.printable) - set("\x0b\x0c\r"))  # 97 printable characters


def build_tokenizer(out_dir: str | Path):
    """Create the character-level tokenizer and save it to `out_dir`; return the loaded fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbol = _bytes_to_unicode()
    symbols = [byte_symbol[ord(c)] for c in CHARACTERS]
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, *R1_TAGS, *symbols])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=PAD))
    # No merges: every character is its own token; whitespace maps to its byte-level symbol.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    # The R1 tags are added tokens so they match before character splitting; not "special", so
    # decoding with skip_special_tokens keeps them in the text the reward services see.
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    tok.add_tokens(R1_TAGS, special_tokens=False)
    tok.save_pretrained(str(out_dir))
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map that byte-level tokenizers use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))
