"""GeARServing: the serving API of :class:`~gear_core.modeling.GeARModel`, mixed into it. Texts in, arrays and
ranked sentences out: tokenizing (thread-safe), passages cut to the document window, query and document embeddings,
and the thin entry points to sentence ranking (:mod:`gear_core.ranking`) and evidence (:mod:`gear_core.generation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import BertModel, PreTrainedTokenizerBase

import gear_core.generation as generation
import gear_core.ranking as ranking
from gear_core.evidence import GroundedEvidence
from gear_core.layers import embed, in_eval_mode
from gear_core.scoring import SentenceScoring
from gear_core.text import ScoredSentence, Sentence, passage_spans, split_sentences
from gear_core.tokenization import TOKENIZER_LOCK, check_batch_size, check_texts, decoder_inputs, tokenizable


class GeARServing:
    """The serving methods; the model they run on provides ``config``, ``tokenizer``, ``device``, the towers
    (``query_encoder``, ``document_encoder_module``, ``retrieval_layers``) and the network's passes."""

    def tokenize(self, text: str) -> list[str]:
        """The model's word pieces of ``text``, safe to call from any thread (e.g. as a text splitter's token
        counter while the model serves queries: see ``TOKENIZER_LOCK``)."""
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            return tokenizer.tokenize(tokenizable(text))

    def count_tokens(self, texts: list[str]) -> list[int]:
        """How many word pieces each text holds (no [CLS] or [SEP]), safe to call from any thread."""
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            # verbose=False: a text longer than the model's limit is expected here, not worth a warning.
            encoded = tokenizer([tokenizable(t) for t in texts], add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    @property
    def passage_tokens(self) -> int:
        """Word pieces a passage may hold: the document window less [CLS] and [SEP]."""
        return self.config.max_document_length - 2

    def passage_spans(self, text: str, max_tokens: int | None = None) -> list[tuple[int, int]]:
        """``[start, end)`` spans cutting ``text`` into passages of at most ``max_tokens`` of this model's word
        pieces (default :attr:`passage_tokens`): :func:`gear_core.text.passage_spans`. ``gear demo`` and the
        LlamaIndex adapters' ``GeARPassageSplitter`` both cut documents with it, so they index the same passages."""
        return passage_spans(text, self.count_tokens, self.passage_tokens if max_tokens is None else max_tokens)

    def _require_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError("this GeARModel has no tokenizer; build it with from_encoder() or from_pretrained()")
        return self.tokenizer

    def decoder_inputs(self, targets: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenised targets for the decoder (:func:`gear_core.tokenization.decoder_inputs`)."""
        return decoder_inputs(self._require_tokenizer(), targets, self.config.max_target_length)

    def _tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        tokenizer = self._require_tokenizer()
        with TOKENIZER_LOCK:
            encoded = tokenizer(
                [tokenizable(t) for t in texts],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
        return {
            "input_ids": encoded["input_ids"].to(self.device),
            "attention_mask": encoded["attention_mask"].to(self.device),
        }

    @torch.no_grad()
    @in_eval_mode
    def _encode(
        self,
        texts: Sequence[str],
        encoder: BertModel,
        max_length: int,
        batch_size: int,
        show_progress: bool,
        retrieval_layers: Sequence[torch.nn.Module] = (),
    ) -> np.ndarray:
        texts = check_texts(texts)
        check_batch_size(batch_size)
        if not texts:
            return np.zeros((0, self.config.hidden_size), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        batches = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Encoding", unit="batch")
        chunks = []
        for start in batches:
            chunk = [texts[i] for i in order[start : start + batch_size]]
            inputs = self._tokenize(chunk, max_length)
            batch_embeddings = embed(encoder, inputs["input_ids"], inputs["attention_mask"], retrieval_layers)
            chunks.append(batch_embeddings.float().cpu().numpy())
        embeddings = np.empty((len(texts), self.config.hidden_size), dtype=np.float32)
        embeddings[order] = np.concatenate(chunks)
        return embeddings

    def encode_queries(self, queries: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32 L2-normalised query embeddings."""
        return self._encode(
            queries,
            self.query_encoder,
            self.config.max_query_length,
            batch_size,
            show_progress,
            self.retrieval_layers,
        )

    def encode_queries_as_fusion_reads(self, queries: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Query embeddings pooled from the encoder's last states, the space of the document states the fusion
        encoder reads (window weighting compares them with each window's pooled states). Without
        ``retrieval_layers`` these are :meth:`encode_queries`."""
        return self._encode(queries, self.query_encoder, self.config.max_query_length, batch_size, False)

    def encode_documents(
        self, documents: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """(n, dim) float32 L2-normalised document embeddings, in the query embeddings' space.

        Documents longer than ``max_document_length`` tokens are truncated (as any bi-encoder does).
        """
        return self._encode(
            documents,
            self.document_encoder_module,
            self.config.max_document_length,
            batch_size,
            show_progress,
            self.retrieval_layers,
        )

    def encode_document_sentences(
        self, documents: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each document's sentences embedded on their own by the document tower, for scoring documents by their
        best sentence (``GeARConfig.retrieval_sentence_weight``): ``(vectors, counts)``, the (m, dim) float32
        L2-normalised vectors of every document's sentences in document order, and (n,) how many each document
        has. A document with no sentence (all whitespace) counts its whole text as one, so every count is at least
        1. Sentences are split as sentence ranking splits them (:func:`gear_core.text.split_sentences`).
        """
        pieces = [[s.text for s in split_sentences(d)] or [d] for d in check_texts(documents)]
        vectors = self.encode_documents([p for piece in pieces for p in piece], batch_size, show_progress)
        return vectors, np.array([len(piece) for piece in pieces], dtype=np.int64)

    def sentence_scores_batch(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        scorings: Sequence[SentenceScoring] | None = None,
        batch_size: int = 16,
    ) -> tuple[list[list[Sentence]], list[list[np.ndarray]]]:
        """Every sentence's score for each (query, document) pair and each scoring (default: the config's):
        ``(sentences, scores)``, ``scores[s][p][i]`` sentence ``i`` of pair ``p`` under ``scorings[s]``
        (:func:`gear_core.ranking.score_sentences`)."""
        return ranking.score_sentences(self, queries, documents, scorings, batch_size)

    # Functions that take the model first are its methods as they stand: one signature, one docstring.
    document_token_scores = ranking.document_token_scores

    def ranking_token_attention(
        self, logits: torch.Tensor, query_input_ids: torch.Tensor, query_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, Ld) how much the query attends to each document token at the ranking layer
        (:func:`gear_core.ranking.ranking_token_attention`)."""
        return ranking.ranking_token_attention(self, logits, query_input_ids, query_attention_mask)

    def rank_sentences_batch(
        self, queries: Sequence[str], documents: Sequence[str], top_n: int | None = None, batch_size: int = 16
    ) -> list[list[ScoredSentence]]:
        """Each document's sentences ranked for its query by fusion cross-attention, best first (at most ``top_n``;
        all if None); long documents are read in windows (:func:`gear_core.ranking.rank_sentences`)."""
        return ranking.rank_sentences(self, queries, documents, top_n, batch_size)

    def rank_sentences(self, query: str, document: str, top_n: int | None = 3) -> list[ScoredSentence]:
        """The document's sentences that answer the query, best first (at most ``top_n``; all if None)."""
        return self.rank_sentences_batch([query], [document], top_n=top_n)[0]

    def rank_and_generate_batch(
        self, queries: Sequence[str], documents: Sequence[str], top_n: int | None = None, **options: Any
    ) -> tuple[list[list[ScoredSentence]], list[GroundedEvidence]]:
        """Each document's sentences ranked for its query (as :meth:`rank_sentences_batch`) and the evidence that
        answers it, grounded to the document, from one ranking pass. ``options``: ``max_new_tokens``,
        ``batch_size``, ``min_support``, ``evidence_from`` and the decoder's settings
        (:func:`gear_core.generation.rank_and_generate`)."""
        return generation.rank_and_generate(self, queries, documents, top_n, **options)

    def generate_evidence_batch(
        self, queries: Sequence[str], documents: Sequence[str], **options: Any
    ) -> list[GroundedEvidence]:
        """The evidence of :meth:`rank_and_generate_batch` alone, with the same ``options``."""
        return self.rank_and_generate_batch(queries, documents, top_n=1, **options)[1]

    def generate_batch(self, queries: Sequence[str], documents: Sequence[str], **options: Any) -> list[str]:
        """The texts of :meth:`generate_evidence_batch` (which says where in the document each one stands)."""
        return [e.text for e in self.generate_evidence_batch(queries, documents, **options)]

    def generate(self, query: str, document: str, max_new_tokens: int | None = None, **options: Any) -> str:
        """The evidence / answer for this query and document (``options`` as :meth:`generate_batch` takes them)."""
        return self.generate_batch([query], [document], max_new_tokens=max_new_tokens, **options)[0]

    read_spans_batch = generation.read_spans  # the span reader over given sentences (a function of the model)
