"""The R1 language-consistency reward: the share of chain-of-thought words in the target language.

DeepSeek-R1 (section 2.3.2) adds this reward because RL alone makes the reasoning drift between
languages, mostly Chinese and English, when the prompt is in one of them. Here a *word* is a run of
letters of one script, except in Chinese, Japanese and Korean, where every ideograph, kana or hangul
syllable counts as one word (Chinese has no spaces). The score is `target words / words` over the text
inside `<think>...</think>` (`extract_cot`).

Each word is judged in two steps:

1. **Script.** A word whose script is not the target's is not in the target (Han when the target is
   English, Latin when it is Chinese). A script used by one language decides by itself: hangul is
   Korean, kana is Japanese, Han is Chinese, except in a sentence where kana make up at least
   `KANA_SHARE` of the Han and kana (a Japanese sentence), where it is Japanese.
2. **lingua**, for scripts that many languages share (Latin, Cyrillic, Arabic, Devanagari). The words
   between two script switches form a run; a run is cut into sentence chunks of `MIN_CHUNK_WORDS`
   words or more, and a chunk's words are in the target when lingua says the chunk is. lingua only
   chooses among the languages the detector was built with, so with `["en", "zh"]` every Latin word is
   English; list `fr` too to catch French.

Departures from the paper, which does not define a word:

* **Language-neutral tokens are not words**: digits, punctuation, math symbols, LaTeX commands
  (`\\frac`), tags (`<think>`, `<|im_end|>`), math alphanumerics and letterlike symbols (`𝑥`, `ℝ`),
  single Latin or Greek letters (variables: `x`, `π`; this drops "a" and "I" too), all-capital Latin
  tokens of up to 4 letters (point names: `ABC`) and function names (`sin`, `log`, `gcd`). Arithmetic
  reasoning is full of them, and counting them would punish a Chinese chain of thought for `x`.
* **Benefit of the doubt**: a chunk of fewer than `MIN_DETECT_WORDS` words is not sent to lingua, and a
  chunk lingua cannot decide (it returns None, which the detector's minimum relative distance makes it
  do for ambiguous text) counts as the target. lingua calls a lone "So" French and "die" German.
* **Sentence chunks, not lingua's `detect_multiple_languages_of`**: on plain English math reasoning
  that call labelled fragments like "Let me" French and "x^2 - 5x + 6 = 0. Factor" Spanish, so it would
  punish correct reasoning; sentences of five or more words came out right in our checks.
* **A cap**: only the first `max_words` words, and the first `max_words * MAX_CHARS_PER_WORD`
  characters, are read, so a 1 MB completion costs what a long one does; the detail says "(truncated)".

A chain of thought with no words at all scores 1.0 ("no words"): there is nothing to mix.

The functions are pure; `LanguageScorer` holds the one lingua detector. No grpc, ray, redis or vllm.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from services.reward.scorer import ScoreInput, ScoreResult, ScoreStatus

logger = logging.getLogger(__name__)

# Words of a chain of thought read at most (reward.language_max_words).
DEFAULT_MAX_WORDS = 4000
# Characters read per allowed word, so that text with few words (1 MB of digits) is capped too.
MAX_CHARS_PER_WORD = 32
# Sentences are merged until a chunk has this many words before lingua judges it.
MIN_CHUNK_WORDS = 5
# The same in lingua's low-accuracy mode, whose trigram models need about 120 characters: at 5 words it
# called a third of plain English math sentences French or German.
LOW_ACCURACY_MIN_CHUNK_WORDS = 20
# A chunk longer than this is cut, so that one unpunctuated paragraph is not judged as a whole.
MAX_CHUNK_WORDS = 40
# Chunks shorter than this (a whole run of two words) are not judged: they count as the target.
MIN_DETECT_WORDS = 3
# lingua returns None unless the best language beats the next by this much; None counts as the target.
MIN_RELATIVE_DISTANCE = 0.1
# A CJK sentence is Japanese when kana are at least this share of its Han and kana words.
KANA_SHARE = 0.1
# Characters of one word that lingua reads (a 1 MB "word" must not reach it whole).
_MAX_WORD_CHARS = 40

LATIN, HAN, KANA, HANGUL = "Latin", "Han", "Kana", "Hangul"
CYRILLIC, ARABIC, GREEK, DEVANAGARI = "Cyrillic", "Arabic", "Greek", "Devanagari"
# Han and kana share runs: Japanese mixes them in every sentence.
_CJK = "CJK"

# Scripts that several languages write, with the language assumed when lingua cannot tell.
_SHARED_SCRIPT_DEFAULT = {LATIN: "en", CYRILLIC: "ru", ARABIC: "ar", DEVANAGARI: "hi"}
# Scripts that one language (of those lingua knows) writes; they decide without lingua.
_UNIQUE_SCRIPT_LANGUAGE = {
    HAN: "zh", KANA: "ja", HANGUL: "ko", GREEK: "el", "Hebrew": "he", "Armenian": "hy", "Georgian": "ka",
    "Bengali": "bn", "Gujarati": "gu", "Gurmukhi": "pa", "Tamil": "ta", "Telugu": "te", "Thai": "th",
}  # fmt: skip
# Unicode name prefixes that are not the script's own name.
_SCRIPT_BY_NAME = {
    "CJK": HAN, "IDEOGRAPHIC": HAN, "HIRAGANA": KANA, "KATAKANA": KANA, "KATAKANA-HIRAGANA": KANA,
}  # fmt: skip
# Letters that are symbols, not words: "MODIFIER LETTER SMALL H", "SUPERSCRIPT LATIN SMALL LETTER N", µ.
_SYMBOL_NAME_PREFIXES = frozenset({"MODIFIER", "SUPERSCRIPT", "SUBSCRIPT", "MICRO"})
# Latin words that are math, not language.
_MATH_NAMES = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp lim max min mod gcd lcm".split()
)

# ISO 639-1 code -> lingua Language, and back, for the 75 languages lingua knows.
_LANGUAGE_BY_CODE = {lang.iso_code_639_1.name.lower(): lang for lang in Language.all()}
_CODE_BY_LANGUAGE = {lang: code for code, lang in _LANGUAGE_BY_CODE.items()}
# ISO 639-1 code -> the script it is written in (Japanese: kana, its own script).
_SCRIPT_OF_LANGUAGE = {code: script for script, code in _UNIQUE_SCRIPT_LANGUAGE.items()} | {
    _CODE_BY_LANGUAGE[lang]: script
    for script, langs in (
        (LATIN, Language.all_with_latin_script()),
        (CYRILLIC, Language.all_with_cyrillic_script()),
        (ARABIC, Language.all_with_arabic_script()),
        (DEVANAGARI, Language.all_with_devanagari_script()),
    )
    for lang in langs
}


def _mark_class() -> str:
    """A regex class of the combining marks of the Basic Multilingual Plane (Devanagari vowel signs,
    Arabic vowels, decomposed accents): Python's `\\w` leaves them out, which would cut "हिन्दी" in three."""
    marks = [c for c in range(0x300, 0x10000) if unicodedata.category(chr(c))[0] == "M"]
    ranges, start = [], marks[0]
    for prev, cur in zip(marks, marks[1:] + [-1]):
        if cur != prev + 1:
            ranges.append(f"\\u{start:04x}" + (f"-\\u{prev:04x}" if prev > start else ""))
            start = cur
    return "".join(ranges)


