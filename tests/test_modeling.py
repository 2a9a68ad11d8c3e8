"""GeARModel plumbing on a tiny random config: shapes, losses, training, persistence, spans, bad input."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_gear

from gear_core import GeARConfig, GeARModel
from gear_core.momentum import MomentumEncoder
from gear_core.scoring import pool_attention, pool_sentences
from gear_core.text import split_sentences

DOCUMENT = (
    "The Eiffel Tower is in Paris. It was finished in 1889. It was finished in 1889. "
    "  Zoë’s café — naïve? ✓ Yes! 東京は日本の首都です。 The end."
)


def batch(model, queries, documents, targets=None):
    q = model._tokenize(queries, model.config.max_query_length)
    d = model._tokenize(documents, model.config.max_document_length)
    inputs = {
        "query_input_ids": q["input_ids"],
        "query_attention_mask": q["attention_mask"],
        "document_input_ids": d["input_ids"],
        "document_attention_mask": d["attention_mask"],
    }
    if targets is not None:
        inputs.update(model.decoder_inputs(targets))
    return inputs


def test_encode_shapes_and_normalisation(tiny_model):
    queries = tiny_model.encode_queries(["a", "b c", ""])
    documents = tiny_model.encode_documents([DOCUMENT])
    assert queries.shape == (3, 32) and queries.dtype == np.float32
    assert documents.shape == (1, 32)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert tiny_model.encode_queries([]).shape == (0, 32)


def test_batched_encoding_matches_one_at_a_time(tiny_model):
    texts = ["short", "a much longer text with many more tokens in it", "middle length text"]
    together = tiny_model.encode_documents(texts, batch_size=2)
    alone = np.concatenate([tiny_model.encode_documents([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_bad_inputs_have_clear_errors(tiny_model):
    with pytest.raises(TypeError, match="single string"):
        tiny_model.encode_queries("not a list")
    with pytest.raises(TypeError, match="item 1"):
        tiny_model.encode_documents(["ok", None])
    with pytest.raises(ValueError, match="pair up"):
        tiny_model.rank_sentences_batch(["q"], ["d1", "d2"])


def test_config_rejects_bad_choices():
    with pytest.raises(ValueError, match="ranking_head_pooling"):
        GeARConfig(ranking_head_pooling="median")
    with pytest.raises(ValueError, match="ranking_layer"):
        GeARConfig(ranking_layer=12)
    with pytest.raises(ValueError, match="no cross-attention"):
        GeARConfig(cross_attention_layers=[0, 1], ranking_layer=-3)


def test_fusion_attention_is_a_distribution_over_real_document_tokens(tiny_model):
    inputs = batch(tiny_model, ["where", "when was it finished"], ["Short doc.", DOCUMENT])
    states = tiny_model.document_encoder_module(
        input_ids=inputs["document_input_ids"], attention_mask=inputs["document_attention_mask"]
    ).last_hidden_state
    fused, logits = tiny_model.fuse(
        inputs["query_input_ids"],
        inputs["query_attention_mask"],
        states,
        inputs["document_attention_mask"],
        attention_layers=[tiny_model.config.ranking_layer_index],
    )
    attention = logits[tiny_model.config.ranking_layer_index].softmax(-1)
    assert fused.shape == (2, inputs["query_input_ids"].shape[1], 32)
    assert attention.shape == (2, 4, inputs["query_input_ids"].shape[1], inputs["document_input_ids"].shape[1])
    assert torch.allclose(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-5)
    padding = inputs["document_attention_mask"][0] == 0
    assert padding.any() and attention[0][..., padding].abs().max() == 0


def test_attention_pooling_hand_case():
    attention = torch.tensor([[[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
    mask = torch.tensor([[1, 1]])
    assert torch.allclose(pool_attention(attention, mask, "mean", "cls"), torch.tensor([[0.75, 0.25, 0.0]]))
    assert torch.allclose(pool_attention(attention, mask, "mean", "mean"), torch.tensor([[0.375, 0.375, 0.25]]))
    assert torch.allclose(pool_attention(attention, mask, "max", "max"), torch.tensor([[1.0, 1.0, 1.0]]))
    assert torch.allclose(
        pool_attention(attention, torch.tensor([[1, 0]]), "mean", "mean"), torch.tensor([[0.75, 0.25, 0.0]])
    )


def test_sentence_pooling_hand_case():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    index = np.array([-1, 0, 0, 1, -1])
    assert np.allclose(pool_sentences(scores, index, 3, "sum"), [0.5, 0.4, np.nan], equal_nan=True)
    assert np.allclose(pool_sentences(scores, index, 3, "mean"), [0.25, 0.4, np.nan], equal_nan=True)
    assert np.allclose(pool_sentences(scores, index, 3, "max"), [0.3, 0.4, np.nan], equal_nan=True)


def test_ranked_spans_slice_the_document_exactly(tiny_model):
    ranked = tiny_model.rank_sentences("when was it finished", DOCUMENT, top_n=None)
    assert len(ranked) == 7  # the Japanese sentence ends at its 。 (punkt kept it with the next English one)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    for sentence in ranked:
        assert DOCUMENT[sentence.start_char : sentence.end_char] == sentence.text
    repeated = [s for s in ranked if s.text == "It was finished in 1889."]
    assert len({s.start_char for s in repeated}) == 2
    assert len(tiny_model.rank_sentences("q", DOCUMENT, top_n=2)) == 2


def test_long_documents_are_read_in_windows(tiny_model):
    document = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(40))
    tokens = len(tiny_model.tokenizer(document)["input_ids"])
    assert tokens > 3 * tiny_model.config.max_document_length
    ranked = tiny_model.rank_sentences("topic 33", document, top_n=None)
    assert len(ranked) == 40
    assert all(s.score > 0 for s in ranked)  # every sentence was seen by some window
    for sentence in ranked:
        assert document[sentence.start_char : sentence.end_char] == sentence.text


def test_batch_ranking_matches_single_pairs(tiny_model):
    queries, documents = ["when", "eiffel", "x"], [DOCUMENT, "One. Two.", ""]
    together = tiny_model.rank_sentences_batch(queries, documents, batch_size=2)
    for query, document, result in zip(queries, documents, together, strict=True):
        alone = tiny_model.rank_sentences(query, document, top_n=None)
        assert [s.text for s in result] == [s.text for s in alone]
        assert np.allclose([s.score for s in result], [s.score for s in alone], atol=1e-5)


def test_empty_document_has_no_sentences(tiny_model):
    assert tiny_model.rank_sentences("anything", "") == []
    assert tiny_model.rank_sentences("anything", "   \n ") == []
    assert tiny_model.rank_sentences("", "One sentence.")[0].text == "One sentence."


def test_generate_returns_text(tiny_model):
    text = tiny_model.generate("when was it finished", DOCUMENT, max_new_tokens=5)
    assert isinstance(text, str) and text
    assert tiny_model.generate_batch([], []) == []
    queries, documents = ["a", "b longer query", "c"], ["Doc one.", "", DOCUMENT]
    together = tiny_model.generate_batch(queries, documents, max_new_tokens=3)
    assert len(together) == 3
    assert tiny_model.generate_batch(queries, documents, max_new_tokens=3, batch_size=1) == together


def test_forward_returns_weighted_sum_of_losses(tiny_model):
    inputs = batch(tiny_model, ["q one", "q two"], ["doc one.", "doc two."], targets=["one", "two words"])
    out = tiny_model(**inputs)
    assert out.loss.item() == pytest.approx(out.contrastive_loss.item() + 0.25 * out.lm_loss.item(), rel=1e-5)
    assert out.lm_loss.item() > 0 and out.contrastive_loss.item() > 0
    no_targets = tiny_model(**{k: v for k, v in inputs.items() if not k.startswith("target")})
    assert no_targets.lm_loss is None and no_targets.loss is no_targets.contrastive_loss


def test_forward_with_momentum_queue_and_soft_labels(tiny_model):
    momentum = MomentumEncoder(tiny_model)
    inputs = batch(tiny_model, ["q one", "q two"], ["doc one.", "doc two."], targets=["one", "two"])
    ids = torch.tensor([10, 11])
    with pytest.raises(ValueError, match="document_ids"):
        tiny_model(**inputs, momentum=momentum)
    for _ in range(3):
        momentum.update(tiny_model)
        out = tiny_model(**inputs, document_ids=ids, momentum=momentum, soft_label_weight=0.4)
        momentum.queue.enqueue(out.momentum_query_embeds, out.momentum_document_embeds, ids)
        assert torch.isfinite(out.loss)
    assert int(momentum.queue.num_filled) == 6


def test_a_few_optimiser_steps_lower_the_loss(tiny_model):
    torch.manual_seed(0)
    inputs = batch(
        tiny_model,
        ["capital of france", "largest planet", "who wrote hamlet", "boiling point of water"],
        [
            "Paris is the capital of France.",
            "Jupiter is the largest planet.",
            "Hamlet was written by Shakespeare.",
            "Water boils at 100 degrees.",
        ],
        targets=["Paris", "Jupiter", "Shakespeare", "100 degrees"],
    )
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model.train()
    losses = []
    for _ in range(8):
        out = tiny_model(**inputs)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert tiny_model.cross_attention["0"].query.weight.grad is not None  # the LM loss reaches the fusion encoder


@pytest.mark.parametrize("overrides", [{}, {"shared_encoder": True, "share_decoder_embeddings": True}])
def test_save_then_load_gives_identical_outputs(tiny_encoder_dir, tmp_path, overrides):
    torch.manual_seed(1)
    model = GeARModel.from_encoder(
        tiny_encoder_dir, decoder_num_layers=1, ranking_layer=-1, max_document_length=48, **overrides
    )
    with torch.no_grad():
        model.temperature.fill_(0.05)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = GeARModel.from_pretrained(tmp_path)
    without_path = lambda config: {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert without_path(loaded.config) == without_path(model.config)
    assert loaded.temperature.item() == pytest.approx(0.05)
    assert np.array_equal(loaded.encode_queries(["q"]), model.encode_queries(["q"]))
    assert np.array_equal(loaded.encode_documents([DOCUMENT]), model.encode_documents([DOCUMENT]))
    assert loaded.rank_sentences("finished", DOCUMENT, None) == model.rank_sentences("finished", DOCUMENT, None)
    assert loaded.generate("when", DOCUMENT, 6) == model.generate("when", DOCUMENT, 6)
    model.eval(), loaded.eval()
    inputs = batch(model, ["q"], [DOCUMENT], targets=["1889"])
    assert torch.equal(loaded(**inputs).loss, model(**inputs).loss)


def test_sharded_save_loads(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path, max_shard_size="500KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    loaded = GeARModel.from_pretrained(tmp_path)
    assert np.array_equal(loaded.encode_queries(["q"]), tiny_model.encode_queries(["q"]))


def test_saved_files_are_readable_by_others_and_the_tokenizer_is_compact(tiny_model, tmp_path):
    """transformers 5 writes safetensors owner-only (0600) beside a 0644 config, so a model saved to share could
    not be read by its users; the indented tokenizer.json was a third larger than its compact form."""
    old_umask = os.umask(0o022)
    try:
        tiny_model.save_pretrained(tmp_path / "model", max_shard_size="500KB")
    finally:
        os.umask(old_umask)
    weights = list((tmp_path / "model").glob("*.safetensors"))
    assert weights and all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in weights)
    assert "\n" not in (tmp_path / "model" / "tokenizer.json").read_text(encoding="utf-8")
    loaded = GeARModel.from_pretrained(tmp_path / "model")
    text = ["Naïve café, 東京 and [DEC] tokens.", "a b"]
    assert loaded.tokenizer(text)["input_ids"] == tiny_model.tokenizer(text)["input_ids"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_save_pretrained_keeps_other_files_and_refuses_symlinks(tiny_model, tmp_path, monkeypatch, exchange):
    """save_pretrained wrote through symbolic links planted in the folder, overwriting files outside it. Saving
    over a folder (atomically where the system can swap two folders, else with two renames) keeps the files the
    library did not write there, and saving into the working folder leaves the process in the new version."""
    if not exchange:
        monkeypatch.setattr("gear_core.files._exchange", lambda a, b: False)
    folder = tmp_path / "model"
    folder.mkdir()
    theirs = {"model_backup.safetensors": "weights", "tokenizer_notes.json": "{}"}  # not the library's names
    for name, text in theirs.items():
        (folder / name).write_text(text)
    tiny_model.save_pretrained(folder)  # a first save: the folder records no checksums yet
    assert {name: (folder / name).read_text() for name in theirs} == theirs
    GeARModel.from_pretrained(folder)  # their files are not the model's: not checked, not refused
    (folder / "README.md").write_text("my model card")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("mine")
    monkeypatch.chdir(folder)
    tiny_model.save_pretrained(".")  # over itself: the card and the notes stay
    assert os.getcwd() == str(folder) and Path("README.md").is_file()
    assert GeARModel.from_pretrained(folder).temperature.item() == tiny_model.temperature.item()
    assert (folder / "README.md").read_text() == "my model card" and (folder / "notes" / "a.txt").read_text() == "mine"

    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(victim)
    with pytest.raises(ValueError, match=r"config\.json is a symbolic link"):
        tiny_model.save_pretrained(folder)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "victim.json"]  # no temporary left


def test_a_failed_save_pretrained_leaves_the_old_model(tiny_model, tiny_encoder_dir, tmp_path, monkeypatch):
    """A save over a model that failed midway (here: recording checksums) left new weights beside the old
    checksums: the folder no longer loaded. Temporaries of an earlier save that died are removed, and only those."""
    import gear_core.folders
    from gear_core.files import TEMPORARY_PREFIX

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    stale = tmp_path / f"{TEMPORARY_PREFIX}0123456789ab-model"  # what a killed save leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    theirs = [tmp_path / ".model.tmp", tmp_path / f"{TEMPORARY_PREFIX}notes-model"]  # not the library's form
    for path in theirs:
        path.write_text("mine")
    other = tiny_gear(tiny_encoder_dir)
    with torch.no_grad():
        other.temperature.fill_(0.5)

    def fail(folder):
        raise OSError("disk full")

    monkeypatch.setattr(gear_core.folders, "write_model_checksums", fail)
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", *(p.name for p in theirs)])
    loaded = GeARModel.from_pretrained(folder)
    assert loaded.temperature.item() == tiny_model.temperature.item()


def test_missing_and_corrupt_checkpoints_are_refused(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError):
        GeARModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        GeARModel.from_pretrained(tmp_path)
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type varies by version
        GeARModel.from_pretrained(tmp_path)


def test_sharing_options_change_parameter_counts(tiny_encoder_dir):
    separate = GeARModel.from_encoder(tiny_encoder_dir, decoder_num_layers=1, ranking_layer=-1)
    shared = GeARModel.from_encoder(tiny_encoder_dir, decoder_num_layers=1, ranking_layer=-1, shared_encoder=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    encoder = sum(p.numel() for p in separate.query_encoder.parameters())
    assert count(separate) - count(shared) == encoder
    assert shared.document_encoder is None and shared.document_encoder_module is shared.query_encoder


@pytest.fixture(params=[(False, False), (True, True)], ids=["copy", "copy+prior+spans"])
def copying_model(tiny_encoder_dir, request):
    return tiny_gear(
        tiny_encoder_dir,
        decoder_memory="query_and_document",
        decoder_copy=True,
        decoder_copy_prior=request.param[0],
        decoder_copy_spans=request.param[1],
    )


def test_query_memory_loss_is_the_lm_loss_of_the_decoders_logits(tiny_model):
    """Scores computed at the predicted positions only give the same loss as the decoder's full logits."""
    from gear_core.losses import lm_loss

    tiny_model.eval()
    inputs = batch(tiny_model, ["q one", "q two"], ["doc one.", "doc two."], targets=["one", "two longer words"])
    with torch.no_grad():
        out = tiny_model(**inputs)
        states = tiny_model.document_encoder_module(
            input_ids=inputs["document_input_ids"], attention_mask=inputs["document_attention_mask"]
        ).last_hidden_state
        fused, _ = tiny_model.fuse(
            inputs["query_input_ids"], inputs["query_attention_mask"], states, inputs["document_attention_mask"]
        )
        logits = tiny_model.decoder(
            input_ids=inputs["target_input_ids"],
            attention_mask=inputs["target_attention_mask"],
            encoder_hidden_states=fused,
            encoder_attention_mask=inputs["query_attention_mask"],
        ).logits
    assert out.lm_loss.item() == pytest.approx(lm_loss(logits, inputs["target_labels"]).item(), rel=1e-5)


