"""Retrieval layers (GeARConfig.retrieval_layers): the bi-encoder's own top layers. They start as copies of the
layers they replace (the embeddings do not move), and nothing but the embeddings reads them: sentence ranking, the
span reader and evidence stay as they are whatever the branch learns."""

import numpy as np
import pytest
import torch
from conftest import tiny_gear

from gear_core import GeARConfig, GeARModel
from gear_core.cli import main
from gear_core.momentum import MomentumEncoder

DOCUMENTS = ["Paris is in France. The Seine flows through it.", "Jupiter is the largest planet. It has moons."]
QUERIES = ["which river flows through paris", "what is the largest planet"]
# Longer than the tiny model's 48-token window: ranked in windows, weighted by the query's cosine to each window.
LONG = " ".join(f"Sentence {i} is about topic{i % 5} and item{i}." for i in range(30)) + " The Seine is a river."


def _ranked(model: GeARModel) -> list:
    return [
        [(s.start_char, s.end_char, s.score) for s in sentences]
        for sentences in model.rank_sentences_batch([*QUERIES, QUERIES[0]], [*DOCUMENTS, LONG])
    ]


def _perturbed(model: GeARModel) -> GeARModel:
    with torch.no_grad():
        for parameter in model.retrieval_layers.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_retrieval_layers_start_as_the_layers_they_replace(tiny_encoder_dir, tmp_path):
    base = tiny_gear(tiny_encoder_dir, shared_encoder=True).eval()
    branched = tiny_gear(tiny_encoder_dir, shared_encoder=True, retrieval_layers=1).eval()
    assert len(branched.retrieval_layers) == 1 and len(base.retrieval_layers) == 0
    assert not any(name.startswith("retrieval_layers.") for name in base.state_dict())  # v1.7's folders unchanged
    assert np.array_equal(branched.encode_documents(DOCUMENTS), base.encode_documents(DOCUMENTS))
    assert np.array_equal(branched.encode_queries(QUERIES), base.encode_queries(QUERIES))
    # Added by an override to a saved folder (float, then int8 storage): they start the same way.
    base.save_pretrained(tmp_path / "base")
    loaded = GeARModel.from_pretrained(tmp_path / "base", retrieval_layers=1)
    assert np.array_equal(loaded.encode_documents(DOCUMENTS), base.encode_documents(DOCUMENTS))
    assert main(["export", str(tmp_path / "base"), str(tmp_path / "int8"), "--dtype", "int8"]) == 0
    int8 = GeARModel.from_pretrained(tmp_path / "int8")
    int8_branched = GeARModel.from_pretrained(tmp_path / "int8", retrieval_layers=1)
    assert np.array_equal(int8_branched.encode_queries(QUERIES), int8.encode_queries(QUERIES))


def test_only_the_embeddings_read_the_retrieval_layers(tiny_encoder_dir, tmp_path):
    base = tiny_gear(tiny_encoder_dir, shared_encoder=True, span_reader_layers=1).eval()
    base.save_pretrained(tmp_path / "base")  # how the towers stage adds them to a trained model
    model = _perturbed(GeARModel.from_pretrained(tmp_path / "base", retrieval_layers=2)).eval()
    assert not np.allclose(model.encode_documents(DOCUMENTS), base.encode_documents(DOCUMENTS), atol=1e-3)
    assert not np.allclose(model.encode_queries(QUERIES), base.encode_queries(QUERIES), atol=1e-3)
    assert _ranked(model) == _ranked(base)  # the long document's window weighting included
    assert model.generate_batch(QUERIES, DOCUMENTS, max_new_tokens=4) == base.generate_batch(
        QUERIES, DOCUMENTS, max_new_tokens=4
    )
    ids = torch.tensor([[101, 2029, 102, 3000, 2003, 1999, 102]])
    with torch.no_grad():
        ours, theirs = (m.span_logits(ids, torch.ones_like(ids), None) for m in (model, base))
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_trained_retrieval_layers_are_saved_and_loaded(tiny_encoder_dir, tmp_path):
    model = _perturbed(tiny_gear(tiny_encoder_dir, shared_encoder=True, retrieval_layers=1)).eval()
    model.save_pretrained(tmp_path / "model")
    loaded = GeARModel.from_pretrained(tmp_path / "model")
    assert loaded.config.retrieval_layers == 1
    assert np.array_equal(loaded.encode_documents(DOCUMENTS), model.encode_documents(DOCUMENTS))


def test_the_momentum_encoder_follows_the_retrieval_layers(tiny_encoder_dir):
    model = tiny_gear(tiny_encoder_dir, shared_encoder=True, retrieval_layers=1).eval()
    momentum = MomentumEncoder(model, momentum=0.5)
    tokens = model._tokenize(DOCUMENTS, 48)

    def embeddings(encode) -> torch.Tensor:
        with torch.no_grad():
            return encode(tokens["input_ids"], tokens["attention_mask"], tokens["input_ids"], tokens["attention_mask"])

    start = embeddings(momentum.encode)[1]
    assert torch.allclose(start, torch.from_numpy(model.encode_documents(DOCUMENTS)), atol=1e-6)
    _perturbed(model)
    momentum.update(model)
    moved = embeddings(momentum.encode)[1]
    assert not torch.allclose(moved, start, atol=1e-4)  # the EMA step reached the branch


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retrieval_layers": 1}, "needs shared_encoder=True"),
        ({"retrieval_layers": 13, "shared_encoder": True}, r"retrieval_layers must lie in \[0, 12\]"),
        ({"retrieval_layers": -1, "shared_encoder": True}, r"retrieval_layers must lie in"),
        ({"retrieval_layers": 1.0, "shared_encoder": True}, "must be an int"),
    ],
)
def test_bad_retrieval_layers_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        GeARConfig(**overrides)
