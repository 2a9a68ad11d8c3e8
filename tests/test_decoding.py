"""The evidence decoder's search rules on hand-made token ids (gear_core.decoding), and on a tiny model."""

import pytest
import torch
from conftest import tiny_gear

from gear_core.decoding import SpanConstraint, choose_sentence, is_question, penalize_query_tokens
from gear_core.evidence import ground_evidence
from gear_core.text import split_sentences

END = 102
VOCAB = 110
# [CLS] the cat ##s sat the cat [SEP]
DOCUMENT_IDS = torch.tensor([[101, 5, 6, 7, 8, 5, 6, 102]])
WORD_START = torch.tensor([[True, True, True, False, True, True, True, True]])


def allowed_ids(constraint: SpanConstraint) -> list[set[int]]:
    return [set(row.nonzero()[:, 0].tolist()) for row in constraint.allowed(VOCAB, END)]


def test_span_constraint_follows_the_document_and_ends_at_word_ends():
    copyable = torch.tensor([[False, True, True, True, True, True, True, False]])
    constraint = SpanConstraint(DOCUMENT_IDS, copyable, WORD_START)
    assert allowed_ids(constraint) == [{5, 6, 8}]  # word starts only: not "##s", not the end
    constraint = constraint.advance(torch.tensor([6]))  # "cat": at positions 2 and 6
    assert constraint.ends.tolist() == [[False, False, True, False, False, False, True, False]]
    # After position 2 comes "##s"; position 6 is the last word, so the span may end there.
    assert allowed_ids(constraint) == [{7, END}]
    constraint = constraint.advance(torch.tensor([7]))  # "cats": only position 2 continues
    assert constraint.ends.tolist() == [[False, False, False, True, False, False, False, False]]
    assert allowed_ids(constraint) == [{8, END}]


def test_span_constraint_does_not_end_inside_a_word():
    constraint = SpanConstraint(DOCUMENT_IDS, torch.tensor([[False] + [True] * 6 + [False]]), WORD_START)
    constraint = constraint.advance(torch.tensor([5])).advance(torch.tensor([6]))  # "the cat", twice
    assert allowed_ids(constraint) == [{7, END}]  # the second "the cat" ends the window's words
    only_first = SpanConstraint(
        DOCUMENT_IDS, torch.tensor([[False, True, True, True, True, False, False, False]]), WORD_START
    )
    only_first = only_first.advance(torch.tensor([5])).advance(torch.tensor([6]))
    assert allowed_ids(only_first) == [{7}]  # "the cat|s": no end before "##s"


def test_an_id_at_a_quotable_and_an_unquotable_position_stays_allowed():
    # "cat" is at 2 (quotable) and 6 (not): a plain scatter could let position 6's False win.
    copyable = torch.tensor([[False, True, True, True, True, True, False, False]])
    constraint = SpanConstraint(DOCUMENT_IDS, copyable, WORD_START).advance(torch.tensor([5]))
    assert allowed_ids(constraint) == [{6, END}]  # END: the "the" at 5 is the last quotable word


def test_a_row_with_nothing_to_quote_may_only_end_and_rows_select():
    ids = torch.cat([DOCUMENT_IDS, torch.tensor([[101, 102, 0, 0, 0, 0, 0, 0]])])
    copyable = torch.tensor([[False] + [True] * 6 + [False], [False] * 8])
    constraint = SpanConstraint(ids, copyable, torch.cat([WORD_START, WORD_START]))
    assert allowed_ids(constraint) == [{5, 6, 8}, {END}]
    second = constraint.advance(torch.tensor([5, END])).select(torch.tensor([1]))
    assert second.ends.tolist() == [[False] * 8] and allowed_ids(second) == [{END}]


def test_choose_sentence_weighs_the_ranking_against_the_decoders_best_start():
    # Row 0: positions hold ids 1..4, sentences of rank 0 (ids 1, 2) and rank 1 (ids 3, 4). Best starts: rank 0
    # -1 (id 2), rank 1 -0.5 (id 3). Totals log 0.6 - w vs log 0.4 - 0.5 w: rank 1 wins from w = 2 log 1.5 = 0.81.
    first_scores = torch.log_softmax(torch.zeros(2, 5), dim=1)
    first_scores[0] = torch.tensor([-9.0, -3.0, -1.0, -0.5, -2.0])
    document_ids = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    token_rank = torch.tensor([[0, 0, 1, 1], [0, 0, 1, -1]])
    log_shares = torch.log(torch.tensor([[0.6, 0.4], [0.6, 0.4]]))
    startable = torch.tensor([[True, True, True, True], [False, False, True, True]])
    for weight, expected in ((0.5, 0), (0.8, 0), (0.82, 1), (1.0, 1)):
        chosen = choose_sentence(first_scores, document_ids, startable, token_rank, log_shares, weight)
        assert chosen[0].item() == expected
        assert chosen[1].item() == 1  # rank 0 has no place to start a quote: never chosen
    nowhere = torch.zeros(2, 4, dtype=torch.bool)
    assert choose_sentence(first_scores, document_ids, nowhere, token_rank, log_shares, 1.0).tolist() == [0, 0]


