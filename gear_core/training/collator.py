"""Batching: triples -> tensors for GeARModel.forward (runs in DataLoader workers)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from gear_core.data.triples import Triple
from gear_core.modeling import decoder_inputs
from gear_core.text import Sentence, token_sentence_index


def document_key(document_id: str) -> int:
    """A stable 63-bit integer for a document id (equal ids mark in-batch and queued positives)."""
    return int.from_bytes(hashlib.blake2b(document_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


class TripleCollator:
    """Tokenises queries, documents and targets of a list of triples into one training batch."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_query_length: int = 64,
        max_document_length: int = 512,
        max_target_length: int = 64,
    ) -> None:
        self.tokenizer = tokenizer
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
        return {
            "query_input_ids": queries["input_ids"],
            "query_attention_mask": queries["attention_mask"],
            "document_input_ids": documents["input_ids"],
            "document_attention_mask": documents["attention_mask"],
            "document_gold_mask": gold & candidates,
            "document_candidate_mask": candidates,
            "document_ids": torch.tensor([document_key(t.document_id) for t in triples], dtype=torch.long),
            **decoder_inputs(self.tokenizer, [t.target for t in triples], self.max_target_length),
        }


def gold_token_mask(offsets: np.ndarray, gold_spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(L,) tokens inside a gold span, by the rule sentence ranking uses (``token_sentence_index``)."""
    spans = [Sentence("", start, end) for start, end in sorted(set(gold_spans))]
    return torch.from_numpy(token_sentence_index(offsets[:, 0], offsets[:, 1], spans) >= 0)
