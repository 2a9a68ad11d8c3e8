"""GeARDataModule: SQuAD-format QA triples + synthesised triples for training, a held-out slice for validation.

Validation holds out whole articles of the SQuAD ``train`` split (never the ``test`` articles), and every
training source is filtered so no validation or test article's text reaches training.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler

from gear_core.data.sources import (
    VALIDATION_FRACTION,
    data_path,
    existing_data_path,
    held_out,
    long_document_triples,
    read_nq_qed,
    split_nq,
    title_of,
    triples_from_nq,
)
from gear_core.data.squad import SquadParagraph, hold_out_articles, load_split, read_squad
from gear_core.data.triples import (
    Triple,
    answer_span,
    read_paq_jsonl,
    read_triples_jsonl,
    triples_from_hf_squad,
    triples_from_squad,
)
from gear_core.modeling import GeARModel
from gear_core.training.collator import (
    CachedStateCollator,
    SpanReaderCollator,
    TripleCollator,
    crop_to_window,
    document_token_starts,
)
from gear_core.training.document_states import DocumentStateCache, model_fingerprint
from gear_core.training.resume import ResumableDataLoader
from gear_core.training.teacher import SentenceTeacher


class TripleDataset(Dataset):
    def __init__(self, triples: Sequence[Triple]) -> None:
        self.triples = list(triples)

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, index: int) -> Triple:
        return self.triples[index]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch from ``seed + epoch``: resuming at an epoch reproduces its order.

    Lightning calls ``set_epoch`` before each epoch. :meth:`skip` makes the next iteration start part-way into
    the epoch's order, which is how :class:`~gear_core.training.resume.ResumableDataLoader` continues an epoch
    after a mid-epoch checkpoint.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, count: int) -> None:
        """The next iteration (only) leaves out the first ``count`` indices of its epoch's order."""
        self._skip = count

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        skip, self._skip = self._skip, 0
        return iter(torch.randperm(self.size, generator=generator)[skip:].tolist())

    def __len__(self) -> int:
        return self.size


@dataclass
class ValidationSet:
    """One validation source: questions with their gold documents, and the corpus global R@5 searches (if any)."""

    name: str
    triples: list[Triple]
    corpus_ids: list[str] = field(default_factory=list)
    corpus_texts: list[str] = field(default_factory=list)


def _corpus(triples: Sequence[Triple]) -> tuple[list[str], list[str]]:
    documents = {t.document_id: t.document for t in triples}
    return list(documents), list(documents.values())