def test_copying_decoder_reads_the_document_and_learns_to_copy(copying_model):
    model = copying_model
    query, document, answer = "who designed it", "The tower was designed by Gustave Eiffel in Paris.", "Gustave Eiffel"
    inputs = batch(model, [query], [document], targets=[answer])
    out = model(**inputs)
    out.lm_loss.backward()
    assert model.copy_head.query.weight.grad.abs().sum() > 0  # the copy head is on the loss's path
    if model.config.decoder_copy_prior:  # the prior weight too, and it starts at 1
        assert model.copy_head.prior_weight.item() == 1.0 and model.copy_head.prior_weight.grad is not None
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimiser.zero_grad()
        model(**inputs).lm_loss.backward()
        optimiser.step()
    assert model.generate(query, document).lower() == answer.lower()


def test_generation_lengths_and_bad_values(copying_model):
    assert copying_model.generate("q", "A document.", max_new_tokens=0) == ""
    assert len(copying_model.generate("q", "A document.", max_new_tokens=2).split()) <= 2
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="max_new_tokens"):
            copying_model.generate("q", "A document.", max_new_tokens=bad)


@pytest.mark.parametrize("kept_windows", [8, 0], ids=["states-kept", "encoded-again"])
def test_evidence_is_read_at_the_window_of_the_best_sentence(copying_model, monkeypatch, kept_windows):
    """The decoder reads the window holding most of the sentence ``rank_sentences`` puts first, with the document
    tower's own states for it, whether they come from the ranking pass or are encoded again."""
    from gear_core import generation, ranking

    monkeypatch.setattr(generation, "KEPT_WINDOWS", kept_windows)
    copying_model.eval()
    document = " ".join(f"Sentence number {i} tells of the {w} river." for i, w in enumerate("abcdefghijklmn"))
    queries = ["which river?", "number nine", "the k river", "what tells?"]
    with torch.no_grad():  # as generate_batch calls it
        windows = generation.evidence_windows(
            copying_model, [*queries, "q"], [document] * len(queries) + ["One short document."]
        )
    first_windows = 0
    for row, query in enumerate(queries):
        best = copying_model.rank_sentences(query, document, top_n=1)[0]
        offsets = windows["offsets"][row]
        inside = sum(best.start_char <= a and b <= best.end_char and a < b for a, b in offsets)
        every_window = ranking.document_windows(copying_model, [document])["offset_mapping"]
        assert len(every_window) > 1
        assert inside == max(
            sum(best.start_char <= a and b <= best.end_char and a < b for a, b in w) for w in every_window
        )
        first_windows += offsets == every_window[0]
        length = int(windows["attention_mask"][row].sum())
        ids = windows["input_ids"][row : row + 1, :length]
        with torch.no_grad():
            states = copying_model.document_encoder_module(input_ids=ids).last_hidden_state[0]
        assert torch.allclose(windows["document_states"][row, :length], states, atol=1e-5)
        assert windows["sentences"][row] == split_sentences(document)
    assert first_windows < len(queries)  # the choice is not simply the first window
    # Every pair is ranked once, a one-window document too: its quote stays in that ranking's best sentence.
    assert windows["sentences"][len(queries)] == split_sentences("One short document.")
    _, (scores,) = copying_model.sentence_scores_batch(
        [*queries, "q"], [document] * len(queries) + ["One short document."]
    )
    for row, expected in enumerate(scores):
        assert np.allclose(windows["scores"][row], expected)
    short = windows["input_ids"][len(queries)][: int(windows["attention_mask"][len(queries)].sum())]
    assert short.tolist() == copying_model.tokenizer("One short document.")["input_ids"]


