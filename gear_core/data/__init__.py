"""Data: SQuAD-format question-answer data, training triples, relevant-information synthesis."""

from gear_core.data.squad import (
    QAExample,
    SquadParagraph,
    hold_out_articles,
    load_split,
    read_squad,
    split_paragraphs,
    validation_paragraphs,
)
from gear_core.data.triples import (
    Triple,
    read_paq_jsonl,
    read_triples_jsonl,
    triples_from_hf_squad,
    triples_from_squad,
    write_triples_jsonl,
)

__all__ = [
    "QAExample",
    "SquadParagraph",
    "Triple",
    "hold_out_articles",
    "load_split",
    "read_paq_jsonl",
    "read_squad",
    "read_triples_jsonl",
    "split_paragraphs",
    "triples_from_hf_squad",
    "triples_from_squad",
    "validation_paragraphs",
    "write_triples_jsonl",
]
