"""Data: SQuAD-format question-answer data, training triples, relevant-information synthesis."""

from gear_core.data.squad import QAExample, SquadParagraph, load_split, read_squad

__all__ = ["QAExample", "SquadParagraph", "load_split", "read_squad"]