def test_copy_prior_needs_copy():
    with pytest.raises(ValueError, match="decoder_copy_prior needs decoder_copy"):
        GeARConfig(decoder_copy_prior=True)
    with pytest.raises(ValueError, match="decoder_copy_spans needs decoder_copy"):
        GeARConfig(decoder_copy_spans=True)


def test_copy_head_span_bonus_hand_case():
    from gear_core.layers import CopyHead

    head = CopyHead(4, spans=True)
    torch.nn.init.zeros_(head.query.weight)  # plain logits 0: only the span bonus (1.0) remains
    torch.nn.init.zeros_(head.query.bias)
    document_ids = torch.tensor([[101, 7, 8, 7, 9, 102]])
    copyable = torch.tensor([[False, True, True, True, True, False]])
    previous = torch.tensor([[7, 9]])  # step 0 follows token 7 (at 1 and 3), step 1 follows 9 (at 4)
    logits, _ = head(torch.zeros(1, 2, 4), torch.randn(1, 6, 4), copyable, None, previous, document_ids)
    floor = torch.finfo(logits.dtype).min
    assert logits[0, 0].tolist() == [floor, 0.0, 1.0, 0.0, 1.0, floor]
    assert logits[0, 1].tolist() == [floor, 0.0, 0.0, 0.0, 0.0, floor]  # after 9 comes [SEP]: not copyable


