"""The R1 language-consistency reward: the share of chain-of-thought words in the target language.

Expected values are counted by hand in the comments: every Han, kana or hangul character is a word,
other words are runs of letters; digits, symbols, LaTeX commands, single Latin letters, short
all-capital labels and function names are not words.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.reward.language import (
    LanguageScorer,
    detect_language,
    extract_cot,
    is_mixed,
    language_consistency,
    split_words,
)
from services.reward.scorer import ScoreInput, ScoreStatus

R1_PROMPT = "User: What is 47+85? Think in <think></think>, then answer in <answer></answer>.\nAssistant: "
FRENCH = "Ensuite, nous devons vérifier que le résultat est correct et que la somme est bien sept."
GERMAN = "Zuerst addieren wir drei und vier, das ergibt sieben, und dann prüfen wir das Ergebnis."


@pytest.fixture(scope="module")
def scorer() -> LanguageScorer:
    # fr and de make lingua choose among several Latin-script languages (building it is the slow part).
    return LanguageScorer(["en", "zh", "fr", "de"])


def one(scorer: LanguageScorer, cot: str, language: str = "", prompt: str = R1_PROMPT):
    completion = f"<think>{cot}</think> <answer>7</answer>"
    [result] = scorer.score([ScoreInput(0, prompt, completion, language=language)])
    return result


def test_pure_english_reasoning_is_consistent(scorer: LanguageScorer) -> None:
    cot = (
        "First add the ones digits: 7 + 5 = 12, so write 2 and carry 1. "
        "Then add the tens: 4 + 8 + 1 = 13. So the sum is 132. Let me double check: 47 + 85 = 132."
    )
    result = one(scorer, cot, "en")
    assert result.status is ScoreStatus.OK
    assert result.value == 1.0
    assert result.detail.startswith("0/")


def test_code_switched_reasoning_counts_each_side(scorer: LanguageScorer) -> None:
    cot = "首先我们计算 the sum of 3 and 4, 结果是 7"
    # Han: 首 先 我 们 计 算 (6) + 结 果 是 (3) = 9 words; Latin: the, sum, of, and = 4 words; 13 in all.
    zh = one(scorer, cot, "zh")
    assert zh.value == pytest.approx(9 / 13)
    assert zh.detail == "4/13 words not zh"
    en = one(scorer, cot, "en")
    assert en.value == pytest.approx(4 / 13)
    assert en.detail == "9/13 words not en"


def test_pure_chinese_reasoning(scorer: LanguageScorer) -> None:
    cot = "首先计算三加四，结果是七。"
    # 首 先 计 算 三 加 四 (7) + 结 果 是 七 (4) = 11 Han words.
    assert one(scorer, cot, "zh").value == 1.0
    en = one(scorer, cot, "en")
    assert (en.value, en.detail) == (0.0, "11/11 words not en")


@pytest.mark.parametrize("sentence", [FRENCH, GERMAN], ids=["french", "german"])
def test_latin_script_is_told_apart_by_lingua(scorer: LanguageScorer, sentence: str) -> None:
    # Same script as English, so only lingua can tell: the sentence is not English.
    assert one(scorer, sentence, "en").value < 0.5


def test_english_sentence_inside_french_reasoning(scorer: LanguageScorer) -> None:
    english = "Wait, let me double check the sum of these two numbers."
    # French: Ensuite nous devons vérifier que le résultat est correct et que la somme est bien sept = 16;
    # English (its own sentence chunk): Wait let me double check the sum of these two numbers = 11.
    result = one(scorer, f"{FRENCH} {english}", "fr")
    assert result.value == pytest.approx(16 / 27)


def test_without_a_detector_the_script_decides() -> None:
    # With English the only Latin-script language configured, lingua has nothing to choose: French
    # reads as English. That is the cost of listing only ["en", "zh"].
    assert language_consistency(FRENCH, "en", None).value == 1.0
    assert language_consistency(FRENCH, "zh", None).value == 0.0


def test_math_only_reasoning_has_no_words(scorer: LanguageScorer) -> None:
    cot = r"47 + 85 = 132; \frac{1}{2} \times 4 = 2, x^2 = 9, 𝑥 ∈ ℝ, sin(π) = 0"
    result = one(scorer, cot, "zh")
    assert (result.value, result.detail) == (1.0, "no words")


def test_empty_completion_has_no_words(scorer: LanguageScorer) -> None:
    [result] = scorer.score([ScoreInput(0, "p", "", language="en")])
    assert (result.status, result.value, result.detail) == (ScoreStatus.OK, 1.0, "no words")


def test_target_defaults_to_the_prompts_language(scorer: LanguageScorer) -> None:
    prompt = "用户：47加85等于多少？请先在<think></think>中思考，再在<answer></answer>中作答。\n助手："
    english = one(scorer, "Add the ones and then the tens to get the sum.", prompt=prompt)
    assert (english.status, english.value) == (ScoreStatus.OK, 0.0)
    assert english.detail.endswith("words not zh")
    assert one(scorer, "先算个位再算十位。", prompt=prompt).value == 1.0


def test_words_skip_math_and_markup() -> None:
    text = r"设 x 为 \frac{a}{b}，则 ABC 的 sin 值是 don't <|im_end|> हिन्दी"
    # x, a, b: variables; \frac: LaTeX; ABC: a label; sin: a function; <|im_end|>: a special token.
    words = [(w.text, w.script) for w in split_words(text)]
    han = [(ch, "Han") for ch in "设为则的值是"]
    assert words == han + [("don't", "Latin"), ("हिन्दी", "Devanagari")]


def test_japanese_kana_decide_the_han_around_them() -> None:
    ja = "日本語で考えます。"
    # 日 本 語 考 (Han) + で え ま す (kana) = 8 words; kana 4/8 makes the sentence Japanese.
    assert language_consistency(ja, "ja").value == 1.0
    assert language_consistency(ja, "zh").value == 0.0
    zh = "首先计算三加四等于七の然后乘以二得到十四"
    # 19 Han + 1 kana: kana 1/20 < 10%, so the Han stay Chinese and only の is not zh.
    assert language_consistency(zh, "zh").value == pytest.approx(19 / 20)


def test_word_cap_truncates() -> None:
    result = language_consistency("one two three four five", "en", max_words=3)
    assert (result.words, result.truncated, result.detail) == (3, True, "0/3 words not en (truncated)")


def test_one_megabyte_completion_finishes(scorer: LanguageScorer) -> None:
    sentence = "Let us add the numbers carefully. "  # 6 words, 34 characters
    completion = "<think>" + sentence * 30_000 + "</think><answer>7</answer>"
    assert len(completion) > 1_000_000
    junk = "\ufffd\x00<" * 400_000  # replacement characters from bad UTF-8, NULs, stray brackets
    items = [ScoreInput(0, "p", completion, language="en"), ScoreInput(1, "p", junk, language="zh")]
    results = scorer.score(items)
    assert [r.status for r in results] == [ScoreStatus.OK, ScoreStatus.OK]
    assert results[0].detail.endswith("/4000 words not en (truncated)")  # max_words defaults to 4000
    assert results[1].value == 1.0


def test_results_keep_order_and_indices(scorer: LanguageScorer) -> None:
    items = [
        ScoreInput(5, "p", "<think>先算个位。</think><answer>7</answer>", language="zh"),
        ScoreInput(2, "p", "<think>add the units</think><answer>7</answer>", language="zh"),
        ScoreInput(9, "p", "<think>add the units</think><answer>7</answer>", language="en"),
    ]
    results = scorer.score(items)
    assert [(r.sample_index, r.value) for r in results] == [(5, 1.0), (2, 0.0), (9, 1.0)]


def test_concurrent_calls_agree_with_serial_ones(scorer: LanguageScorer) -> None:
    batches = [
        [ScoreInput(i, "p", f"<think>{FRENCH} 所以答案是{i}。</think>", language=lang) for i in range(4)]
        for lang in ("en", "fr", "zh", "de")
    ] * 4
    serial = [scorer.score(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(scorer.score, batches)) == serial


def test_targets_that_cannot_be_scored_are_errors(scorer: LanguageScorer) -> None:
    # Russian shares the Cyrillic script with other languages and has no model here.
    ru = one(scorer, "Сначала сложим единицы.", "ru")
    assert ru.status is ScoreStatus.ERROR
    assert "'ru'" in ru.detail and "reward.languages" in ru.detail
    unknown = one(scorer, "add", "xx")
    assert unknown.status is ScoreStatus.ERROR and "'xx'" in unknown.detail
    # Korean is not configured either, but hangul is Korean's alone: 먼 저 과 를 더 합 니 다 = 8 words.
    ko = one(scorer, "먼저 3과 4를 더합니다", "ko")
    assert (ko.status, ko.value, ko.detail) == (ScoreStatus.OK, 1.0, "0/8 words not ko")


def test_region_subtags_are_ignored(scorer: LanguageScorer) -> None:
    assert one(scorer, "先算个位。", "zh-CN").value == 1.0


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (R1_PROMPT, "en"),
        ("用户：47加85等于多少？\n助手：", "zh"),
        ("47と85を足すといくつですか？", "ja"),
        ("47 더하기 85는 얼마입니까?", "ko"),
        ("Сколько будет 47 плюс 85?", "ru"),
        ("47 + 85 = ?", "en"),
    ],
)
def test_detect_language_by_script(prompt: str, expected: str) -> None:
    assert detect_language(prompt) == expected


@pytest.mark.parametrize(
    ("completion", "cot"),
    [
        ("<think>a b</think><answer>7</answer>", "a b"),
        ("<think>a b<answer>7</answer>", "a b"),  # unclosed think: up to the answer
        ("a b</think><answer>7</answer>", "a b"),  # the prompt opened the think block
        ("a b<answer>7</answer>", "a b"),  # no think block: before the answer
        ("a b", "a b"),
    ],
)
def test_extract_cot(completion: str, cot: str) -> None:
    assert extract_cot(completion) == cot


def test_bad_constructor_arguments_fail_fast() -> None:
    with pytest.raises(ValueError, match="'xx'.*valid ISO 639-1 codes.*en"):
        LanguageScorer(["en", "xx"])
    with pytest.raises(ValueError, match="non-empty list"):
        LanguageScorer([])
    with pytest.raises(ValueError, match="language_max_words"):
        LanguageScorer(["en"], max_words=0)


def test_is_mixed() -> None:
    assert not is_mixed(1.0)
    assert is_mixed(0.99)
    assert is_mixed(0.0)