_LETTER = rf"(?:[^\W\d_]|[{_mark_class()}])"
# Tokens: LaTeX commands, tags and special tokens (skipped), or letters joined by inner apostrophes.
_TOKEN = re.compile(rf"(\\[A-Za-z]+|</?[A-Za-z][\w-]*>|<\|[^<>|]{{0,64}}\|>)|{_LETTER}+(?:['’]{_LETTER}+)*")
_SENTENCE_END = re.compile(r"[.!?;\n。！？；]")


class Word(NamedTuple):
    """One word of a text: its letters, its script ("Latin", "Han", ...) and where it starts."""

    text: str
    script: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class LanguageConsistency:
    """How much of a chain of thought is in the target language."""

    # target_words / words, or 1.0 when there are no words.
    value: float
    # Words read (at most max_words).
    words: int
    # Of those, words in the target language.
    target_words: int
    # Target language (ISO 639-1).
    target: str
    # Whether the text was longer than the cap and only its start was read.
    truncated: bool = False

    @property
    def detail(self) -> str:
        """The short note of a result: `no words`, or `12/40 words not zh`, plus ` (truncated)`."""
        note = " (truncated)" if self.truncated else ""
        if not self.words:
            return f"no words{note}"
        return f"{self.words - self.target_words}/{self.words} words not {self.target}{note}"