def test_top_n_must_be_a_positive_int_or_none(tiny_model):
    document = "One sentence. Two sentences. Three sentences."
    assert len(tiny_model.rank_sentences("q", document, top_n=None)) == 3
    assert len(tiny_model.rank_sentences("q", document, top_n=5)) == 3
    for bad in (-1, 0, 2.5, True, "2"):
        with pytest.raises(ValueError, match="top_n"):
            tiny_model.rank_sentences("q", document, top_n=bad)


def test_lone_surrogates_are_read_and_offsets_stay_exact(tiny_model):
    document = "a \ud800 b. Second \udc00 one."
    ranked = tiny_model.rank_sentences("q \udc00", document, top_n=None)
    assert len(ranked) == 2 and all(document[s.start_char : s.end_char] == s.text for s in ranked)
    assert tiny_model.encode_queries(["x \ud800"]).shape == (1, tiny_model.config.hidden_size)
    assert tiny_model.encode_documents([document]).shape == (1, tiny_model.config.hidden_size)
    assert isinstance(tiny_model.generate("q \udc00", document, max_new_tokens=2), str)
    long_document = " ".join(f"Sentence {i} \ud800 here." for i in range(30))  # read in windows
    ranked = tiny_model.rank_sentences("q", long_document, top_n=None)
    assert len(ranked) == 30 and all(long_document[s.start_char : s.end_char] == s.text for s in ranked)


