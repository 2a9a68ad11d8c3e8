"""SQuAD-format reading: paragraphs with their questions, answers and the project's article split."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class QAExample:
    """One question about one paragraph, with every annotated answer (text and character start)."""

    id: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


@dataclass(frozen=True)
class SquadParagraph:
    """A paragraph (the retrieval unit) of a titled article, and its questions."""

    title: str
    index: int
    context: str
    questions: tuple[QAExample, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return f"{self.title}#{self.index}"


def _open_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SQuAD file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def read_squad(path: str | Path, titles: Collection[str] | None = None) -> list[SquadParagraph]:
    """Paragraphs of a SQuAD v1.1-format file (``.json`` or ``.json.gz``), optionally only some articles.

    Titles are compared with underscores read as spaces, so both spellings select the same article.
    """
    wanted = None if titles is None else {t.replace("_", " ") for t in titles}
    paragraphs = []
    for article in _open_json(path)["data"]:
        title = article["title"].replace("_", " ")
        if wanted is not None and title not in wanted:
            continue
        for index, paragraph in enumerate(article["paragraphs"]):
            questions = tuple(
                QAExample(
                    id=qa["id"],
                    question=qa["question"],
                    answers=tuple(a["text"] for a in qa["answers"]),
                    answer_starts=tuple(int(a["answer_start"]) for a in qa["answers"]),
                )
                for qa in paragraph["qas"]
            )
            paragraphs.append(SquadParagraph(title, index, paragraph["context"], questions))
    return paragraphs


def load_split(path: str | Path) -> dict[str, list[str]]:
    """The project's article split (``split.json``): ``{"train": [titles], "test": [titles]}``."""
    split = _open_json(path)
    return {name: list(split[name]) for name in ("train", "test") if name in split}


def hold_out_articles(titles: Sequence[str], count: int, rng: random.Random) -> set[str]:
    """The ``train`` articles held out for validation: ``count`` of the sorted titles, sampled with ``rng``.

    Training (``GeARDataModule``), the sentence-ranking ablation and any tuning all call this with the same
    seed, so they agree on the validation slice. At least one article is always left for training.
    """
    titles = sorted(set(titles))
    return set(rng.sample(titles, min(count, max(0, len(titles) - 1))))


def validation_paragraphs(
    squad_path: str | Path, split_path: str | Path, count: int = 4, seed: int = 0
) -> list[SquadParagraph]:
    """The paragraphs of the held-out validation articles, exactly as ``GeARDataModule(seed=seed)`` holds out."""
    train_titles = sorted(t.replace("_", " ") for t in load_split(split_path)["train"])
    paragraphs = read_squad(squad_path, train_titles)
    held_out = hold_out_articles([p.title for p in paragraphs], count, random.Random(seed))
    return [p for p in paragraphs if p.title in held_out]


def split_paragraphs(squad_path: str | Path, split_path: str | Path, name: str) -> list[SquadParagraph]:
    """The paragraphs of one part of the split (``"train"`` or ``"test"``; ``test`` is for reporting only)."""
    split = load_split(split_path)
    if name not in split:
        raise KeyError(f"{split_path} has no {name!r} part (it has {sorted(split)})")
    return read_squad(squad_path, split[name])