def is_mixed(value: float) -> bool:
    """Whether a language-consistency score means the chain of thought has any non-target word.

    The "language-mixing rate" metric is the share of scored completions for which this is True.
    """
    return value < 1.0


def extract_cot(completion: str) -> str:
    """The chain of thought of a completion: the text inside the first `<think>...</think>`.

    Without a closing `</think>`, the text after `<think>` up to `<answer>` (or the end). Without
    `<think>` but with `</think>` (the prompt opened the block, as R1-Zero's does), the text before
    `</think>`. With neither, the text before `<answer>`, or the whole completion: a policy that drops
    the template still reasons somewhere, and the format reward is the one that punishes the template.
    """
    start = completion.find("<think>")
    if start < 0:
        close = completion.find("</think>")
        if close >= 0:
            return completion[:close]
        answer = completion.find("<answer>")
        return completion[:answer] if answer >= 0 else completion
    start += len("<think>")
    close = completion.find("</think>", start)
    if close >= 0:
        return completion[start:close]
    answer = completion.find("<answer>", start)
    return completion[start : answer if answer >= 0 else len(completion)]


@lru_cache(maxsize=1 << 16)
def _char_script(ch: str) -> str | None:
    """The script of one character; "" for a combining mark (it takes its letter's); None for a
    character that is not a letter of a language (digits, ², 〇, 𝑥, ℝ, µ)."""
    category = unicodedata.category(ch)
    if category[0] == "M":
        return ""
    code = ord(ch)
    if category[0] != "L" or 0x2100 <= code <= 0x214F or 0x1D400 <= code <= 0x1D7FF:
        return None  # letterlike symbols and math alphanumerics
    words = unicodedata.name(ch, "").split()
    if words[:1] in (["FULLWIDTH"], ["HALFWIDTH"]):
        words = words[1:]
    if not words or words[0] in _SYMBOL_NAME_PREFIXES:
        return None
    return _SCRIPT_BY_NAME.get(words[0], words[0].title())


def _is_word(text: str, script: str) -> bool:
    """False for the language-neutral letter tokens of the module docstring (x, π, ABC, sin)."""
    if script == LATIN:
        return len(text) > 1 and not (len(text) <= 4 and text.isupper()) and text.lower() not in _MATH_NAMES
    return script != GREEK or len(text) > 1


def _split_token(token: str, offset: int) -> list[Word]:
    """The words of one run of letters that may mix scripts ("the中文" -> the, 中, 文)."""
    if token.isascii():
        return [Word(token, LATIN, offset)] if _is_word(token, LATIN) else []
    out: list[Word] = []
    start, script = 0, None  # current segment
    for i, ch in enumerate(token + " "):  # the trailing space closes the last segment
        s = _char_script(ch) if i < len(token) else None
        if script is not None and (s == "" or ch in "'’"):
            continue  # a combining mark stays with its letter, an inner apostrophe with its word
        if s in (HAN, KANA, HANGUL) or s != script:
            if script is not None and _is_word(token[start:i], script):
                out.append(Word(token[start:i], script, offset + start))
            start, script = i, (s or None)
            if s in (HAN, KANA, HANGUL):  # one word per character
                out.append(Word(ch, s, offset + i))
                script = None
    return out