class GeARDataModule(L.LightningDataModule):
    """Training and validation data for GeAR, from every source the project has.

    The tokenizer and the token limits come from the model being trained: ``GeARLightningModule.setup`` calls
    :meth:`use_model`, so the data never disagrees with the model's config. Paths are files, or names relative to
    the data root (``$GEAR_DATA_ROOT``, else ``../shared/data``; see :func:`gear_core.data.sources.data_path`).

    Validation sets (each a ``val/<name>/...`` metric; ``val/score`` is their mean), none of them ever trained on:

    - ``squad``: questions of ``validation_articles`` whole SQuAD articles held out (from ``squad_train_path`` when
      given, else from the split's ``train`` articles of ``squad_path``); local R@1 and global R@5 over their
      paragraphs.
    - ``long``: the same articles as single documents (read in windows), their questions asked against them.
    - ``nq``: a ``validation_fraction`` of the NQ examples, held out by example id.
    - ``synthetic``: the triples of ``triples_paths`` whose article title is held out (``validation_fraction``).

    Args:
        squad_path: a SQuAD v1.1-format file (the dev file); with ``split_path``, only its ``train`` articles train.
        split_path: the project's ``split.json``; its ``test`` articles are excluded from every source.
        squad_train_path: SQuAD v1.1 train (``squad/train-v1.1.json.gz``).
        nq_path: the NQ-QED JSONL (``nq-qed/qed-train.jsonl.gz``).
        hf_squad: a ``datasets`` dataset name (e.g. ``"squad"``) for users with hub access; its train split.
        triples_paths: JSONL(.gz) files of triples (e.g. written by ``gear synthesize``).
        paq_paths: PAQ-style JSONL files.
        validation_articles: how many SQuAD articles to hold out.
        validation_fraction: the share of NQ examples and of synthetic-triple article titles held out.
        validation_max_questions: cap on the questions of each validation set (sampled with ``validation_seed``).
        long_document_questions: cap on the ``long`` set's questions (each reads a whole article); 0 drops it.
        max_train_triples: cap on training triples (sampled with ``seed``), for budgeted runs.
        seed: data order and the ``max_train_triples`` sample; change it to continue a run on a new order.
        validation_seed: which articles and examples are held out (as
            :func:`~gear_core.data.squad.validation_paragraphs` and ``gear eval --split validation`` hold them out).
            Keep it fixed across the stages of one model: a stage with another value trains on the data the
            earlier stages validated on.
        document_states_dir: where the fusion stage caches the frozen document tower's token states (a subfolder
            per model fingerprint).
        sentence_teacher: a sentence encoder (e.g. ``"all-MiniLM-L6-v2"``) whose sentence scores become soft
            targets for the cross-attention (weight ``--model.teacher_weight``); see
            :mod:`gear_core.training.teacher`. Its embeddings are cached under ``teacher_dir``.
        teacher_temperature: the teacher's softmax temperature over a window's sentences (cosine / temperature).
        reader_max_sentences: the span reader's stage reads 1 to this many sentences per question
            (:func:`~gear_core.training.collator.reader_training_sentences`).
        reader_abstain_share: the share of the span reader's questions read without their gold sentence.
    """

    def __init__(
        self,
        squad_path: str | None = None,
        split_path: str | None = None,
        squad_train_path: str | None = None,
        nq_path: str | None = None,
        hf_squad: str | None = None,
        triples_paths: list[str] | None = None,
        paq_paths: list[str] | None = None,
        validation_articles: int = 4,
        validation_fraction: float = VALIDATION_FRACTION,
        validation_max_questions: int | None = 500,
        long_document_questions: int = 100,
        max_train_triples: int | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        seed: int = 0,
        validation_seed: int = 0,
        document_states_dir: str = "runs/cache/document_states",
        sentence_teacher: str | None = None,
        teacher_temperature: float = 0.05,
        teacher_dir: str = "runs/cache/sentence_teacher",
        reader_max_sentences: int = 3,
        reader_abstain_share: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.collator: TripleCollator | CachedStateCollator | SpanReaderCollator | None = None
        self.train_triples: list[Triple] = []
        self.validation_sets: list[ValidationSet] = []
        self.excluded_titles: set[str] = set()
        self.source_counts: dict[str, int] = {}

    @property
    def validation_triples(self) -> list[Triple]:
        """The SQuAD validation questions (the first set)."""
        return self.validation_sets[0].triples if self.validation_sets else []

    def setup(self, stage: str | None = None) -> None:
        if self.train_triples:
            return
        hp = self.hparams
        rng = random.Random(hp.seed)
        sources: dict[str, list[Triple]] = {}
        split = load_split(existing_data_path(hp.split_path, "split file")) if hp.split_path else None
        test_titles = {t.replace("_", " ") for t in split["test"]} if split else set()
        dev_paragraphs: list[SquadParagraph] = []
        if hp.squad_path:
            train_titles = sorted(t.replace("_", " ") for t in split["train"]) if split else None
            dev_paragraphs = read_squad(existing_data_path(hp.squad_path, "SQuAD file"), train_titles)
        train_paragraphs = (
            read_squad(existing_data_path(hp.squad_train_path, "SQuAD train file")) if hp.squad_train_path else []
        )
        # Held-out articles come from SQuAD train when it is given (then all the dev `train` articles train).
        pool = train_paragraphs or dev_paragraphs
        validation_rng = random.Random(hp.validation_seed)  # independent of `seed`: see the docstring
        held_out_titles = hold_out_articles([p.title for p in pool], hp.validation_articles, validation_rng)
        self.excluded_titles = held_out_titles | test_titles
        held_out_paragraphs = [p for p in pool if p.title in held_out_titles]
        squad_validation = triples_from_squad(held_out_paragraphs)
        validation: list[ValidationSet] = []
        if squad_validation:
            ids, texts = [p.id for p in held_out_paragraphs], [p.context for p in held_out_paragraphs]
            validation.append(ValidationSet("squad", self._sample(squad_validation, validation_rng), ids, texts))
            if hp.long_document_questions > 0:
                long = long_document_triples(held_out_paragraphs)
                if len(long) > hp.long_document_questions:
                    long = validation_rng.sample(long, hp.long_document_questions)
                validation.append(ValidationSet("long", long))
        if dev_paragraphs:
            sources["squad_dev"] = triples_from_squad(p for p in dev_paragraphs if p.title not in held_out_titles)
        if train_paragraphs:
            sources["squad_train"] = triples_from_squad(p for p in train_paragraphs if p.title not in held_out_titles)
        if hp.nq_path:
            examples = read_nq_qed(existing_data_path(hp.nq_path, "NQ-QED file"))
            kept, held = split_nq(examples, hp.validation_fraction, hp.validation_seed)
            sources["nq"] = triples_from_nq(kept)
            nq_validation = triples_from_nq(held)
            if nq_validation:
                validation.append(
                    ValidationSet("nq", self._sample(nq_validation, validation_rng), *_corpus(nq_validation))
                )
        if hp.hf_squad:
            import datasets

            sources["hf_squad"] = triples_from_hf_squad(datasets.load_dataset(hp.hf_squad, split="train"))
        hint = "Write it with `gear synthesize` (README, Training), or leave it out: --data.triples_paths '[]'"
        synthetic = [
            t
            for path in hp.triples_paths or []
            for t in read_triples_jsonl(existing_data_path(path, "triples file", hint))
        ]
        held = [held_out(title_of(t.document_id), hp.validation_fraction, hp.validation_seed) for t in synthetic]
        synthetic_validation = [t for t, h in zip(synthetic, held, strict=True) if h]
        if synthetic:
            sources["synthetic"] = [t for t, h in zip(synthetic, held, strict=True) if not h]
        if synthetic_validation:
            sampled = self._sample(
                [t for t in synthetic_validation if title_of(t.document_id) not in self.excluded_titles],
                validation_rng,
            )
            validation.append(ValidationSet("synthetic", sampled, *_corpus(sampled)))
        if hp.paq_paths:
            sources["paq"] = [t for path in hp.paq_paths for t in read_paq_jsonl(data_path(path))]
        for name in sources:
            sources[name] = [t for t in sources[name] if title_of(t.document_id) not in self.excluded_titles]
        triples = [t for name in sources for t in sources[name]]
        if hp.max_train_triples is not None and len(triples) > hp.max_train_triples:
            triples = rng.sample(triples, hp.max_train_triples)
        if not triples:
            raise ValueError("no training triples: give squad_path, squad_train_path, nq_path, triples_paths, ...")
        self.source_counts = {name: len(value) for name, value in sources.items()}
        self.train_triples = triples
        self.validation_sets = validation
        rank_zero_info(
            f"GeAR data: {len(triples):,} training triples {self.source_counts}; validation "
            + ", ".join(f"{v.name} {len(v.triples)} questions" for v in validation)
        )

    def _sample(self, triples: list[Triple], rng: random.Random) -> list[Triple]:
        cap = self.hparams.validation_max_questions
        return rng.sample(triples, cap) if cap is not None and len(triples) > cap else triples

    def use_model(
        self,
        model: GeARModel,
        cached_document_states: bool = False,
        lexical_temperature: float | None = None,
        span_reader: bool = False,
    ) -> None:
        """Tokenise with the model's tokenizer and token limits; cut long documents to windows around their gold
        sentence. With ``cached_document_states`` (the fusion stage), the frozen document tower's token states
        are computed once (or found in ``document_states_dir``) and batches carry them instead of token ids.
        With ``lexical_temperature``, batches carry BM25's share of the gold sentences (``lexical_gold_share``).
        With ``span_reader`` (the span reader's stage), only question-answer triples whose answer stands in their
        document train, in batches of :class:`~gear_core.training.collator.SpanReaderCollator`."""
        config = model.config
        tokenizer = model.tokenizer
        if span_reader:
            kept = [t for t in self.train_triples if answer_span(t) is not None]
            rank_zero_info(f"span reader: {len(kept):,} of {len(self.train_triples):,} triples have an answer span")
            if not kept:
                raise ValueError("the span reader trains on question-answer triples: none has an answer span")
            self.train_triples = kept
            self.collator = SpanReaderCollator(
                tokenizer,
                config.span_reader_max_length,
                self.hparams.reader_max_sentences,
                self.hparams.reader_abstain_share,
                self.hparams.seed,
            )
            return
        documents = list({t.document for t in self.train_triples})
        starts = dict(zip(documents, document_token_starts(tokenizer, documents), strict=True))
        self.train_triples = [
            crop_to_window(t, tokenizer, config.max_document_length, starts[t.document]) for t in self.train_triples
        ]
        teacher = None
        if self.hparams.sentence_teacher:
            name = Path(self.hparams.sentence_teacher).name
            teacher = SentenceTeacher.build(
                self.hparams.sentence_teacher,
                self.train_triples,
                Path(self.hparams.teacher_dir) / name,
                self.hparams.teacher_temperature,
            )
        if not cached_document_states:
            self.collator = TripleCollator(
                model.tokenizer,
                config.max_query_length,
                config.max_document_length,
                config.max_target_length,
                teacher,
                lexical_temperature,
            )
            return
        folder = Path(self.hparams.document_states_dir) / model_fingerprint(model)
        cache = DocumentStateCache.build(model, (t.document for t in self.train_triples), folder)
        self.collator = CachedStateCollator(
            model.tokenizer, cache, config.max_query_length, config.max_target_length, teacher, lexical_temperature
        )

    def _collator(self) -> TripleCollator | CachedStateCollator | SpanReaderCollator:
        if self.collator is None:
            raise RuntimeError("call use_model(model) first (GeARLightningModule.setup does it during fit)")
        return self.collator

    def train_dataloader(self) -> DataLoader:
        # Resumable: Lightning saves how far into the epoch it is and continues there (see training/resume.py).
        dataset = TripleDataset(self.train_triples)
        return ResumableDataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.hparams.seed),
            collate_fn=self._collator(),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=True,  # equal batch shapes on every rank, so queue features can be all-gathered
        )

    def val_dataloader(self) -> list[DataLoader]:
        # Validation goes through the model's serving API (encode / rank_sentences), which tokenises itself.
        return [
            DataLoader(TripleDataset(v.triples), batch_size=self.hparams.batch_size, collate_fn=list)
            for v in self.validation_sets
        ]