def test_batch_size_must_be_a_positive_int(tiny_model):
    calls = [
        lambda b: tiny_model.encode_queries(["q"], batch_size=b),
        lambda b: tiny_model.encode_documents(["d."], batch_size=b),
        lambda b: tiny_model.rank_sentences_batch(["q"], ["d."], batch_size=b),
        lambda b: tiny_model.generate_batch(["q"], ["d."], batch_size=b),
    ]
    for call in calls:
        assert call(1) is not None
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="batch_size"):
                call(bad)


def test_batched_generation_returns_each_pairs_own_evidence_in_order(copying_model):
    """Pairs are batched longest document first; each output still lands at its own pair's place."""
    documents = [
        "Short one.",
        " ".join(f"Sentence {i} of a document that needs two windows." for i in range(12)),
        "A middle-sized document. It has two sentences.",
        "Tiny.",
        "Another document of a few words, with a third sentence. And more. Yes.",
    ]
    queries = [f"question {i}?" for i in range(len(documents))]
    one_by_one = [copying_model.generate(q, d, spans_only=True) for q, d in zip(queries, documents, strict=True)]
    assert len(set(one_by_one)) > 1  # distinct outputs, so a mix-up would show
    assert copying_model.generate_batch(queries, documents, batch_size=2, spans_only=True) == one_by_one


