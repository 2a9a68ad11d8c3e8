"""Relevant-information triples synthesised from plain documents (the GeAR paper's Appendix A pipeline).

For each document:

1. Document filter: its whitespace token count lies in ``[min_document_tokens, max_document_tokens]``.
2. Sentence filter: candidate sentences have 8-20 whitespace tokens and do not start with a pronoun (a sentence
   that starts "He ..." or "It ..." cannot be understood, or searched for, without the sentences before it).
   A document needs ``min_candidates`` candidates; ``sentences_per_document`` of them are sampled.
3. Query rewriting: each sampled sentence becomes a short keyword query, either by any LlamaIndex LLM
   (:data:`REWRITE_PROMPT`) or, offline, by keeping the sentence's content words (:func:`offline_keywords`).
4. Keywords are de-duplicated and re-ordered (as the paper does), so a query is not the sentence's word order.
5. Relevance filter: a query is kept only if the bi-encoder cosine between it and its document is at least
   ``min_similarity`` (0.5 in the paper).

Each kept query gives a :class:`~gear_core.data.triples.Triple` of kind ``"ri"``: the target is the sentence and
the gold span is the sentence's span in the document. :func:`synthesize` streams documents into a JSONL file in
small committed chunks and resumes where an interrupted run stopped.

Randomness (sampling, keyword dropping, re-ordering) comes from one ``random.Random`` per document, seeded by
``(seed, document_id)``: a document's triples do not depend on which documents came before it, so a resumed run
writes what an uninterrupted one would have.

The LLM is any object with ``complete(prompt).text``: every LlamaIndex LLM, or :class:`EchoLLM` (the CLI's
``--llm mock``). gear_core itself never imports LlamaIndex.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gear_core.data.squad import SquadParagraph
from gear_core.data.triples import Triple, write_triples_jsonl
from gear_core.text import Sentence, split_sentences, use_bundled_nltk_data

if TYPE_CHECKING:  # typing only: any LlamaIndex LLM (or anything with ``complete(prompt).text``) works
    from llama_index.core.llms import LLM

# The paper asks an LLM to rewrite each sentence into a keyword query; its exact prompt wording is not available
# here, so this is a faithful paraphrase of what it describes: short, keyword-style, not a sentence, not a copy.
# ``{sentence}`` is the only placeholder (filled with ``str.format``; braces in the sentence itself are safe).
REWRITE_PROMPT = (
    "Rewrite the sentence below into a short search query made of keywords, the way a person looking for this "
    "information would type it into a search engine.\n"
    "Rules:\n"
    "- Use only a handful of keywords (about 3 to 8), not a full sentence and not a question.\n"
    "- Do not copy the sentence verbatim; keep the names, numbers and key terms that identify the information.\n"
    "- Return only the keywords, separated by commas or spaces, with no explanation.\n"
    "\n"
    "Sentence: {sentence}\n"
    "Keywords:"
)

# A sentence whose first word is one of these refers back to earlier text; it is no candidate (compared lowercase).
_PRONOUN_WORDS = (
    "i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself "
    "she her hers herself it its itself they them their theirs themselves this that these those"
)
PRONOUNS = frozenset(_PRONOUN_WORDS.split())

# Used only when nltk's stopwords corpus cannot be found (llama-index-core normally ships it).
_FALLBACK_STOPWORD_WORDS = (
    "a about above after again against all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having here how "
    "if in into is just more most no nor not now of off on once only or other out over own same should so some "
    "such than then there to too under until up very was were what when where which while who whom why will "
    "with would s t"
)
_FALLBACK_STOPWORDS = frozenset(_FALLBACK_STOPWORD_WORDS.split()) | PRONOUNS

_WORD = re.compile(r"[^\W_]+(?:[-'’.,][^\W_]+)*")  # keeps "1,000", "3.5", "u.s", "world's", "well-known" whole
_POSSESSIVE = re.compile(r"['’]s$")
_ANSWER_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*(?:(?:search|keyword|rewritten|final)\s+)?(?:query|queries|keywords?|answer|output)"
    r"\s*(?:\*\*)?\s*:\s*(?:\*\*)?",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d{1,2}[.)])\s+")
_KEYWORD_SEPARATORS = re.compile(r"[,;|\n]+")
_PHRASE_STRIP = " \t\"'“”‘’`*[](){}<>.;:!?"


@dataclass
class SynthesisConfig:
    """Every choice of the synthesis pipeline. Token counts are whitespace tokens (the paper's 8-20 per sentence).

    The document range defaults are wide enough for wiki-vital summaries (~77 words) and SQuAD paragraphs
    (~120 words); narrow them, or the sentence range, to use short documents.
    """

    min_document_tokens: int = 20
    max_document_tokens: int = 512
    min_sentence_tokens: int = 8
    max_sentence_tokens: int = 20
    min_candidates: int = 3  # documents with fewer candidate sentences are skipped
    sentences_per_document: int = 3  # sampled among the candidates
    keyword_drop_rate: float = 0.2  # offline rewriter: expected fraction of keywords dropped (never below 2 kept)
    min_query_keywords: int = 2  # fewer keywords than this: no query
    max_llm_query_words: int = 16  # an LLM answer longer than this is a sentence or a ramble, not a keyword query
    min_similarity: float = 0.5  # relevance filter: cosine(query, document) must reach this
    seed: int = 0
    chunk_size: int = 32  # documents per committed write: an interruption loses at most this much work
    rewrite_prompt: str = REWRITE_PROMPT

    def __post_init__(self) -> None:
        if not 0 <= self.min_document_tokens <= self.max_document_tokens:
            raise ValueError("need 0 <= min_document_tokens <= max_document_tokens")
        if not 1 <= self.min_sentence_tokens <= self.max_sentence_tokens:
            raise ValueError("need 1 <= min_sentence_tokens <= max_sentence_tokens")
        if self.sentences_per_document < 1 or self.min_candidates < 1:
            raise ValueError("sentences_per_document and min_candidates must be at least 1")
        if not 0.0 <= self.keyword_drop_rate <= 1.0:
            raise ValueError("keyword_drop_rate must lie in [0, 1]")
        if self.min_query_keywords < 1 or self.chunk_size < 1:
            raise ValueError("min_query_keywords and chunk_size must be at least 1")
        if "{sentence}" not in self.rewrite_prompt:
            raise ValueError("rewrite_prompt needs a {sentence} placeholder")


@dataclass
class SynthesisStats:
    """Counts of one :func:`synthesize` run (documents already done by an earlier run count only as such)."""

    rewriter: str = "offline"
    similarity_filter: bool = True
    documents_seen: int = 0
    documents_already_done: int = 0
    documents_rejected_length: int = 0  # outside the document token range
    documents_rejected_candidates: int = 0  # fewer than min_candidates candidate sentences
    documents_used: int = 0  # passed both document filters
    candidates: int = 0  # candidate sentences in documents within the token range
    sentences_sampled: int = 0
    rewrite_failed: int = 0  # no usable query (too few keywords, empty/echoed/verbatim/too long LLM answer)
    queries_generated: int = 0
    duplicate_queries: int = 0  # the same query for two sentences of one document: kept once
    below_similarity: int = 0
    triples_written: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.as_dict().items())


class QueryDocumentEncoder(Protocol):
    """What the relevance filter needs: a bi-encoder (``GeARModel`` is one)."""

    def encode_queries(self, queries: list[str]) -> np.ndarray: ...

    def encode_documents(self, documents: list[str]) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------------------
# Filters and sampling


def count_tokens(text: str) -> int:
    """Whitespace tokens: the unit of every length limit here."""
    return len(text.split())


def starts_with_pronoun(text: str) -> bool:
    """Whether the first word (leading punctuation and any "'s" / "'ll" tail removed) is in :data:`PRONOUNS`."""
    words = text.split()
    if not words:
        return False
    match = re.match(r"[^\W\d_]+", words[0].lstrip("\"'“”‘’`([{«-—–"))
    return match is not None and match.group(0).lower() in PRONOUNS


def document_in_range(text: str, config: SynthesisConfig) -> bool:
    return config.min_document_tokens <= count_tokens(text) <= config.max_document_tokens


def is_candidate_sentence(text: str, config: SynthesisConfig) -> bool:
    """8-20 tokens (configurable) and not starting with a pronoun."""
    return config.min_sentence_tokens <= count_tokens(text) <= config.max_sentence_tokens and not (
        starts_with_pronoun(text)
    )


def candidate_sentences(text: str, config: SynthesisConfig) -> list[Sentence]:
    """The document's sentences (with exact spans) that pass the sentence filter, in document order."""
    return [s for s in split_sentences(text) if is_candidate_sentence(s.text, config)]


def sample_sentences(candidates: Sequence[Sentence], config: SynthesisConfig, rng: random.Random) -> list[Sentence]:
    """``sentences_per_document`` candidates (all of them if fewer), in document order; none below min_candidates."""
    if len(candidates) < config.min_candidates:
        return []
    chosen = rng.sample(range(len(candidates)), min(config.sentences_per_document, len(candidates)))
    return [candidates[i] for i in sorted(chosen)]


def document_rng(config: SynthesisConfig, document_id: str) -> random.Random:
    """One generator per document (string seeds hash with SHA-512: stable across runs and Python processes)."""
    return random.Random(f"{config.seed}:{document_id}")


# ----------------------------------------------------------------------------------------------------------
# Keywords: de-duplication, re-ordering, the offline rewriter, the LLM rewriter


def dedupe_keywords(keywords: Iterable[str]) -> list[str]:
    """Drop repeats (case-insensitive, whitespace-normalised), keeping each keyword's first occurrence."""
    seen: set[str] = set()
    unique = []
    for keyword in keywords:
        key = " ".join(keyword.lower().split())
        if key and key not in seen:
            seen.add(key)
            unique.append(keyword)
    return unique


def reorder_keywords(keywords: Sequence[str], rng: random.Random) -> list[str]:
    """A seeded shuffle, so the query does not follow the sentence's word order."""
    shuffled = list(keywords)
    rng.shuffle(shuffled)
    return shuffled


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """nltk's English stopwords (shipped inside llama-index-core), or a small built-in list when missing."""
    try:
        from nltk.corpus import stopwords

        use_bundled_nltk_data()
        return frozenset(stopwords.words("english")) | PRONOUNS
    except (ImportError, LookupError, OSError):  # pragma: no cover - depends on the environment
        return _FALLBACK_STOPWORDS


def content_words(sentence: str) -> list[str]:
    """Lowercase words of ``sentence`` minus stopwords and punctuation; numbers and names are kept."""
    stop = english_stopwords()
    words = []
    for match in _WORD.finditer(sentence.lower()):
        word = _POSSESSIVE.sub("", match.group(0))
        if word in stop or (len(word) == 1 and not word.isdigit()):
            continue
        words.append(word)
    return words


def offline_keywords(sentence: str, rng: random.Random, drop_rate: float = 0.2, min_keywords: int = 2) -> list[str]:
    """The offline rewriter: de-duplicated content words with a random fraction dropped (never below
    ``min_keywords``), re-ordered. Stands in for the LLM where none is configured."""
    keywords = dedupe_keywords(content_words(sentence))
    droppable = max(0, len(keywords) - min_keywords)
    drop = min(droppable, sum(rng.random() < drop_rate for _ in keywords))
    if drop:
        dropped = set(rng.sample(range(len(keywords)), drop))
        keywords = [k for i, k in enumerate(keywords) if i not in dropped]
    return reorder_keywords(keywords, rng)


def parse_keywords(text: str, prompt: str | None = None) -> list[str]:
    """Keywords from an LLM's answer, tolerating echoed prompts, "Query:"/"Keywords:" labels, quotes,
    bullet or numbered lists, preambles ("Here are the keywords:") and newlines.

    Comma/semicolon/newline-separated answers give phrases ("eiffel tower"); a single space-separated line gives
    words. Returns ``[]`` when nothing usable is left.
    """
    text = text.strip()
    if prompt and text.startswith(prompt.strip()):  # completion models sometimes return prompt + completion
        text = text[len(prompt.strip()) :]
    text = text.replace("```", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    labelled = [i for i, line in enumerate(lines) if _ANSWER_LABEL.match(line)]
    if labelled:  # the answer is what follows the last label, on its line and the lines after it
        start = labelled[-1]
        lines = [_ANSWER_LABEL.sub("", lines[start], count=1), *lines[start + 1 :]]
    else:  # no label: drop preamble lines such as "Sure! Here are the keywords:"
        lines = [line for line in lines if not line.endswith(":")]
    lines = [_LIST_MARKER.sub("", line) for line in lines]
    phrases = [p.strip(_PHRASE_STRIP) for p in _KEYWORD_SEPARATORS.split("\n".join(lines))]
    phrases = [" ".join(p.split()) for p in phrases if p.strip(_PHRASE_STRIP)]
    if len(phrases) == 1:  # "eiffel tower 1889 completed": the prompt allows space-separated keywords
        phrases = [w.strip(_PHRASE_STRIP) for w in phrases[0].split()]
    return [p for p in phrases if p]


class EchoLLM:
    """An LLM that answers with the prompt it is given (as LlamaIndex's MockLLM does): it exercises the LLM path
    offline, and the keyword parser rejects the echo, so the offline rewriter takes over."""

    @dataclass
    class Completion:
        text: str

    def complete(self, prompt: str) -> EchoLLM.Completion:
        return EchoLLM.Completion(prompt)


def llm_keywords(sentence: str, llm: LLM, prompt: str = REWRITE_PROMPT) -> list[str]:
    """Ask ``llm`` (``complete(prompt).text``) for keywords of ``sentence``; parsed, not yet de-duplicated."""
    filled = prompt.format(sentence=sentence)
    return parse_keywords(llm.complete(filled).text, prompt=filled)


def rewrite_query(
    sentence: str, rng: random.Random, config: SynthesisConfig | None = None, llm: LLM | None = None
) -> str | None:
    """A keyword query for ``sentence`` (LLM if given, else offline), de-duplicated and re-ordered; ``None``
    when the rewrite is unusable (fewer than ``min_query_keywords`` keywords; for an LLM also an answer that is
    longer than ``max_llm_query_words`` words or copies the sentence verbatim)."""
    config = config or SynthesisConfig()
    if llm is None:
        keywords = offline_keywords(sentence, rng, config.keyword_drop_rate, config.min_query_keywords)
    else:
        answer = llm_keywords(sentence, llm, config.rewrite_prompt)
        keywords = dedupe_keywords(answer)
        too_long = len(_normalised_words(" ".join(keywords))) > config.max_llm_query_words
        if too_long or _normalised_words(" ".join(answer)) == _normalised_words(sentence):
            return None  # a ramble or the sentence itself, not a keyword query
        keywords = reorder_keywords(keywords, rng)
    if len(keywords) < config.min_query_keywords:
        return None
    return " ".join(keywords)


def _normalised_words(text: str) -> list[str]:
    return [m.group(0) for m in _WORD.finditer(text.lower())]


# ----------------------------------------------------------------------------------------------------------
# Relevance filter


def query_document_similarity(
    encoder: QueryDocumentEncoder, queries: Sequence[str], documents: Sequence[str]
) -> np.ndarray:
    """Cosine between each query and its document (pairwise by position); each distinct document is encoded once."""
    if len(queries) != len(documents):
        raise ValueError("need one document per query")
    if not queries:
        return np.zeros(0, dtype=np.float32)
    unique = list(dict.fromkeys(documents))
    index = {document: i for i, document in enumerate(unique)}
    query_vectors = _normalise(np.asarray(encoder.encode_queries(list(queries)), dtype=np.float32))
    document_vectors = _normalise(np.asarray(encoder.encode_documents(unique), dtype=np.float32))
    rows = document_vectors[[index[d] for d in documents]]
    return np.einsum("ij,ij->i", query_vectors, rows)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    # GeARModel already returns unit vectors; normalising again makes any encoder's output a cosine.
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def filter_by_similarity(
    triples: Sequence[Triple], encoder: QueryDocumentEncoder, min_similarity: float = 0.5
) -> tuple[list[Triple], np.ndarray]:
    """The triples whose cosine(query, document) reaches ``min_similarity``, and every triple's similarity."""
    scores = query_document_similarity(encoder, [t.query for t in triples], [t.document for t in triples])
    return [t for t, score in zip(triples, scores, strict=True) if score >= min_similarity], scores


# ----------------------------------------------------------------------------------------------------------
# Per-document synthesis and the resumable driver


def document_triples(
    document_id: str,
    text: str,
    config: SynthesisConfig | None = None,
    llm: LLM | None = None,
    stats: SynthesisStats | None = None,
) -> list[Triple]:
    """Relevant-information triples of one document, before the relevance filter (which batches across documents)."""
    config = config or SynthesisConfig()
    stats = stats if stats is not None else SynthesisStats()
    if not document_in_range(text, config):
        stats.documents_rejected_length += 1
        return []
    candidates = candidate_sentences(text, config)
    stats.candidates += len(candidates)
    rng = document_rng(config, document_id)
    sampled = sample_sentences(candidates, config, rng)
    if not sampled:
        stats.documents_rejected_candidates += 1
        return []
    stats.documents_used += 1
    stats.sentences_sampled += len(sampled)
    triples, queries = [], set()
    for sentence in sampled:
        query = rewrite_query(sentence.text, rng, config, llm)
        if query is None:
            stats.rewrite_failed += 1
            continue
        stats.queries_generated += 1
        if query.lower() in queries:
            stats.duplicate_queries += 1
            continue
        queries.add(query.lower())
        triples.append(
            Triple(
                query=query,
                document=text,
                target=sentence.text,
                gold_spans=((sentence.start_char, sentence.end_char),),
                document_id=document_id,
                kind="ri",
            )
        )
    return triples


def done_path_for(out_path: str | Path) -> Path:
    """The sidecar listing every committed document id (one JSON string per line), with or without triples."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".done")


def synthesize(
    documents: Iterable[tuple[str, str]],
    out_path: str | Path,
    config: SynthesisConfig | None = None,
    llm: LLM | None = None,
    encoder: QueryDocumentEncoder | None = None,
    show_progress: bool = True,
    limit: int | None = None,
) -> SynthesisStats:
    """Synthesise relevant-information triples from ``(document_id, text)`` pairs and append them to ``out_path``.

    Resumable: documents already committed by an earlier run (listed in ``<out>.done``, or present in the output
    when there is no ``.done`` file) are skipped. Work is committed every ``config.chunk_size`` documents:
    triples first, then their ids in ``.done``; on restart, triples of documents missing from ``.done`` (an
    interrupted commit) are removed and redone. ``limit`` caps the documents read from ``documents``, done or not.
    ``encoder=None`` skips the relevance filter (``stats.similarity_filter`` is then False).
    """
    from tqdm.auto import tqdm

    config = config or SynthesisConfig()
    out_path = Path(out_path)
    if out_path.suffix == ".gz":
        raise ValueError("synthesize appends to a plain .jsonl file; compress it once it is complete")
    done_path = done_path_for(out_path)
    done = _resume(out_path, done_path)
    stats = SynthesisStats(
        rewriter="offline" if llm is None else type(llm).__name__, similarity_filter=encoder is not None
    )

    pending: list[tuple[str, list[Triple]]] = []
    progress = tqdm(total=limit, disable=not show_progress, unit="doc", desc="synthesize")
    try:
        for document_id, text in islice(documents, limit):
            stats.documents_seen += 1
            progress.update()
            if document_id in done:  # an earlier run, or a repeated id in this one
                stats.documents_already_done += 1
                continue
            done.add(document_id)
            pending.append((document_id, document_triples(document_id, text, config, llm, stats)))
            if len(pending) >= config.chunk_size:
                _commit(pending, out_path, done_path, config, encoder, stats)
                pending = []
                progress.set_postfix(triples=stats.triples_written, refresh=False)
        _commit(pending, out_path, done_path, config, encoder, stats)
    finally:
        progress.close()
    return stats


def _commit(
    pending: list[tuple[str, list[Triple]]],
    out_path: Path,
    done_path: Path,
    config: SynthesisConfig,
    encoder: QueryDocumentEncoder | None,
    stats: SynthesisStats,
) -> None:
    if not pending:
        return
    triples = [t for _, document in pending for t in document]
    if encoder is not None and triples:
        kept, _ = filter_by_similarity(triples, encoder, config.min_similarity)
        stats.below_similarity += len(triples) - len(kept)
        triples = kept
    # Triples first, ids second: a crash in between leaves triples whose ids _resume does not find, so it
    # removes them and the documents are redone, never half-written.
    stats.triples_written += write_triples_jsonl(triples, out_path, append=True)
    _write_ids(done_path, (document_id for document_id, _ in pending))


def _resume(out_path: Path, done_path: Path) -> set[str]:
    """Ids already committed; repairs the files after an interrupted commit (see :func:`synthesize`)."""
    done: set[str] = set()
    has_done_file = done_path.is_file()
    if has_done_file:
        raw = done_path.read_text(encoding="utf-8")
        torn = bool(raw) and not raw.endswith("\n")
        for line in raw.splitlines():
            try:
                done.add(str(json.loads(line)))
            except json.JSONDecodeError:  # a torn line (crash while committing ids): those ids were not committed
                torn = True
        if torn:  # rewrite it whole, so the next append does not glue onto a torn line
            _write_ids(done_path, done, append=False)
    if not out_path.is_file():
        return done

    with out_path.open(encoding="utf-8") as handle:
        lines = handle.readlines()
    kept, output_ids = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document_id = str(json.loads(line)["document_id"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            if number < len(lines):  # only the last line can be torn by a crash; anything else is real damage
                raise ValueError(f"{out_path}:{number}: not a triple; not resuming over it") from error
            continue
        if has_done_file and document_id not in done:  # written, but its commit did not finish: redo it
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
        output_ids.add(document_id)
    if kept != lines:
        repaired = out_path.with_name(out_path.name + ".repair")
        repaired.write_text("".join(kept), encoding="utf-8")
        os.replace(repaired, out_path)
    if not has_done_file and output_ids:  # an output without its sidecar: adopt its documents as committed
        _write_ids(done_path, output_ids, append=False)
    return done | output_ids


def _write_ids(path: Path, document_ids: Iterable[str], append: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(document_id, ensure_ascii=False) + "\n" for document_id in document_ids)


# ----------------------------------------------------------------------------------------------------------
# Document sources


def squad_documents(paragraphs: Iterable[SquadParagraph]) -> Iterator[tuple[str, str]]:
    """``(paragraph.id, paragraph.context)`` for SQuAD paragraphs (ids look like ``"Title#3"``)."""
    for paragraph in paragraphs:
        yield paragraph.id, paragraph.context


# ----------------------------------------------------------------------------------------------------------
# The relevance filter's encoder


def load_encoder(path: str, max_document_length: int | None = None) -> Any:
    """A GeAR folder (its bi-encoder) or a plain BERT-family encoder folder/name (wrapped by ``from_encoder``).

    ``max_document_length`` (tokens) lowers the model's document truncation for the relevance filter's embeddings
    only (the model is used for nothing else here); ``None`` keeps the model's own (512 for ``from_encoder``).
    """
    from gear_core.loading import load_or_build_model

    if max_document_length is not None and max_document_length < 8:
        raise ValueError("max_document_length must be at least 8 tokens")
    # Only the bi-encoder is used: a plain encoder gets the smallest valid fusion/decoder for any encoder depth.
    model = load_or_build_model(path, encoder_defaults={"ranking_layer": -1, "decoder_num_layers": 1})
    if max_document_length is not None:  # read at encode time by encode_documents; never raises the model's limit
        model.config.max_document_length = min(max_document_length, model.config.max_document_length)
    return model.eval()


__all__ = [
    "PRONOUNS",
    "REWRITE_PROMPT",
    "QueryDocumentEncoder",
    "SynthesisConfig",
    "SynthesisStats",
    "candidate_sentences",
    "content_words",
    "dedupe_keywords",
    "document_in_range",
    "document_rng",
    "document_triples",
    "done_path_for",
    "english_stopwords",
    "filter_by_similarity",
    "is_candidate_sentence",
    "llm_keywords",
    "load_encoder",
    "offline_keywords",
    "parse_keywords",
    "query_document_similarity",
    "reorder_keywords",
    "rewrite_query",
    "sample_sentences",
    "squad_documents",
    "starts_with_pronoun",
    "synthesize",
]