def test_penalize_query_tokens_subtracts_once_per_query_word():
    scores = torch.zeros(2, 6)
    query_ids = torch.tensor([[1, 3, 3, 0], [3, 4, 0, 0]])
    words = torch.tensor([[True, True, False, False], [False, False, False, False]])
    penalized = penalize_query_tokens(scores, query_ids, words, 2.5)
    assert penalized.tolist() == [[0, -2.5, 0, -2.5, 0, 0], [0] * 6]  # id 3 once though it occurs twice


@pytest.mark.parametrize(
    ("query", "question"),
    [
        ("Since when has the painting been in the Louvre?", True),
        ("at present who is the speaker of lok sabha", True),
        ("where did latavius murray go to high school", True),
        ("Mona Lisa", False),
        ("eiffel tower height", False),
        ("Whoville population", False),  # "who" inside a word is not a question word
    ],
)
def test_is_question(query, question):
    assert is_question(query) is question


DOCUMENT = "Café au lait, naïve Zoë! The Eiffel Tower was finished in 1889. It is 330 metres tall."


def test_spans_only_quotes_the_document_as_written(tiny_model):
    queries = ["when was it finished", "tower height", "who is zoë?"]
    outputs = tiny_model.generate_batch(queries, [DOCUMENT] * 3, spans_only=True, max_new_tokens=6)
    for text in outputs:
        assert text and text in DOCUMENT  # the random decoder still quotes: case and accents kept
    assert tiny_model.generate_batch(["q"], [""], spans_only=True) == [""]
    free = tiny_model.generate_batch(queries, [DOCUMENT] * 3, spans_only=False, max_new_tokens=6)
    assert any(text not in DOCUMENT for text in free)  # what the constraint changed


def test_span_sentences_keeps_the_span_in_the_best_sentence(tiny_model):
    best = tiny_model.rank_sentences("when was it finished", DOCUMENT, top_n=1)[0]
    text = tiny_model.generate("when was it finished", DOCUMENT, spans_only=True, span_sentences=1)
    sentence = next(s for s in split_sentences(DOCUMENT) if s.text == best.text)
    assert text and text in sentence.text


def test_generation_options_default_to_the_config_and_are_checked(tiny_encoder_dir):
    model = tiny_gear(tiny_encoder_dir, generation_spans_only=True, generation_span_sentences=1)
    assert model.generate("when was it finished", DOCUMENT, max_new_tokens=6) in DOCUMENT
    with pytest.raises(ValueError, match="needs spans_only"):
        model.generate("q", DOCUMENT, spans_only=False)
    with pytest.raises(ValueError, match="query_penalty"):
        model.generate("q", DOCUMENT, query_penalty=float("nan"))
    with pytest.raises(ValueError, match="span_sentences"):
        model.generate("q", DOCUMENT, span_sentences=-1)
    with pytest.raises(ValueError, match="generation_span_sentences needs generation_spans_only"):
        tiny_gear(tiny_encoder_dir, generation_span_sentences=1)


def test_the_quoted_sentence_is_the_rankings_best_with_the_lexical_share(tiny_encoder_dir):
    # With the lexical weight 1 the ranking is BM25's alone, which a random model's attention does not follow: the
    # quote must come from the sentence the ranking puts first, not from the attention's favourite.
    document = (
        "Zebras sleep standing up in the open savanna. Penguins huddle together through the polar winter. "
        "Camels store fat in their humps for long desert walks. Owls hunt mice at night in quiet forests."
    )
    model = tiny_gear(tiny_encoder_dir, ranking_lexical_weight=1.0, generation_spans_only=True)
    queries = ["where do zebras sleep?", "why do penguins huddle?", "what do camels store?", "when do owls hunt?"]
    texts = model.generate_batch(queries, [document] * 4, span_sentences=1, max_new_tokens=6)
    for query, text in zip(queries, texts, strict=True):
        best = model.rank_sentences(query, document, top_n=1)[0]
        assert query.split()[2].rstrip("?")[:4] in best.text.lower()  # BM25 found the animal's sentence
        assert text and text in best.text


