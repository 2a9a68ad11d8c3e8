"""Batching: triples -> tensors for GeARModel.forward (runs in DataLoader workers)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from gear_core.data.triples import Triple, answer_span, sentence_index_at
from gear_core.scoring import bm25_sentence_scores, lexical_distribution
from gear_core.span_reader import ReaderContext, encode_reader_inputs
from gear_core.text import Sentence, split_sentences, token_sentence_index
from gear_core.tokenization import decoder_inputs
from gear_core.training.document_states import DocumentStateCache, state_key
from gear_core.training.teacher import SentenceTeacher


def document_key(document_id: str) -> int:
    """A stable 63-bit integer for a document id (equal ids mark in-batch and queued positives)."""
    return int.from_bytes(hashlib.blake2b(document_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


class TripleCollator:
    """Tokenises queries, documents and targets of a list of triples into one training batch (with a ``teacher``,
    also its soft sentence targets: :func:`teacher_targets`; with a ``lexical_temperature``, BM25's share of the
    gold sentences: :func:`lexical_gold_shares`)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_query_length: int = 64,
        max_document_length: int = 512,
        max_target_length: int = 64,
        teacher: SentenceTeacher | None = None,
        lexical_temperature: float | None = None,
    ) -> None:
        self.tokenizer, self.teacher, self.lexical_temperature = tokenizer, teacher, lexical_temperature
        self.max_query_length = max_query_length
        self.max_document_length = max_document_length
        self.max_target_length = max_target_length

    def _encode(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def __call__(self, triples: Sequence[Triple]) -> dict[str, torch.Tensor]:
        queries = self._encode([t.query for t in triples], self.max_query_length)
        documents = self.tokenizer(
            [t.document for t in triples],
            padding=True,
            truncation=True,
            max_length=self.max_document_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        candidates = documents["attention_mask"].bool() & ~documents["special_tokens_mask"].bool()
        gold = torch.stack(
            [
                gold_token_mask(offsets.numpy(), t.gold_spans)
                for offsets, t in zip(documents["offset_mapping"], triples, strict=True)
            ]
        )
        batch = {
            "query_input_ids": queries["input_ids"],
            "query_attention_mask": queries["attention_mask"],
            "document_input_ids": documents["input_ids"],
            "document_attention_mask": documents["attention_mask"],
            "document_gold_mask": gold & candidates,
            "document_candidate_mask": candidates,
            "document_ids": torch.tensor([document_key(t.document_id) for t in triples], dtype=torch.long),
            **decoder_inputs(self.tokenizer, [t.target for t in triples], self.max_target_length),
        }
        if self.teacher is not None:
            length = documents["input_ids"].shape[1]
            # Padding tokens have (0, 0) offsets, so they map to no sentence, as special tokens do.
            batch.update(
                teacher_targets(self.teacher, triples, [o.numpy() for o in documents["offset_mapping"]], length)
            )
        if self.lexical_temperature is not None:
            batch["lexical_gold_share"] = lexical_gold_shares(
                triples, [o.numpy() for o in documents["offset_mapping"]], gold, self.lexical_temperature
            )
        return batch


def gold_token_mask(offsets: np.ndarray, gold_spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(L,) tokens inside a gold span, by the rule sentence ranking uses (``token_sentence_index``)."""
    spans = [Sentence("", start, end) for start, end in sorted(set(gold_spans))]
    return torch.from_numpy(token_sentence_index(offsets[:, 0], offsets[:, 1], spans) >= 0)


class CachedStateCollator:
    """Batches for the fusion stage: queries and targets tokenised, documents read from a state cache.

    The batch has what :meth:`GeARModel.fusion_losses` reads: ``document_states`` (B, Ld, hidden) float32 beside
    the window's token ids, and the gold / candidate token masks built by the rule :class:`TripleCollator` uses.
    With a ``teacher`` it also has ``document_token_sentence`` (B, Ld; each token's sentence, -1 outside any, by
    ``token_sentence_index``) and ``teacher_sentence_probs`` (B, S): the teacher's soft target over the sentences
    the window holds. With a ``lexical_temperature`` it has ``lexical_gold_share`` (B,):
    :func:`lexical_gold_shares`.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        cache: DocumentStateCache,
        max_query_length: int = 64,
        max_target_length: int = 64,
        teacher: SentenceTeacher | None = None,
        lexical_temperature: float | None = None,
    ) -> None:
        self.tokenizer, self.cache, self.teacher = tokenizer, cache, teacher
        self.lexical_temperature = lexical_temperature
        self.max_query_length, self.max_target_length = max_query_length, max_target_length

    def __call__(self, triples: Sequence[Triple]) -> dict[str, torch.Tensor]:
        queries = self.tokenizer(
            [t.query for t in triples],
            padding=True,
            truncation=True,
            max_length=self.max_query_length,
            return_tensors="pt",
        )
        cached = [self.cache.get(state_key(t.document)) for t in triples]
        length = max(states.shape[0] for states, _ in cached)
        # The window's token ids (a copying decoder points at them): the cache's own tokenisation, repeated.
        document_ids = self.tokenizer(
            [t.document for t in triples],
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )["input_ids"]
        states = torch.zeros(len(triples), length, self.cache.hidden_size)
        attention = torch.zeros(len(triples), length, dtype=torch.long)
        gold = torch.zeros(len(triples), length, dtype=torch.bool)
        candidates = torch.zeros(len(triples), length, dtype=torch.bool)
        for row, ((document_states, offsets), triple) in enumerate(zip(cached, triples, strict=True)):
            n = document_states.shape[0]
            states[row, :n] = torch.from_numpy(np.asarray(document_states, dtype=np.float32))
            attention[row, :n] = 1
            offsets = np.asarray(offsets)
            special = offsets[:, 1] <= offsets[:, 0]  # [CLS] / [SEP] have empty offsets
            candidates[row, :n] = torch.from_numpy(~special)
            gold[row, :n] = gold_token_mask(offsets, triple.gold_spans) & candidates[row, :n]
            if int((document_ids[row] != self.tokenizer.pad_token_id).sum()) != n:
                raise ValueError(f"the state cache's window of {triple.document_id!r} does not match its tokens")
        batch = {
            "query_input_ids": queries["input_ids"],
            "query_attention_mask": queries["attention_mask"],
            "document_states": states,
            "document_input_ids": document_ids,
            "document_attention_mask": attention,
            "document_gold_mask": gold,
            "document_candidate_mask": candidates,
            **decoder_inputs(self.tokenizer, [t.target for t in triples], self.max_target_length),
        }
        if self.teacher is not None:
            batch.update(teacher_targets(self.teacher, triples, [offsets for _, offsets in cached], length))
        if self.lexical_temperature is not None:
            batch["lexical_gold_share"] = lexical_gold_shares(
                triples, [offsets for _, offsets in cached], gold, self.lexical_temperature
            )
        return batch


class SpanReaderCollator:
    """Batches for the span reader's stage: each question with a few sentences of its document, as serving gives
    the reader the ranking's best ones (:func:`reader_training_sentences`), and the answer's first and last tokens
    (0, the null answer, where the chosen sentences do not hold it). The sentences drawn for a triple come from a
    stream seeded by ``seed`` and the triple, so a resumed run reads the same batches."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        max_sentences: int = 3,
        abstain_share: float = 0.1,
        seed: int = 0,
    ) -> None:
        if max_sentences < 1 or not 0 <= abstain_share < 1:
            raise ValueError("need max_sentences >= 1 and 0 <= abstain_share < 1")
        self.tokenizer, self.max_length, self.seed = tokenizer, max_length, seed
        self.max_sentences, self.abstain_share = max_sentences, abstain_share

    def __call__(self, triples: Sequence[Triple]) -> dict[str, torch.Tensor]:
        contexts, answers = [], []
        # One sentence count per batch (drawn as each triple's draws are): inputs of like lengths, little padding.
        count = random.Random(f"{self.seed}\x00{triples[0].query}").randint(1, self.max_sentences) if triples else 1
        for triple in triples:
            rng = random.Random(f"{self.seed}\x00{triple.query}\x00{triple.document_id}")
            sentences, answer = reader_training_sentences(triple, rng, count, self.abstain_share)
            context = ReaderContext.of(sentences)
            contexts.append(context)
            answers.append(None if answer is None else context.to_context(*answer))
        inputs = encode_reader_inputs(
            self.tokenizer, [t.query for t in triples], [c.text for c in contexts], self.max_length
        )
        positions = [(0, 0) if a is None else inputs.answer_tokens(row, *a) for row, a in enumerate(answers)]
        return {
            "reader_input_ids": inputs.input_ids,
            "reader_attention_mask": inputs.attention_mask,
            "reader_token_type_ids": inputs.token_type_ids,
            "reader_candidates": inputs.candidates,
            "start_positions": torch.tensor([p[0] for p in positions]),
            "end_positions": torch.tensor([p[1] for p in positions]),
        }


def reader_training_sentences(
    triple: Triple, rng: random.Random, sentences: int = 3, abstain_share: float = 0.1
) -> tuple[list[Sentence], tuple[int, int] | None]:
    """The sentences the span reader reads for a question-answer triple, best first, and its answer's characters.

    Serving reads the ranking's ``n`` best sentences, so training does too (``n = sentences``). BM25 over the
    document's sentences stands in for the model's ranking: it ranks at no model cost, and its top 3 hold the gold
    sentence about as often (the probe in ``../shared/probes``: 97.4% against 98.8%). Where the gold sentence is
    not among them it takes the last place. In ``abstain_share`` of the triples the gold sentence is left out (the
    answer is None), which teaches the reader to abstain.
    """
    count = sentences
    sentences = split_sentences(triple.document)
    answer = answer_span(triple)
    gold = None if answer is None else sentence_index_at(sentences, answer[0])
    if gold is None or answer[1] > sentences[gold].end_char:
        return [], None
    scores = bm25_sentence_scores(triple.query, [s.text for s in sentences])
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    if len(sentences) > 1 and rng.random() < abstain_share:
        return [sentences[i] for i in order if i != gold][:count], None
    chosen = order[:count]
    if gold not in chosen:
        chosen[-1] = gold
    return [sentences[i] for i in chosen], answer


def window_sentences(triple: Triple, offsets: np.ndarray) -> tuple[list[Sentence], np.ndarray, np.ndarray]:
    """The document's sentences, each window token's sentence (``token_sentence_index``, -1 outside any) and the
    sentences the window holds, in order (a window may stop inside a sentence longer than itself)."""
    sentences = split_sentences(triple.document)
    offsets = np.asarray(offsets)
    index = token_sentence_index(offsets[:, 0], offsets[:, 1], sentences)
    return sentences, index, np.unique(index[index >= 0])


def teacher_targets(
    teacher: SentenceTeacher, triples: Sequence[Triple], offsets: Sequence[np.ndarray], length: int
) -> dict[str, torch.Tensor]:
    """``document_token_sentence`` (B, length; each token's sentence by ``token_sentence_index``, -1 outside any)
    and ``teacher_sentence_probs`` (B, S): the teacher's soft target over the sentences each window holds."""
    token_sentence = torch.full((len(triples), length), -1, dtype=torch.long)
    rows = []
    for row, (triple, window_offsets) in enumerate(zip(triples, offsets, strict=True)):
        sentences, index, seen = window_sentences(triple, window_offsets)
        token_sentence[row, : len(index)] = torch.from_numpy(index)
        probs = np.zeros(len(sentences), dtype=np.float32)
        if len(seen):
            probs[seen] = teacher.distribution(triple.query, [sentences[i].text for i in seen])
        rows.append(probs)
    targets = torch.zeros(len(triples), max(1, max(len(p) for p in rows)))
    for row, probs in enumerate(rows):
        targets[row, : len(probs)] = torch.from_numpy(probs)
    return {"document_token_sentence": token_sentence, "teacher_sentence_probs": targets}


def lexical_gold_shares(
    triples: Sequence[Triple], offsets: Sequence[np.ndarray], gold_mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(B,) the share of BM25's distribution over the sentences each window holds (what serving mixes in:
    :func:`~gear_core.scoring.lexical_distribution` at ``temperature``) that falls on the window's gold sentences,
    the sentences holding a token of ``gold_mask`` (B, Ld). 0 for a window without gold tokens."""
    shares = torch.zeros(len(triples))
    for row, (triple, window_offsets) in enumerate(zip(triples, offsets, strict=True)):
        sentences, index, seen = window_sentences(triple, window_offsets)
        gold = np.unique(index[(index >= 0) & gold_mask[row, : len(index)].numpy()])
        if not len(gold):
            continue
        scores = bm25_sentence_scores(triple.query, [sentences[i].text for i in seen])
        lexical = lexical_distribution(scores, temperature)
        shares[row] = float(lexical[np.isin(seen, gold)].sum())
    return shares


def document_token_starts(tokenizer: PreTrainedTokenizerBase, documents: Sequence[str]) -> list[np.ndarray]:
    """Each document's token start offsets, without special tokens and untruncated (one batched call)."""
    encoded = tokenizer(list(documents), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [np.array([start for start, _ in offsets], dtype=np.int64) for offsets in encoded["offset_mapping"]]


def crop_to_window(
    triple: Triple, tokenizer: PreTrainedTokenizerBase, max_length: int, token_starts: np.ndarray | None = None
) -> Triple:
    """A document longer than the model's window, cut to whole sentences around its gold sentence.

    Training truncates documents to ``max_length`` tokens; a gold sentence past that point would be lost (and
    the document's later sentences never seen). Serving reads long documents in windows, so training on a window
    that holds the gold sentence matches it. Where the gold sentence sits in the window is drawn from a random
    stream seeded by the query, so the model cannot learn a position. Documents that fit come back unchanged;
    a cropped one gets the id ``<id>@<first character>``. ``token_starts`` (:func:`document_token_starts`) saves
    tokenising a document again for each of its triples.
    """
    if not triple.gold_spans:
        return triple
    if token_starts is None:
        (token_starts,) = document_token_starts(tokenizer, [triple.document])
    budget = max_length - 2  # [CLS] and [SEP]
    if len(token_starts) <= budget:
        return triple
    sentences = split_sentences(triple.document)
    first_gold = min(start for start, _ in triple.gold_spans)
    gold = next((i for i, s in enumerate(sentences) if first_gold < s.end_char), len(sentences) - 1)
    first_token = np.searchsorted(token_starts, [s.start_char for s in sentences])
    end_token = np.searchsorted(token_starts, [s.end_char for s in sentences])
    low = high = gold
    forward_share = random.Random(triple.query).random()  # how often the window grows forward
    rng = random.Random(f"{triple.query}\x00{triple.document_id}")
    while True:
        can_grow_back = low > 0 and end_token[high] - first_token[low - 1] <= budget
        can_grow_forward = high + 1 < len(sentences) and end_token[high + 1] - first_token[low] <= budget
        if not (can_grow_back or can_grow_forward):
            break
        if can_grow_forward and (not can_grow_back or rng.random() < forward_share):
            high += 1
        else:
            low -= 1
    start, end = sentences[low].start_char, sentences[high].end_char
    spans = tuple((s - start, e - start) for s, e in triple.gold_spans if start <= s and e <= end)
    return Triple(
        triple.query, triple.document[start:end], triple.target, spans, f"{triple.document_id}@{start}", triple.kind
    )
