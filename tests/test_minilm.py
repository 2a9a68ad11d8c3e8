"""Real weights: a GeAR built from all-MiniLM-L6-v2 is, before training, exactly that bi-encoder."""

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from gear_core import GeARModel

PARAGRAPHS = [
    "Super Bowl 50 was an American football game to determine the champion of the National Football League "
    "(NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the "
    "National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their third Super Bowl title.",
    "Photosynthesis is a process used by plants and other organisms to convert light energy into chemical energy "
    "that, through cellular respiration, can later be released to fuel the organism's activities.",
    "Warsaw is the capital and largest city of Poland. It stands on the Vistula River in east-central Poland.",
]


def reference_embeddings(path, texts):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over the mask, then L2 normalisation."""
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@pytest.fixture(scope="module")
def minilm_gear(minilm_path):
    return GeARModel.from_encoder(minilm_path)


def squad_paragraphs(squad_dev, n=5):
    return [p["context"] for article in squad_dev["data"][:n] for p in article["paragraphs"][:1]]


def test_untrained_gear_embeds_like_minilm(minilm_path, minilm_gear):
    expected = reference_embeddings(minilm_path, PARAGRAPHS)
    for encode in (minilm_gear.encode_documents, minilm_gear.encode_queries):
        cosine = (encode(PARAGRAPHS) * expected).sum(axis=1)
        assert cosine.min() > 0.999, cosine


def test_untrained_gear_embeds_squad_paragraphs_like_minilm(minilm_path, minilm_gear, squad_dev):
    paragraphs = squad_paragraphs(squad_dev)
    cosine = (minilm_gear.encode_documents(paragraphs) * reference_embeddings(minilm_path, paragraphs)).sum(axis=1)
    assert cosine.min() > 0.999, cosine


def test_shared_encoder_gear_embeds_like_minilm(minilm_path):
    model = GeARModel.from_encoder(minilm_path, shared_encoder=True)
    cosine = (model.encode_queries(PARAGRAPHS) * reference_embeddings(minilm_path, PARAGRAPHS)).sum(axis=1)
    assert cosine.min() > 0.999


def test_real_model_ranks_and_generates_with_exact_spans(minilm_gear):
    document = PARAGRAPHS[0]
    ranked = minilm_gear.rank_sentences("Who won Super Bowl 50?", document, top_n=None)
    assert len(ranked) == 2
    for sentence in ranked:
        assert document[sentence.start_char : sentence.end_char] == sentence.text
    assert np.isfinite([s.score for s in ranked]).all()
    assert isinstance(minilm_gear.generate("Who won?", document, max_new_tokens=4), str)
