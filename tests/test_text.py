import numpy as np
import pytest

from gear_core.text import Sentence, split_sentences, token_sentence_index


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