def _words(text: str, max_words: int) -> tuple[list[Word], bool]:
    """The first `max_words` words of `text` and whether the text had more (or was cut by length)."""
    max_chars = max_words * MAX_CHARS_PER_WORD
    truncated = len(text) > max_chars
    out: list[Word] = []
    for m in _TOKEN.finditer(text, 0, max_chars):
        if m.group(1) is None:
            out.extend(_split_token(m.group(), m.start()))
            if len(out) > max_words:
                return out[:max_words], True
    return out, truncated


def split_words(text: str, max_words: int = DEFAULT_MAX_WORDS) -> list[Word]:
    """The words of `text` (see the module docstring for what is a word), at most `max_words` of them
    from the first `max_words * MAX_CHARS_PER_WORD` characters, each with its script."""
    return _words(text, max_words)[0]


def _run_key(script: str) -> str:
    return _CJK if script in (HAN, KANA) else script


def _runs(words: list[Word]) -> list[list[Word]]:
    """Maximal runs of consecutive words of one script (Han and kana together)."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and _run_key(runs[-1][-1].script) == _run_key(word.script):
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _chunks(text: str, run: list[Word], min_words: int, max_words: int) -> list[list[Word]]:
    """`run` cut at sentence ends into chunks of `min_words` words or more (a short tail joins the
    chunk before it) and `max_words` at most (cut wherever the limit falls)."""
    chunks: list[list[Word]] = []
    current: list[Word] = []
    for word, after in zip(run, run[1:] + [None]):
        current.append(word)
        if after is None:
            break
        sentence_end = _SENTENCE_END.search(text, word.end, after.start) is not None
        if (sentence_end and len(current) >= min_words) or len(current) >= max_words:
            chunks.append(current)
            current = []
    if current:
        if chunks and len(current) < min_words:
            chunks[-1].extend(current)
        else:
            chunks.append(current)
    return chunks


def _cjk_language(chunk: list[Word]) -> str:
    """The language of a sentence of Han and kana: ja with at least KANA_SHARE kana, else zh."""
    kana = sum(word.script == KANA for word in chunk)
    return "ja" if kana >= KANA_SHARE * len(chunk) else "zh"


def _detect(detector: LanguageDetector, words: list[Word]) -> str | None:
    """lingua's ISO 639-1 code for the words, or None when it cannot decide."""
    language = detector.detect_language_of(" ".join(word.text[:_MAX_WORD_CHARS] for word in words))
    return None if language is None else _CODE_BY_LANGUAGE[language]


def _target_words_in_run(
    text: str, run: list[Word], target: str, detector: LanguageDetector | None, min_chunk_words: int
) -> int:
    """How many words of one run are in `target`."""
    key = _run_key(run[0].script)
    if key == _CJK:
        hits = 0
        for chunk in _chunks(text, run, 1, len(run)):
            verdict = _cjk_language(chunk)  # kana are Japanese whatever the verdict for the Han around them
            hits += sum(("ja" if word.script == KANA else verdict) == target for word in chunk)
        return hits
    if key in _UNIQUE_SCRIPT_LANGUAGE:
        return len(run) if _UNIQUE_SCRIPT_LANGUAGE[key] == target else 0
    if _SCRIPT_OF_LANGUAGE.get(target) != key:
        return 0  # a shared script the target does not use (Latin for zh), or a script we do not know
    if detector is None:
        return len(run)
    hits = 0
    for chunk in _chunks(text, run, min_chunk_words, max(MAX_CHUNK_WORDS, 2 * min_chunk_words)):
        if len(chunk) < MIN_DETECT_WORDS or _detect(detector, chunk) in (None, target):
            hits += len(chunk)
    return hits


