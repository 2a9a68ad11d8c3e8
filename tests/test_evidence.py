"""Grounding generated evidence to a document span: hand-computed cases."""

import pytest

from gear_core.evidence import GroundedEvidence, ground_evidence, quoted_evidence


def test_a_verbatim_answer_is_grounded_at_its_span():
    document = "The tower was designed by Gustave Eiffel in 1889. Eiffel lived in Paris."
    found = ground_evidence("Gustave Eiffel", document)
    assert document[found.start_char : found.end_char] == "Gustave Eiffel"
    assert found == GroundedEvidence("Gustave Eiffel", 26, 40, 1.0, True)


def test_case_punctuation_and_articles_do_not_count():
    document = "It opened for the 1889 World's Fair in Paris."
    found = ground_evidence("the 1889 world's fair", document)
    assert document[found.start_char : found.end_char] == "1889 World's Fair"
    assert found.support == 1.0


def test_the_best_span_by_token_f1_hand_case():
    # evidence words {leonardo, da, vinci, painted} (4). "painted by Leonardo da Vinci": overlap 4 of 5 words,
    # F1 = 2*4/(4+5) = 0.889; "Leonardo da Vinci" alone: F1 = 2*3/(4+3) = 0.857.
    document = "The Mona Lisa was painted by Leonardo da Vinci in Florence."
    found = ground_evidence("Leonardo da Vinci painted", document)
    assert document[found.start_char : found.end_char] == "painted by Leonardo da Vinci"
    assert found.support == pytest.approx(8 / 9)
    assert found.grounded


def test_ties_go_to_the_shortest_then_first_span():
    document = "Paris, then Paris again."
    found = ground_evidence("Paris", document)
    assert (found.start_char, found.end_char, found.support) == (0, 5, 1.0)


def test_unsupported_evidence_is_marked_ungrounded():
    document = "The Mona Lisa hangs in the Louvre."
    assert ground_evidence("zebra crossing", document) == GroundedEvidence("zebra crossing", None, None, 0.0, False)
    assert ground_evidence("", document).grounded is False
    assert ground_evidence("the", document).start_char is None  # only an article: nothing to match
    weak = ground_evidence("Prado museum in Madrid Spain", document)  # best span "in": F1 = 2*1/(5+1)
    assert document[weak.start_char : weak.end_char] == "in"
    assert weak.support == pytest.approx(1 / 3) and not weak.grounded
    assert ground_evidence("Prado museum in Madrid Spain", document, min_support=0.3).grounded
    # "in the Louvre" (the article dropped): 2 of 5 words over a 2-word span, F1 = 4/7.
    assert ground_evidence("Louvre museum in Madrid Spain", document).support == pytest.approx(4 / 7)


def test_offsets_are_exact_on_unicode_text():
    document = "  Zoë’s café — naïve? 東京は日本の首都です。 Ünïcödé words."
    for evidence in ("café", "naïve", "Ünïcödé words", "東京は日本の首都です"):
        found = ground_evidence(evidence, document)
        assert document[found.start_char : found.end_char].casefold() == evidence.casefold()


def test_bad_min_support_is_refused():
    with pytest.raises(ValueError, match="min_support"):
        ground_evidence("a", "b", min_support=1.5)


def test_a_quote_keeps_its_own_span():
    document = "Paris, then Paris again."
    # ground_evidence would give the first "Paris"; the quote copied from the second keeps its place.
    assert quoted_evidence("Paris", 12, 17, document) == GroundedEvidence("Paris", 12, 17, 1.0, True)
    assert quoted_evidence(",", 5, 6, document) == GroundedEvidence(",", 5, 6, 0.0, False)  # no word: no support
    with pytest.raises(ValueError, match="not document"):
        quoted_evidence("Paris", 0, 4, document)
    with pytest.raises(ValueError, match="not document"):
        quoted_evidence("", 30, 30, document)
    with pytest.raises(ValueError, match="min_support"):
        quoted_evidence("Paris", 12, 17, document, min_support=-0.1)
