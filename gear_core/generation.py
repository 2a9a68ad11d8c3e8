"""Evidence: what answers the query in a document, from the span reader (the default) or the paper's decoder, both
following one sentence-ranking pass (:mod:`gear_core.ranking`).

- :func:`rank_and_generate`: the ranking and the evidence of each (query, document) pair;
  ``GeARModel.rank_and_generate_batch`` and ``generate_evidence_batch`` call it.
- :func:`read_spans`: the span reader over the best sentences, or abstaining.
- :func:`decode_evidence`: the decoder's greedy search over the window holding the best sentence, quoting a span of
  the document (:mod:`gear_core.decoding`) or writing free text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

from gear_core.decoding import SpanConstraint, choose_sentence, is_question, penalize_query_tokens
from gear_core.evidence import (
    DEFAULT_MIN_SUPPORT,
    GroundedEvidence,
    check_min_support,
    ground_evidence,
    quoted_evidence,
)
from gear_core.layers import in_eval_mode
from gear_core.ranking import (
    check_top_n,
    document_windows,
    ranked_sentences,
    ranking_order,
    sentence_scores,
)
from gear_core.scoring import fill_unscored
from gear_core.span_reader import ReaderContext, best_spans, encode_reader_inputs
from gear_core.text import ScoredSentence, Sentence, token_sentence_index
from gear_core.tokenization import TOKENIZER_LOCK, check_batch_size, check_texts, tokenizable

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


@torch.no_grad()
@in_eval_mode
def rank_and_generate(
    model: GeARModel,
    queries: Sequence[str],
    documents: Sequence[str],
    top_n: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    no_repeat_ngram_size: int = 2,
    spans_only: bool | None = None,
    span_sentences: int | None = None,
    query_penalty: float | None = None,
    decoder_vote: float | None = None,
    min_support: float | None = None,
    evidence_from: str | None = None,
) -> tuple[list[list[ScoredSentence]], list[GroundedEvidence]]:
    """Each document's sentences ranked for its query, best first (as :meth:`rank_sentences_batch` ranks them; at
    most ``top_n``, all if None), and the evidence / answer the decoder writes, grounded to the document: both
    from one ranking pass, whose sentences the evidence is quoted from.

    Greedy decoding with a key/value cache, ``batch_size`` pairs at a time. A document longer than the window
    is read at the window that holds its best-ranked sentence. ``max_new_tokens`` defaults to
    ``max_target_length``; 0 gives "". ``no_repeat_ngram_size`` n > 0 forbids repeating any n tokens (a
    copying decoder can otherwise loop on a word piece until the length limit); 0 turns it off.
    ``spans_only``, ``span_sentences``, ``query_penalty`` and ``decoder_vote`` default to the config's
    ``generation_*`` fields (see :class:`GeARConfig`; the vote applies with 2 or more span sentences): with
    ``spans_only`` each output is a span of its document, as the document writes it, and keeps the characters
    it was quoted from (:func:`~gear_core.evidence.quoted_evidence`); free text is aligned to the span that best
    supports it (:func:`~gear_core.evidence.ground_evidence`). Either is ``grounded`` when its support reaches
    ``min_support`` (None: :data:`~gear_core.evidence.DEFAULT_MIN_SUPPORT`).

    ``evidence_from`` (default: the config's) ``"span_reader"`` takes the evidence from the span reader instead
    (:meth:`read_spans_batch` over the ranking's ``span_reader_sentences`` best sentences; its support is the
    reader's probability of the span, and below ``min_support``, None meaning the config's
    ``span_reader_min_support``, it abstains); the decoding options then do not apply.
    """
    check_top_n(top_n)
    queries, documents = check_texts(queries), check_texts(documents)
    if len(queries) != len(documents):
        raise ValueError(f"got {len(queries)} queries and {len(documents)} documents; they pair up one to one")
    steps = model.config.max_target_length if max_new_tokens is None else max_new_tokens
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int or None, got {max_new_tokens!r}")
    check_batch_size(batch_size)
    for name, value in (("no_repeat_ngram_size", no_repeat_ngram_size), ("span_sentences", span_sentences)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be a non-negative int (0: off), got {value!r}")
    if spans_only is not None and not isinstance(spans_only, bool):
        raise ValueError(f"spans_only must be True, False or None, got {spans_only!r}")
    for name, weight in (("query_penalty", query_penalty), ("decoder_vote", decoder_vote)):
        if weight is not None and (
            not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0 or math.isinf(weight)
        ):
            raise ValueError(f"{name} must be a finite non-negative number, got {weight!r}")
    spans_only = model.config.generation_spans_only if spans_only is None else spans_only
    span_sentences = model.config.generation_span_sentences if span_sentences is None else span_sentences
    query_penalty = model.config.generation_query_penalty if query_penalty is None else float(query_penalty)
    decoder_vote = model.config.generation_decoder_vote if decoder_vote is None else float(decoder_vote)
    if span_sentences and not spans_only:
        raise ValueError("span_sentences keeps spans inside the best sentences: it needs spans_only")
    evidence_from = model.config.evidence_from if evidence_from is None else evidence_from
    if evidence_from == "span_reader":
        sentences, (scores,) = model.sentence_scores_batch(queries, documents, batch_size=batch_size)
        best = [ranked_sentences(s, fill_unscored(sc), None) for s, sc in zip(sentences, scores, strict=True)]
        if steps:
            read = [b[: model.config.span_reader_sentences] for b in best]
            reader_batch = min(batch_size, CPU_READER_BATCH) if model.device.type == "cpu" else batch_size
            evidence = model.read_spans_batch(queries, documents, read, min_support, reader_batch)
        else:
            evidence = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
        return [b if top_n is None else b[:top_n] for b in best], evidence
    if evidence_from != "decoder":
        raise ValueError(f"evidence_from must be 'decoder', 'span_reader' or None, got {evidence_from!r}")
    min_support = DEFAULT_MIN_SUPPORT if min_support is None else min_support
    check_min_support(min_support)
    ranked: list[list[ScoredSentence]] = [[] for _ in queries]
    evidence: list[GroundedEvidence] = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
    # Longest documents first, so a batch holds similar lengths and little padding (as encoding does).
    order = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        outputs, sentences, scores = decode_evidence(
            model,
            [queries[i] for i in chunk],
            [documents[i] for i in chunk],
            steps,
            no_repeat_ngram_size,
            spans_only=spans_only,
            span_sentences=span_sentences,
            query_penalty=query_penalty,
            decoder_vote=decoder_vote,
        )
        for i, (text, span), document_sentences, document_scores in zip(chunk, outputs, sentences, scores, strict=True):
            ranked[i] = ranked_sentences(document_sentences, document_scores, top_n)
            evidence[i] = (
                ground_evidence(text, documents[i], min_support)
                if span is None
                else quoted_evidence(text, *span, documents[i], min_support)
            )
    return ranked, evidence


@torch.no_grad()
@in_eval_mode
def read_spans(
    model: GeARModel,
    queries: Sequence[str],
    documents: Sequence[str],
    sentences: Sequence[Sequence[Sentence]],
    min_support: float | None = None,
    batch_size: int = 16,
) -> list[GroundedEvidence]:
    """The span reader's answer to each query from the given sentences of its document (best first: the
    reader's input is cut at ``span_reader_max_length`` tokens from the end), as evidence citing the document:
    ``document[start_char:end_char] == text``. ``support`` is the reader's probability of that span against
    giving no answer (:func:`~gear_core.span_reader.best_spans`). Below ``min_support`` (None: the config's
    ``span_reader_min_support``) the reader abstains: the evidence is empty and ungrounded, with that support (no
    evidence rather than a wrong one). A pair with no sentence gets empty, ungrounded evidence."""
    queries, documents = check_texts(queries), check_texts(documents)
    if not len(queries) == len(documents) == len(sentences):
        raise ValueError("queries, documents and sentences pair up one to one")
    min_support = model.config.span_reader_min_support if min_support is None else min_support
    check_min_support(min_support)
    check_batch_size(batch_size)
    if model.span_reader is None:
        raise ValueError("this model has no span reader (GeARConfig.span_reader_layers = 0)")
    tokenizer = model._require_tokenizer()
    evidence = [GroundedEvidence("", None, None, 0.0, False)] * len(queries)
    # Longest inputs first, so a batch holds similar lengths and little padding.
    length = {i: len(queries[i]) + sum(len(s.text) for s in sentences[i]) for i, s in enumerate(sentences) if s}
    pairs = sorted(length, key=lambda i: -length[i])
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        contexts = [ReaderContext.of(sentences[i]) for i in chunk]
        with TOKENIZER_LOCK:
            inputs = encode_reader_inputs(
                tokenizer,
                [tokenizable(queries[i]) for i in chunk],
                [tokenizable(c.text) for c in contexts],
                model.config.span_reader_max_length,
            )
        start_logits, end_logits = model.span_logits(
            inputs.input_ids.to(model.device),
            inputs.attention_mask.to(model.device),
            inputs.token_type_ids.to(model.device),
        )
        first, last, _, _, span_support = best_spans(
            start_logits, end_logits, inputs.candidates.to(model.device), model.config.span_reader_max_answer_tokens
        )
        for row, i in enumerate(chunk):
            a, b = int(first[row]), int(last[row])
            span = contexts[row].to_document(int(inputs.offsets[row, a, 0]), int(inputs.offsets[row, b, 1]))
            if a == 0 or span is None:
                continue
            support = float(span_support[row])
            if support < min_support:  # abstain
                evidence[i] = GroundedEvidence("", None, None, support, False)
                continue
            evidence[i] = GroundedEvidence(documents[i][span[0] : span[1]], span[0], span[1], support, True)
    return evidence


def evidence_windows(model: GeARModel, queries: list[str], documents: list[str]) -> dict[str, Any]:
    """Each document ranked for its query (the ranking :meth:`rank_sentences_batch` gives) and the token window
    the decoder reads: the only one, or for a long document the window holding most of its best-ranked
    sentence (the first such window on a tie). A document of at most ``KEPT_WINDOWS`` windows reuses the
    ranking pass's states; a longer one encodes its window again (one window of many). Tensors ``input_ids``,
    ``attention_mask`` and ``document_states``, and per document ``offsets`` (the window's (start, end)
    characters per token), ``sentences`` and ``scores`` (the ranking's)."""
    tokenizer = model._require_tokenizer()
    ranking = model.config.sentence_scoring
    sentences, (scores,), ranked_windows = sentence_scores(
        model, queries, documents, [ranking], len(documents), keep_states=KEPT_WINDOWS
    )
    scores = [fill_unscored(s) for s in scores]
    chosen = []
    for d, document in enumerate(documents):
        if d not in ranked_windows:  # no sentence to rank: the document's first window, encoded below
            first = document_windows(model, [document])
            chosen.append({"input_ids": first["input_ids"][0], "offsets": first["offset_mapping"][0], "states": None})
            continue
        best = ranked_sentences(sentences[d], scores[d], 1)[0]

        def inside(window: dict[str, Any], sentence: ScoredSentence = best) -> int:
            return sum(sentence.start_char <= a and b <= sentence.end_char and a < b for a, b in window["offsets"])

        chosen.append(max(ranked_windows[d], key=inside))  # max keeps the first of equals
    with TOKENIZER_LOCK:
        padded = tokenizer.pad({"input_ids": [c["input_ids"] for c in chosen]}, return_tensors="pt")
    input_ids, attention_mask = padded["input_ids"].to(model.device), padded["attention_mask"].to(model.device)
    document_states = torch.zeros(
        len(chosen), input_ids.shape[1], model.config.hidden_size, dtype=model.dtype, device=model.device
    )
    encode = [d for d, c in enumerate(chosen) if c["states"] is None]
    if encode:  # padded to the longest of these alone, not to a long document's full window
        width = max(len(chosen[d]["input_ids"]) for d in encode)
        document_states[encode, :width] = model.document_encoder_module(
            input_ids=input_ids[encode, :width], attention_mask=attention_mask[encode, :width]
        ).last_hidden_state
    for d, c in enumerate(chosen):
        if c["states"] is not None:
            document_states[d, : len(c["states"])] = c["states"]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "document_states": document_states,
        "offsets": [c["offsets"] for c in chosen],
        "sentences": sentences,
        "scores": scores,
    }


def word_starts(model: GeARModel, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: which tokens begin a word (not a "##" continuation piece)."""
    if model._continuation_ids is None:
        tokenizer = model._require_tokenizer()
        with TOKENIZER_LOCK:
            pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        model._continuation_ids = torch.tensor([p.startswith("##") for p in pieces], dtype=torch.bool)
    return ~model._continuation_ids.to(input_ids.device)[input_ids]


def sentence_ranks(
    sentences: list[list[Sentence]],
    scores: list[np.ndarray],
    offsets: list[list[tuple[int, int]]],
    width: int,
    top_n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window token's sentence rank among the document's ``top_n`` best-ranked sentences ((B, width)
    long; -1 outside them) and the log of those sentences' shares of the ranking ((B, top_n); -inf where a
    document has fewer). ``scores`` are the ranking's: the same order as :meth:`rank_sentences_batch`."""
    token_rank = torch.full((len(sentences), width), -1, dtype=torch.long)
    log_shares = torch.full((len(sentences), top_n), -math.inf)
    for row, (document_sentences, document_scores, window) in enumerate(zip(sentences, scores, offsets, strict=True)):
        if not document_sentences:
            continue
        best = ranking_order(document_scores, top_n)
        spans = np.asarray(window).reshape(-1, 2)
        # The collator's token-to-sentence rule; [CLS] and [SEP] (empty spans) get -1.
        token_sentence = token_sentence_index(spans[:, 0], spans[:, 1], document_sentences)
        rank_of = np.full(len(document_sentences) + 1, -1)  # index -1 (no sentence) stays -1
        rank_of[best] = np.arange(len(best))
        token_rank[row, : len(spans)] = torch.from_numpy(rank_of[token_sentence])
        total = float(np.sum(document_scores))
        with np.errstate(divide="ignore"):
            shares = np.log(np.asarray(document_scores, dtype=np.float64)[best] / total) if total > 0 else 0.0
        log_shares[row, : len(best)] = torch.as_tensor(shares, dtype=torch.float32)
    return token_rank, log_shares


def decode_evidence(
    model: GeARModel,
    queries: list[str],
    documents: list[str],
    steps: int,
    no_repeat_ngram_size: int,
    *,
    spans_only: bool,
    span_sentences: int,
    query_penalty: float,
    decoder_vote: float,
) -> tuple[list[tuple[str, tuple[int, int] | None]], list[list[Sentence]], list[np.ndarray]]:
    """Per pair: (text, its (start, end) characters in the document when quoted, else None); and the ranking
    the evidence followed (each document's sentences and their scores)."""
    tokenizer = model._require_tokenizer()
    windows = evidence_windows(model, queries, documents)
    if steps == 0:
        return [("", None) for _ in queries], windows["sentences"], windows["scores"]
    query_inputs = model._tokenize(queries, model.config.max_query_length)
    document_inputs = {k: windows[k] for k in ("input_ids", "attention_mask")}
    document_states = windows["document_states"]
    ranking_layer = model.config.ranking_layer_index
    fused, attention_logits = model.fuse(
        query_inputs["input_ids"],
        query_inputs["attention_mask"],
        document_states,
        document_inputs["attention_mask"],
        attention_layers=(ranking_layer,) if model.config.decoder_copy_prior or span_sentences else (),
    )
    token_attention = None
    if ranking_layer in attention_logits:
        token_attention = model.ranking_token_attention(
            attention_logits[ranking_layer], query_inputs["input_ids"], query_inputs["attention_mask"]
        )
    read = model.read_document(
        fused, query_inputs["attention_mask"], document_states, document_inputs["attention_mask"]
    )
    memory, memory_mask = model.decoder_memory(
        fused, query_inputs["attention_mask"], read, document_inputs["attention_mask"]
    )
    source = model.copy_source(read, document_inputs["attention_mask"], document_inputs["input_ids"], token_attention)
    constraint = None
    token_rank = log_shares = None
    if spans_only:
        quotable = model._content_mask(document_inputs["input_ids"], document_inputs["attention_mask"])
        if span_sentences:
            token_rank, log_shares = sentence_ranks(
                windows["sentences"], windows["scores"], windows["offsets"], quotable.shape[1], span_sentences
            )
            token_rank, log_shares = token_rank.to(quotable.device), log_shares.to(quotable.device)
            quotable &= token_rank >= 0
        constraint = SpanConstraint(
            document_inputs["input_ids"], quotable, word_starts(model, document_inputs["input_ids"])
        )
    vote = decoder_vote if constraint is not None and span_sentences > 1 else 0.0
    query_ids = query_inputs["input_ids"]
    query_words = model._content_mask(query_ids, query_inputs["attention_mask"])
    query_words &= torch.tensor([is_question(q) for q in queries], device=model.device)[:, None]
    end_id = tokenizer.sep_token_id
    tokens = torch.full((len(queries), 1), tokenizer.bos_token_id, dtype=torch.long, device=model.device)
    rows = list(range(len(queries)))  # the pairs still generating, in the order of the tensors below
    outputs: list[list[int]] = [[] for _ in queries]
    span_ends: list[torch.Tensor | None] = [None for _ in queries]  # where each quoted span ends
    # transformers 5's default cache breaks BERT cross-attention: give the decoder an encoder-decoder cache
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    for step in range(steps):
        decoder_states = model.decoder.bert(
            input_ids=tokens[:, -1:],
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        scores = model.decoder_scores(
            decoder_states, torch.ones_like(tokens[:, -1:], dtype=torch.bool), source, tokens[:, -1:]
        ).float()
        if query_penalty:
            scores = penalize_query_tokens(scores, query_ids, query_words, query_penalty)
        if vote and step == 0:  # one sentence of the best few, then quote inside it alone
            chosen = choose_sentence(
                scores,
                constraint.document_ids,
                constraint.copyable & constraint.word_start,
                token_rank,
                log_shares,
                vote,
            )
            constraint = SpanConstraint(
                constraint.document_ids,
                constraint.copyable & (token_rank == chosen[:, None]),
                constraint.word_start,
            )
        if constraint is not None:
            scores = scores.masked_fill(~constraint.allowed(scores.shape[1], end_id), -math.inf)
        if no_repeat_ngram_size:
            scores = NoRepeatNGramLogitsProcessor(no_repeat_ngram_size)(tokens, scores)
        stuck = torch.isinf(scores).all(dim=1)  # every allowed token repeats an n-gram: end here
        scores[stuck, end_id] = 0.0
        next_token = scores.argmax(dim=-1)
        if constraint is not None:
            if constraint.ends is not None:
                for i in (next_token == end_id).nonzero()[:, 0].tolist():
                    span_ends[rows[i]] = constraint.ends[i]
            constraint = constraint.advance(next_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        for row, token in zip(rows, next_token.tolist(), strict=True):
            outputs[row].append(token)
        going = next_token != end_id
        if not going.all():  # finished pairs leave the batch (and the cache): the rest decode faster
            keep = going.nonzero()[:, 0]
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            rows = [rows[i] for i in keep.tolist()]
            tokens, memory, memory_mask = tokens[keep], memory[keep], memory_mask[keep]
            query_ids, query_words = query_ids[keep], query_words[keep]
            source = None if source is None else source.select(keep)
            constraint = None if constraint is None else constraint.select(keep)
    else:  # out of steps: the spans still going end where they are
        if constraint is not None and constraint.ends is not None:
            for i, row in enumerate(rows):
                span_ends[row] = constraint.ends[i]
    texts: list[tuple[str, tuple[int, int] | None]] = []
    for d, (document, ids) in enumerate(zip(documents, outputs, strict=True)):
        length = len(ids) - (1 if ids and ids[-1] == end_id else 0)
        ends = span_ends[d]
        if spans_only and length and ends is not None and bool(ends.any()):
            # Quote the document itself (its case, its spacing) rather than the uncased word pieces.
            end = int(ends.nonzero()[0, 0])
            offsets = windows["offsets"][d]
            span = (int(offsets[end - length + 1][0]), int(offsets[end][1]))
            texts.append((document[span[0] : span[1]], span))
        else:
            with TOKENIZER_LOCK:
                texts.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), None))
    return texts, windows["sentences"], windows["scores"]


#: A long document's windows whose document-tower states evidence generation keeps from the ranking pass (longer
#: documents encode their chosen window again); bounds the memory kept: about 0.3 MB a window at 192 x 384 float32.
KEPT_WINDOWS = 8
#: The span reader's largest batch on a CPU: larger ones read slower there (their activations outgrow the cache;
#: 256 validation pairs, 2 + 4 layers, 2 threads: 4.1 s in batches of 16, 4.5 s of 32, 7.1 s of 128).
CPU_READER_BATCH = 16
