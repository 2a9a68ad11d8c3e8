"""GeARDataModule: SQuAD-format QA triples + synthesised triples for training, a held-out slice for validation.

Validation holds out whole articles of the SQuAD ``train`` split (never the ``test`` articles), and every
training source is filtered so no validation or test article's text reaches training.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gear_core.data.squad import SquadParagraph, hold_out_articles, load_split, read_squad
from gear_core.data.triples import Triple, read_paq_jsonl, read_triples_jsonl, triples_from_hf_squad, triples_from_squad
from gear_core.modeling import GeARModel
from gear_core.training.collator import TripleCollator


class TripleDataset(Dataset):
    def __init__(self, triples: Sequence[Triple]) -> None:
        self.triples = list(triples)

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, index: int) -> Triple:
        return self.triples[index]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch from ``seed + epoch``: resuming at an epoch reproduces its order.

    Lightning calls ``set_epoch`` before each epoch.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def _title_of(document_id: str) -> str:
    """Article title behind a document id: ``"Title#3"`` (SQuAD paragraph) or ``"wiki:Title"`` (summary)."""
    if document_id.startswith("wiki:"):
        return document_id[len("wiki:") :].replace("_", " ")
    return document_id.rsplit("#", 1)[0].replace("_", " ")


class GeARDataModule(L.LightningDataModule):
    """Training and validation data for GeAR.

    The tokenizer and the token limits come from the model being trained: ``GeARLightningModule.setup`` calls
    :meth:`use_model`, so the data never disagrees with the model's config.

    Args:
        squad_path: a SQuAD v1.1-format file; with ``split_path``, only its ``train`` articles are used.
        split_path: the project's ``split.json``.
        hf_squad: a ``datasets`` dataset name (e.g. ``"squad"``) for users with hub access; its train split.
        triples_paths: JSONL files of triples (e.g. written by ``gear synthesize``).
        paq_paths: PAQ-style JSONL files.
        validation_articles: how many ``train`` articles to hold out for validation.
        validation_max_questions: cap on validation questions (sampled with ``validation_seed``).
        max_train_triples: cap on training triples (sampled with ``seed``), for budgeted runs.
        seed: data order and the ``max_train_triples`` sample; change it to continue a run on a new order.
        validation_seed: which articles are held out (as :func:`~gear_core.data.squad.validation_paragraphs`
            and ``gear eval --split validation`` hold them out). Keep it fixed across the stages of one model:
            a stage with another value trains on the articles the earlier stages validated on.
    """

    def __init__(
        self,
        squad_path: str | None = None,
        split_path: str | None = None,
        hf_squad: str | None = None,
        triples_paths: list[str] | None = None,
        paq_paths: list[str] | None = None,
        validation_articles: int = 4,
        validation_max_questions: int | None = 500,
        max_train_triples: int | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        seed: int = 0,
        validation_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.collator: TripleCollator | None = None
        self.train_triples: list[Triple] = []
        self.validation_triples: list[Triple] = []
        self.validation_corpus: list[SquadParagraph] = []
        self.excluded_titles: set[str] = set()

    def setup(self, stage: str | None = None) -> None:
        if self.train_triples:
            return
        hp = self.hparams
        rng = random.Random(hp.seed)
        validation_rng = random.Random(hp.validation_seed)  # independent of `seed`: see the docstring
        triples: list[Triple] = []
        if hp.squad_path:
            split = load_split(hp.split_path) if hp.split_path else None
            train_titles = sorted(t.replace("_", " ") for t in split["train"]) if split else None
            paragraphs = read_squad(hp.squad_path, train_titles)
            held_out = hold_out_articles([p.title for p in paragraphs], hp.validation_articles, validation_rng)
            self.excluded_titles = held_out | ({t.replace("_", " ") for t in split["test"]} if split else set())
            self.validation_corpus = [p for p in paragraphs if p.title in held_out]
            validation = triples_from_squad(self.validation_corpus)
            if hp.validation_max_questions is not None and len(validation) > hp.validation_max_questions:
                validation = validation_rng.sample(validation, hp.validation_max_questions)
            self.validation_triples = validation
            triples += triples_from_squad(p for p in paragraphs if p.title not in held_out)
        if hp.hf_squad:
            import datasets

            triples += triples_from_hf_squad(datasets.load_dataset(hp.hf_squad, split="train"))
        for path in hp.triples_paths or []:
            triples += read_triples_jsonl(path)
        for path in hp.paq_paths or []:
            triples += read_paq_jsonl(path)
        triples = [t for t in triples if _title_of(t.document_id) not in self.excluded_titles]
        if hp.max_train_triples is not None and len(triples) > hp.max_train_triples:
            triples = rng.sample(triples, hp.max_train_triples)
        if not triples:
            raise ValueError("no training triples: give squad_path, hf_squad, triples_paths or paq_paths")
        self.train_triples = triples

    def use_model(self, model: GeARModel) -> None:
        """Tokenise with the model's tokenizer and token limits."""
        config = model.config
        self.collator = TripleCollator(
            model.tokenizer, config.max_query_length, config.max_document_length, config.max_target_length
        )

    def _collator(self) -> TripleCollator:
        if self.collator is None:
            raise RuntimeError("call use_model(model) first (GeARLightningModule.setup does it during fit)")
        return self.collator

    def train_dataloader(self) -> DataLoader:
        dataset = TripleDataset(self.train_triples)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.hparams.seed),
            collate_fn=self._collator(),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=True,  # equal batch shapes on every rank, so queue features can be all-gathered
        )

    def val_dataloader(self) -> DataLoader:
        # Validation goes through the model's serving API (encode / rank_sentences), which tokenises itself.
        return DataLoader(TripleDataset(self.validation_triples), batch_size=self.hparams.batch_size, collate_fn=list)
