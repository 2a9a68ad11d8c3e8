import numpy as np
import pytest

from gear_core.text import Sentence, looks_english, split_sentences, token_sentence_index


def assert_exact(text, sentences):
    for sentence in sentences:
        assert text[sentence.start_char : sentence.end_char] == sentence.text
        assert sentence.text == sentence.text.strip()


def test_trained_punkt_keeps_abbreviations_together():
    text = "Dr. Smith moved to Washington D.C. in 1990. He liked it there."
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == ["Dr. Smith moved to Washington D.C. in 1990.", "He liked it there."]
    assert_exact(text, sentences)


def test_repeated_sentences_get_their_own_spans():
    text = "It rained. It rained. It rained."
    sentences = split_sentences(text)
    assert [(s.start_char, s.end_char) for s in sentences] == [(0, 10), (11, 21), (22, 32)]
    assert_exact(text, sentences)


def test_leading_whitespace_and_unicode_spans_are_exact():
    text = "\n   Zoë’s café — naïve? ✓ Yes! 東京は日本の首都です。 😀 Emoji here.\t "
    sentences = split_sentences(text)
    assert sentences
    assert_exact(text, sentences)
    assert sentences[0].start_char == 4


def test_blank_lines_separate_blocks():
    text = "Heading without period\n\nFirst sentence. Second sentence.\n \nLast block"
    assert [s.text for s in split_sentences(text)] == [
        "Heading without period",
        "First sentence.",
        "Second sentence.",
        "Last block",
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n"])
def test_empty_text_has_no_sentences(text):
    assert split_sentences(text) == []


def test_non_string_is_rejected():
    with pytest.raises(TypeError):
        split_sentences(None)


def test_token_sentence_index_hand_case():
    sentences = [Sentence("Ab cd.", 0, 6), Sentence("Ef.", 8, 11)]
    starts = np.array([0, 0, 3, 5, 7, 8, 10, 0])
    ends = np.array([0, 2, 5, 6, 8, 10, 11, 0])  # first and last are special tokens (empty offsets)
    assert token_sentence_index(starts, ends, sentences).tolist() == [-1, 0, 0, 0, -1, 1, 1, -1]
    assert token_sentence_index(starts, ends, []).tolist() == [-1] * 8


def texts(text: str) -> list[str]:
    sentences = split_sentences(text)
    assert all(text[s.start_char : s.end_char] == s.text for s in sentences)
    return [s.text for s in sentences]


def test_chinese_and_japanese_sentences_end_at_their_full_stops():
    # punkt saw one sentence in each (no space follows 。).
    assert texts("北京是中国的首都。上海是最大的城市！你去过吗？") == [
        "北京是中国的首都。",
        "上海是最大的城市！",
        "你去过吗？",
    ]
    assert texts("東京は首都です。「大阪は大きい。」") == ["東京は首都です。", "「大阪は大きい。」"]
    assert texts("Mixed English. 中文句子。 Another one.") == ["Mixed English.", "中文句子。", "Another one."]


def test_markdown_headings_and_lists_are_their_own_sentences():
    text = (
        "# Paris\nParis is the capital of France.\n## Sights\n- The Louvre\n- The Eiffel Tower\n"
        "1. First item\n2. Second item\n> A quote"
    )
    assert texts(text) == [
        "Paris",
        "Paris is the capital of France.",
        "Sights",
        "The Louvre",
        "The Eiffel Tower",
        "First item",
        "Second item",
        "A quote",
    ]
    # Not lists: emphasis at a line start, and numbers that start a line without a 1, 2, ... sequence (SQuAD
    # writes the formulas O2 and O3 as "O\n2." and "(O\n3)").
    assert texts("*Note*: not a list.\nA gas with formula O\n2. Ozone (O\n3) is blue.") == [
        "*Note*: not a list.",
        "A gas with formula O\n2.",
        "Ozone (O\n3) is blue.",
    ]


def test_html_block_tags_separate_sentences_and_belong_to_none():
    text = "<h1>Paris</h1><p>Paris is big</p><ul><li>One item</li><LI class='x'>Two item</LI></ul>Line<br/>break"
    assert texts(text) == ["Paris", "Paris is big", "One item", "Two item", "Line", "break"]
    assert texts("An <b>inline</b> tag stays. Inside.") == ["An <b>inline</b> tag stays.", "Inside."]


def test_offsets_stay_exact_on_random_structured_text():
    import random

    pieces = [
        "Paris is big. ",
        "北京。",
        "\n",
        "\n\n",
        "# ",
        "- ",
        "1. ",
        "2. ",
        "<p>",
        "</li>",
        "<br>",
        " ",
        "é",
        "e\u0301",
        "\u200b",
        "\u00a0",
        "Dr. Smith went.",
        "\t",
        "> ",
        "。」",
        "?",
    ]
    rng = random.Random(0)
    for _ in range(300):
        texts("".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))))


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("Who painted the Mona Lisa?", True),
        ("Mona Lisa", True),
        ("1889", True),
        ("", True),
        ("La La Land director", True),  # one foreign word is not a foreign question
        ("Where is the Musée du Louvre?", True),
        ("Wer hat die Mona Lisa gemalt?", False),
        ("Qui a peint la Joconde ?", False),
        ("¿Quién pintó la Mona Lisa?", False),
        ("Chi ha dipinto la Gioconda?", False),
        ("Wie heeft de Mona Lisa geschilderd?", False),
        ("谁画了蒙娜丽莎？", False),
        ("Кто написал Мону Лизу?", False),
    ],
)
def test_looks_english(text, english):
    assert looks_english(text) is english
