"""The trained GeAR-MiniLM that ships inside gear_core: present, small, offline, and used when no model is given."""

from pathlib import Path

import pytest
import torch
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import gear_core
from gear_core import GeARModel
from llama_index_gear import GeARHighlighter, GeARRetriever
from llama_index_gear._model import clear_model_cache

FOLDER = Path(gear_core.DEFAULT_MODEL)
DOCUMENT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
    "It was designed by the company of the engineer Gustave Eiffel. "
    "The tower was completed in 1889 as the entrance to the World's Fair. "
    "It is 330 metres tall, about the height of an 81-storey building."
)


@pytest.fixture(scope="module")
def default_model() -> GeARModel:
    return GeARModel.from_pretrained(gear_core.DEFAULT_MODEL)


def test_the_checkpoint_ships_as_small_fp16_safetensors_with_a_model_card():
    weights = sorted(FOLDER.glob("*.safetensors"))
    assert weights, f"no weights in {FOLDER}"
    assert not [p for p in FOLDER.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) <= 40_000_000  # the tracked-size budget
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    for needed in ("gear train", "CC BY-SA 4.0", "Apache-2.0", "local R@1", "global R@5"):
        assert needed in card


def test_loads_offline_and_computes_in_float32(default_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert isinstance(default_model, GeARModel)
    assert {p.dtype for p in default_model.parameters()} == {torch.float32}
    assert default_model.config.shared_encoder and default_model.tokenizer is not None


def test_from_pretrained_knows_the_shipped_models_name(tmp_path, monkeypatch):
    """GeARModel.from_pretrained("gear-minilm") asked a model hub, retrying for 23 s, where the CLI and the
    adapters load the shipped model; a folder of that name in the working directory still comes first."""
    monkeypatch.chdir(tmp_path)
    model = GeARModel.from_pretrained("gear-minilm")
    assert model.config.name_or_path == gear_core.DEFAULT_MODEL
    (tmp_path / "gear-minilm").mkdir()
    with pytest.raises(FileNotFoundError, match="not a GeAR model folder"):
        GeARModel.from_pretrained("gear-minilm")


@pytest.mark.parametrize(
    ("query", "sentence"),
    [("when was the eiffel tower finished", 2), ("how tall is the tower", 3), ("who designed it", 1)],
)
def test_ranks_the_answering_sentence_first(default_model, query, sentence):
    ranked = default_model.rank_sentences(query, DOCUMENT, top_n=None)
    best = ranked[0]
    assert DOCUMENT[best.start_char : best.end_char] == best.text
    assert best.text == gear_core.split_sentences(DOCUMENT)[sentence].text


def test_adapters_use_it_when_no_model_is_given():
    clear_model_cache()
    try:
        highlighter = GeARHighlighter(top_n=1)
        assert Path(highlighter.model.name_or_path).resolve() == FOLDER.resolve()
        nodes = [TextNode(text=DOCUMENT, id_="eiffel"), TextNode(text="Oxygen is a chemical element.", id_="o")]
        retriever = GeARRetriever.from_defaults(nodes=nodes, similarity_top_k=1)
        assert retriever.model is highlighter.model  # one cached copy of the default weights
        (hit,) = retriever.retrieve("when was the eiffel tower completed")
        assert hit.node.node_id == "eiffel"
        (annotated,) = highlighter.postprocess_nodes(
            [NodeWithScore(node=hit.node, score=hit.score)], QueryBundle("when was the eiffel tower completed")
        )
        assert "1889" in annotated.node.metadata["gear_highlights"][0]["text"]
    finally:
        clear_model_cache()


def test_the_shipped_config_names_no_path_of_the_training_machine():
    import json

    from gear_core import DEFAULT_MODEL

    text = (Path(DEFAULT_MODEL) / "config.json").read_text(encoding="utf-8")
    config = json.loads(text)
    assert config["encoder_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    for marker in ("/work/", "/root/", "/home/", "/tmp/", "runs/", "site-packages"):
        assert marker not in text, marker


MONA_LISA = (
    "The Mona Lisa is a half-length portrait painting by the Italian artist Leonardo da Vinci. "
    "It has been described as the best known, the most visited and the most parodied work of art in the world. "
    "The painting has been in the collection of the Louvre in Paris since 1797."
)


def test_evidence_is_on_by_default_and_is_the_answer_with_its_span():
    """The README's evidence example: the shipped span reader marks the answer in the node, with exact offsets and
    a support above the model's threshold, and abstains (no evidence) on a node that does not hold the answer."""
    clear_model_cache()
    try:
        highlighter = GeARHighlighter(top_n=1)  # evidence follows the model: on for its span reader
        assert highlighter.writes_evidence
        node = NodeWithScore(node=TextNode(text=MONA_LISA, id_="mona"), score=1.0)
        answers = {
            "Since when has the painting been in the Louvre?": "1797",
            "Who painted the Mona Lisa?": "Leonardo da Vinci",
        }
        threshold = highlighter.model.config.span_reader_min_support
        for query, answer in answers.items():
            (annotated,) = highlighter.postprocess_nodes([node], QueryBundle(query))
            evidence = annotated.node.metadata["gear_evidence"]
            assert (evidence["text"], evidence["grounded"]) == (answer, True)
            assert threshold <= evidence["support"] <= 1.0
            assert MONA_LISA[evidence["start_char_idx"] : evidence["end_char_idx"]] == answer
        # Nodes on the topic that do not hold the answer: no evidence rather than a wrong one.
        oxygen = "Oxygen is a chemical element with symbol O and atomic number 8."
        for query, text in (
            ("How many people visit the Louvre each year?", MONA_LISA),
            ("Who discovered oxygen?", oxygen),
        ):
            other = NodeWithScore(node=TextNode(text=text, id_="other"), score=1.0)
            (annotated,) = highlighter.postprocess_nodes([other], QueryBundle(query))
            evidence = annotated.node.metadata["gear_evidence"]
            assert (evidence["text"], evidence["grounded"], evidence["start_char_idx"]) == ("", False, None)
            assert evidence["support"] < threshold
    finally:
        clear_model_cache()


def test_a_persisted_hybrid_retriever_reloads_with_identical_results(default_model, squad_dev, tmp_path):
    """The default retriever (hybrid: the shipped model's vectors and BM25, merged by standardised score) over 120
    SQuAD dev paragraphs, persisted and loaded from its folder alone: the same nodes, scores and retrievers."""
    paragraphs = [p for article in squad_dev["data"][:3] for p in article["paragraphs"]][:120]
    nodes = [TextNode(text=p["context"], id_=f"p{i}") for i, p in enumerate(paragraphs)]
    questions = [p["qas"][0]["question"] for p in paragraphs[::12]]
    retriever = GeARRetriever.from_defaults(nodes=nodes, model=default_model, similarity_top_k=5)
    assert retriever.searcher.mode == "hybrid"

    def results(r: GeARRetriever) -> list:
        return [[(n.node.node_id, n.score, n.node.metadata) for n in r.retrieve(q)] for q in questions]

    before = results(retriever)
    # the question's own paragraph is found (the ids of questions are those of every 12th paragraph)
    assert sum(f"p{12 * i}" in [node_id for node_id, _, _ in hits] for i, hits in enumerate(before)) >= 9
    retriever.persist(tmp_path / "retriever")
    clear_model_cache()
    try:
        assert results(GeARRetriever.from_persist_dir(tmp_path / "retriever")) == before
    finally:
        clear_model_cache()