def language_consistency(
    cot: str,
    target: str,
    detector: LanguageDetector | None = None,
    max_words: int = DEFAULT_MAX_WORDS,
    min_chunk_words: int = MIN_CHUNK_WORDS,
) -> LanguageConsistency:
    """The share of the words of `cot` that are in `target` (ISO 639-1, lowercase).

    `detector` judges the runs of scripts that several languages share (Latin, Cyrillic, Arabic,
    Devanagari) and must know `target` when its script is one of them. None means "trust the script":
    a run in the target's script is in the target, which is exact when the target is the only language
    of its script that lingua would choose from (English among ["en", "zh"]). lingua judges sentence
    chunks of at least `min_chunk_words` words (LOW_ACCURACY_MIN_CHUNK_WORDS for a low-accuracy
    detector). Only the first `max_words` words are read (`truncated` says so). No words scores 1.0.
    """
    words, truncated = _words(cot, max_words)
    if not words:
        return LanguageConsistency(1.0, 0, 0, target, truncated)
    hits = sum(_target_words_in_run(cot, run, target, detector, min_chunk_words) for run in _runs(words))
    return LanguageConsistency(hits / len(words), len(words), hits, target, truncated)


def detect_language(
    text: str, detector: LanguageDetector | None = None, max_words: int = DEFAULT_MAX_WORDS
) -> str:
    """The ISO 639-1 code of the language of `text` (a prompt), from the script with the most words.

    Unique scripts decide by themselves (Han -> zh, or ja with enough kana; hangul -> ko); a shared
    script goes to lingua, and when lingua cannot tell (or `detector` is None) to the script's usual
    language (Latin -> en, Cyrillic -> ru, Arabic -> ar, Devanagari -> hi). No words, or a script no
    language here uses, gives "en".
    """
    words, _ = _words(text, max_words)
    if not words:
        return "en"
    counts = Counter(_run_key(word.script) for word in words)
    key = max(counts, key=counts.__getitem__)  # ties: the script seen first
    if key == _CJK:
        return _cjk_language([word for word in words if _run_key(word.script) == _CJK])
    if key in _UNIQUE_SCRIPT_LANGUAGE:
        return _UNIQUE_SCRIPT_LANGUAGE[key]
    if key not in _SHARED_SCRIPT_DEFAULT:
        return "en"
    if detector is not None:
        code = _detect(detector, [word for word in words if word.script == key][: MAX_CHUNK_WORDS * 5])
        if code is not None and _SCRIPT_OF_LANGUAGE.get(code) == key:
            return code
    return _SHARED_SCRIPT_DEFAULT[key]


def _parse_languages(languages: Sequence[str]) -> list[str]:
    """Lowercase, de-duplicated ISO 639-1 codes; ValueError naming a bad one and the valid ones."""
    if isinstance(languages, str) or not languages:
        raise ValueError(f"reward.languages must be a non-empty list of ISO 639-1 codes, got {languages!r}")
    codes: list[str] = []
    for raw in languages:
        code = str(raw).strip().lower()
        if code not in _LANGUAGE_BY_CODE:
            raise ValueError(
                f"unknown language code {raw!r} in reward.languages: valid ISO 639-1 codes (the languages "
                f"lingua knows) are {', '.join(sorted(_LANGUAGE_BY_CODE))}"
            )
        if code not in codes:
            codes.append(code)
    return codes