def test_a_quote_is_grounded_where_it_was_copied_from(tiny_model):
    # The same sentence three times: a search for the quoted words finds the first copy, but the decoder quotes
    # from the sentence the ranking puts first, and the evidence must point there (a citation of that sentence).
    document = "The bell rang at noon. The bell rang at noon. The bell rang at noon."
    queries = ["when did the bell ring?", "what rang", "bell noon", "rang at noon?"]
    evidence = tiny_model.generate_evidence_batch(
        queries, [document] * 4, spans_only=True, span_sentences=1, max_new_tokens=4
    )
    best = [tiny_model.rank_sentences(q, document, top_n=1)[0] for q in queries]
    assert any(b.start_char > 0 for b in best)  # some query's best copy is not the first: the case that matters
    for found, sentence in zip(evidence, best, strict=True):
        assert found.text and document[found.start_char : found.end_char] == found.text
        assert sentence.start_char <= found.start_char and found.end_char <= sentence.end_char
        assert found.grounded and found.support == 1.0
    texts = tiny_model.generate_batch(queries, [document] * 4, spans_only=True, span_sentences=1, max_new_tokens=4)
    assert texts == [e.text for e in evidence]


def test_free_text_is_grounded_by_search(tiny_model):
    queries = ["when was it finished", "tower height"]
    evidence = tiny_model.generate_evidence_batch(queries, [DOCUMENT] * 2, spans_only=False, max_new_tokens=6)
    for found in evidence:
        assert found == ground_evidence(found.text, DOCUMENT)
    with pytest.raises(ValueError, match="min_support"):
        tiny_model.generate_evidence_batch(queries, [DOCUMENT] * 2, min_support=2)


def test_the_decoder_vote_quotes_inside_one_of_the_best_sentences(tiny_encoder_dir):
    document = (
        "Zebras sleep standing up in the open savanna. Penguins huddle together through the polar winter. "
        "Camels store fat in their humps for long desert walks. Owls hunt mice at night in quiet forests."
    )
    model = tiny_gear(tiny_encoder_dir, generation_spans_only=True, generation_span_sentences=2)
    queries = ["where do zebras sleep?", "why do penguins huddle?", "what do camels store?", "when do owls hunt?"]
    top_two = [model.rank_sentences(q, document, top_n=2) for q in queries]
    for weight in (0.0, 0.5, 100.0):
        evidence = model.generate_evidence_batch(queries, [document] * 4, decoder_vote=weight, max_new_tokens=6)
        for found, best in zip(evidence, top_two, strict=True):
            assert found.text and document[found.start_char : found.end_char] == found.text
            inside = [s.start_char <= found.start_char and found.end_char <= s.end_char for s in best]
            if weight:  # a vote picks one of the two and quotes inside it
                assert any(inside)
            else:  # without, the quote may run from one into the other: it starts in one of them
                assert any(s.start_char <= found.start_char < s.end_char for s in best)
    voting = tiny_gear(
        tiny_encoder_dir, generation_spans_only=True, generation_span_sentences=2, generation_decoder_vote=0.5
    )
    assert voting.generate_batch(queries, [document] * 4, max_new_tokens=6) == model.generate_batch(
        queries, [document] * 4, decoder_vote=0.5, max_new_tokens=6
    )
    with pytest.raises(ValueError, match="decoder_vote"):
        model.generate("q", document, decoder_vote=-1.0)
    with pytest.raises(ValueError, match="needs 2 or more"):
        tiny_gear(tiny_encoder_dir, generation_spans_only=True, generation_span_sentences=1, generation_decoder_vote=1)


def test_one_ranking_pass_gives_the_ranking_and_the_evidence(tiny_encoder_dir):
    document = (
        "Zebras sleep standing up in the open savanna. Penguins huddle together through the polar winter. "
        "Camels store fat in their humps for long desert walks. Owls hunt mice at night in quiet forests."
    )
    model = tiny_gear(tiny_encoder_dir, generation_spans_only=True, generation_span_sentences=1)
    queries = ["where do zebras sleep?", "why do penguins huddle?", "what do camels store?"]
    documents = [document, document[:96], ""]  # a shorter document, and an empty one
    ranked, evidence = model.rank_and_generate_batch(queries, documents, top_n=2, max_new_tokens=6)
    assert ranked == model.rank_sentences_batch(queries, documents, top_n=2)
    assert evidence == model.generate_evidence_batch(queries, documents, max_new_tokens=6)
    for sentences, found in zip(ranked[:2], evidence[:2], strict=True):  # quoted from the ranking's best
        assert sentences[0].start_char <= found.start_char and found.end_char <= sentences[0].end_char
    assert ranked[2] == [] and evidence[2].text == ""
    no_steps = model.rank_and_generate_batch(queries, documents, max_new_tokens=0)
    assert no_steps[0] == model.rank_sentences_batch(queries, documents)
    assert [e.text for e in no_steps[1]] == ["", "", ""]
    with pytest.raises(ValueError, match="top_n"):
        model.rank_and_generate_batch(queries, documents, top_n=0)