def test_reader_layers_make_the_decoders_document_states_read_the_query(tiny_encoder_dir, tmp_path):
    model = tiny_gear(tiny_encoder_dir, decoder_memory="query_and_document", decoder_reader_layers=1).eval()
    top = model.query_encoder.encoder.layer[-1]
    # Started from the encoder's top layer; its cross-attention from that layer's self-attention.
    assert torch.equal(model.reader[0].layer.output.dense.weight, top.output.dense.weight)
    assert torch.equal(model.reader[0].crossattention.key.weight, top.attention.self.key.weight)
    document = model._tokenize(["The tower was finished in 1889 in Paris."], 48)
    states = model.document_encoder_module(**document).last_hidden_state
    inputs = model._tokenize(["when was it finished"], 16)
    fused, _ = model.fuse(inputs["input_ids"], inputs["attention_mask"], states, document["attention_mask"])
    # The output projection starts at 0: a reader added to a trained decoder changes nothing before training.
    assert not model.reader_output.weight.any() and not model.reader_output.bias.any()
    assert torch.equal(model.read_document(fused, inputs["attention_mask"], states, document["attention_mask"]), states)
    torch.nn.init.eye_(model.reader_output.weight.data)
    read = []
    for query in ("when was it finished", "where is the tower"):
        inputs = model._tokenize([query], 16)
        fused, _ = model.fuse(inputs["input_ids"], inputs["attention_mask"], states, document["attention_mask"])
        read.append(model.read_document(fused, inputs["attention_mask"], states, document["attention_mask"]))
    assert read[0].shape == states.shape and not torch.allclose(read[0], read[1])  # query-aware
    plain = tiny_gear(tiny_encoder_dir, decoder_memory="query_and_document")
    assert plain.read_document(fused, inputs["attention_mask"], states, document["attention_mask"]) is states
    model.save_pretrained(tmp_path / "reader")
    loaded = GeARModel.from_pretrained(tmp_path / "reader")
    assert loaded.config.decoder_reader_layers == 1
    assert torch.equal(loaded.reader[0].crossattention.value.weight, model.reader[0].crossattention.value.weight)
    assert torch.equal(loaded.reader_output.weight, model.reader_output.weight)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decoder_reader_layers": -1}, "decoder_reader_layers must lie in"),
        ({"decoder_reader_layers": 9, "decoder_memory": "query_and_document"}, "decoder_reader_layers must lie in"),
        ({"decoder_reader_layers": 1}, "needs decoder_memory='query_and_document' or decoder_copy"),
    ],
)
def test_reader_layers_are_checked(tiny_encoder_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_gear(tiny_encoder_dir, **overrides)


def test_serving_runs_in_eval_mode_and_puts_a_training_model_back():
    """in_eval_mode: dropout off inside, the caller's mode restored after (also when the call raises); a model
    already in eval mode is not switched at all (eval() walks every submodule, on every query)."""
    from torch import nn

    from gear_core.layers import in_eval_mode

    seen = []

    @in_eval_mode
    def call(model: nn.Module, fail: bool = False) -> None:
        seen.append((model.training, model[0].training))
        if fail:
            raise RuntimeError("inside")

    model = nn.Sequential(nn.Dropout(0.5)).train()
    call(model)
    assert seen == [(False, False)] and model.training and model[0].training
    with pytest.raises(RuntimeError, match="inside"):
        call(model, fail=True)
    assert model.training and model[0].training
    model.eval()
    switched = []
    model.train = lambda mode=True: switched.append(mode)  # a model in eval mode is left alone
    call(model)
    assert switched == [] and not model.training