class LanguageScorer:
    """Scorer "language": `language_consistency` of each completion's chain of thought.

    The target is `item.language`, or the prompt's language (`detect_language`) when that is "". One
    lingua detector, built for `languages` only (each language costs memory: all 75 take about 1 GB),
    serves every thread: lingua documents `LanguageDetector` as safe to share, and the rest of the
    scorer is immutable after `__init__`. A target whose script several languages share must be among
    `languages` (lingua cannot recognise a language it has no model for), otherwise the item gets
    ScoreStatus.ERROR; a target with a script of its own (ko, ja, zh, el, th, ...) needs no model.
    `low_accuracy` uses lingua's small trigram models (en, zh, fr, de: about 10 MB instead of 107 MB).
    They are fine for the prompt's language, but when lingua must choose (two configured languages
    share a script) they call plain English math reasoning French or German even in chunks of 20
    words (a quarter to a third of English completions in our check), so keep the default there.
    """

    name = "language"

    def __init__(
        self,
        languages: Sequence[str] = ("en", "zh"),
        low_accuracy: bool = False,
        max_words: int = DEFAULT_MAX_WORDS,
    ) -> None:
        self.languages = _parse_languages(languages)
        if max_words < 1:
            raise ValueError(f"reward.language_max_words must be at least 1, got {max_words}")
        self._max_words = max_words
        self._min_chunk_words = LOW_ACCURACY_MIN_CHUNK_WORDS if low_accuracy else MIN_CHUNK_WORDS
        builder = LanguageDetectorBuilder.from_languages(*(_LANGUAGE_BY_CODE[c] for c in self.languages))
        builder = builder.with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        # Preloaded: the first request must not pay for loading, nor several threads load at once.
        self._detector = builder.with_preloaded_language_models().build()
        # Targets for which lingua has a choice to make: their script is shared and at least two of the
        # configured languages write it. For the others the script alone decides (detector None).
        scripts = Counter(_SCRIPT_OF_LANGUAGE[c] for c in self.languages)
        self._lingua_targets = frozenset(
            code
            for code in self.languages
            if _SCRIPT_OF_LANGUAGE[code] in _SHARED_SCRIPT_DEFAULT and scripts[_SCRIPT_OF_LANGUAGE[code]] > 1
        )
        if low_accuracy and self._lingua_targets:
            logger.warning(
                "language scorer: low_accuracy with %s sharing a script misjudges short reasoning; "
                "expect false language mixing",
                sorted(self._lingua_targets),
            )

    def _target_problem(self, target: str, source: str) -> str:
        """Why `target` cannot be scored ("" when it can); `source` says where it came from."""
        script = _SCRIPT_OF_LANGUAGE.get(target)
        if script is None:
            return (
                f"unknown target language {target!r} ({source}): expected an ISO 639-1 code such as en or zh"
            )
        if script in _SHARED_SCRIPT_DEFAULT and target not in self.languages:
            return (
                f"target language {target!r} ({source}) is not in reward.languages {self.languages}: the "
                f"{script} script is shared by several languages, so lingua needs its model; add {target!r}"
            )
        return ""

    def _score_one(self, item: ScoreInput, prompt_targets: dict[str, str]) -> ScoreResult:
        # "zh-CN" and "pt_BR" name their language first.
        target, source = re.split(r"[-_]", item.language.strip().lower())[0], "item.language"
        if not target:
            source = "detected from the prompt"
            if item.prompt not in prompt_targets:
                prompt_targets[item.prompt] = detect_language(item.prompt, self._detector, self._max_words)
            target = prompt_targets[item.prompt]
        problem = self._target_problem(target, source)
        if problem:
            return ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, problem)
        detector = self._detector if target in self._lingua_targets else None
        cot = extract_cot(item.completion)
        result = language_consistency(cot, target, detector, self._max_words, self._min_chunk_words)
        return ScoreResult(item.sample_index, result.value, ScoreStatus.OK, result.detail)

    def score(self, items: list[ScoreInput]) -> list[ScoreResult]:
        prompt_targets: dict[str, str] = {}  # a group shares one prompt: detect its language once
        out = []
        for item in items:
            try:
                out.append(self._score_one(item, prompt_targets))
            except Exception as e:  # one odd completion must not fail its whole group
                logger.exception("language scorer failed on sample %d", item.sample_index)
                out.append(ScoreResult(item.sample_index, 0.0, ScoreStatus.ERROR, f"{type(e).__name__}: {e}"))
        return out

    def close(self) -> None:
        """Nothing to release (the detector's memory goes with the scorer)."""
