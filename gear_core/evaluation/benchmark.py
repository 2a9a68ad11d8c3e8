"""``gear eval``: the paper's tables for one checkpoint, with every baseline computed in the same run.

Tables (shared/EVALUATION.md defines data, splits and metrics):

1. Global retrieval: R@1, R@5, MAP@5, R@20 over the 2,067 SQuAD dev paragraphs, and over the same plus the
   10,033 wiki-vital summaries as distractors. GeAR vs all-MiniLM-L6-v2 vs BM25.
2. Local retrieval: R@1, MAP@1, R@3, MAP@3 over the gold paragraph's sentences. GeAR vs all-MiniLM-L6-v2
   sentence embeddings vs BM25 over sentences vs first sentence vs random (expected value, exact).
   ``long``: the same over whole articles (each article's paragraphs joined into one document, read by GeAR in
   windows), for ``long_questions`` of the questions.
3. Generation: SQuAD EM / F1 of the decoder's output given the question and the gold paragraph.
4. Cost: wall time per (question, paragraph) pair, as ratios to the bi-encoder doing the same job.

The paper's printed figures sit in each table as a labelled reference row. Questions come from the split's
``test`` articles (reporting) or from the validation slice of the ``train`` articles (``split="validation"``),
which is where settings are chosen.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gear_core.data.sources import (
    SQUAD_DEV,
    SQUAD_SPLIT,
    WIKI_VITAL,
    data_path,
    long_document_triples,
    nq_validation_triples,
    wiki_vital_documents,
)
from gear_core.data.squad import read_squad, split_paragraphs, validation_paragraphs
from gear_core.evaluation import baselines
from gear_core.evaluation.metrics import (
    exact_match,
    expected_random_average_precision_at_k,
    expected_random_recall_at_k,
    mean,
    retrieval_metrics,
    token_f1,
)
from gear_core.evaluation.ranking import scoring_rankings
from gear_core.evaluation.tasks import QuestionExample, examples_from_triples, question_examples, sample_in_order
from gear_core.evidence import DEFAULT_MIN_SUPPORT
from gear_core.retrieval import DocumentIndex, GeARSearcher, encode_for_index, model_identity
from gear_core.retrieval.searcher import EncodedDocuments

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

TASKS = ("global", "local", "long", "generation", "cost")
PAPER_LABEL = "paper (bert-base, 30M PAQ triples; reference, not like-for-like)"
# Liu et al., 2025, as summarised in shared/EVALUATION.md and DESIGN.md.
PAPER = {
    "global": {"R@5": 0.887, "MAP@5": 0.766},
    "local": {"R@1": 0.814, "MAP@1": 0.878},
    "generation": {"EM": 60.0, "F1": 64.5},
    "cost": {"rank_sentences": 1.28},
}
LOCAL_METRICS = {"recall_ks": (1, 3), "map_ks": (1, 3)}


@dataclass
class EvaluationSettings:
    """Where the data is and what to run. Paths default to the files under the data root (``$GEAR_DATA_ROOT``,
    else ``../shared/data``; see :func:`gear_core.data.sources.data_path`)."""

    squad_path: str = field(default_factory=lambda: str(data_path(SQUAD_DEV)))
    split_path: str = field(default_factory=lambda: str(data_path(SQUAD_SPLIT)))
    wiki_path: str | None = field(default_factory=lambda: str(data_path(WIKI_VITAL)))
    nq_path: str | None = None  # NQ-QED: its held-out questions join the global table (gear eval passes it)
    split: str = "test"
    validation_articles: int = 4
    seed: int = 0
    max_questions: int | None = None
    long_questions: int | None = 300
    tasks: tuple[str, ...] = TASKS
    baseline_encoder: str = "all-MiniLM-L6-v2"
    baseline_max_length: int = 256
    batch_size: int = 32
    cost_pairs: int = 48
    cost_repeats: int = 3
    show_progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {TASKS}")
        if self.split not in ("test", "validation"):
            raise ValueError("split must be 'test' (reporting) or 'validation' (choosing settings)")
        for path in (self.squad_path, self.split_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} not found (the evaluation reads SQuAD dev and the project's split)")
        if self.wiki_path is not None and not Path(self.wiki_path).is_file():
            raise FileNotFoundError(f"{self.wiki_path} not found (pass wiki_path=None to skip the distractors)")
        if self.nq_path is not None and not Path(self.nq_path).is_file():
            raise FileNotFoundError(f"{self.nq_path} not found (pass nq_path=None to leave NQ out)")


@dataclass
class EvaluationReport:
    """Everything one run measured; ``to_markdown`` prints the tables."""

    model: str
    settings: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    global_retrieval: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # corpus -> system -> m
    local_retrieval: dict[str, dict[str, float]] = field(default_factory=dict)
    long_document_retrieval: dict[str, dict[str, float]] = field(default_factory=dict)
    generation: dict[str, dict[str, float]] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        return format_markdown(self)


def evaluate(model: GeARModel, settings: EvaluationSettings, model_name: str = "") -> EvaluationReport:
    """Run the chosen tasks for ``model`` and its baselines on the same questions; see the module docstring."""
    start = time.perf_counter()
    report = EvaluationReport(model=model_name or str(getattr(model, "name_or_path", "")), settings=asdict(settings))
    report.environment = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(model.device),
        "python": platform.python_version(),
    }
    model.eval()
    if settings.split == "test":
        paragraphs = split_paragraphs(settings.squad_path, settings.split_path, "test")
    else:
        paragraphs = validation_paragraphs(
            settings.squad_path, settings.split_path, settings.validation_articles, settings.seed
        )
    examples = question_examples(paragraphs, settings.max_questions, settings.seed)
    if not examples:
        raise ValueError("no questions to evaluate")
    report.counts = {"articles": len({p.title for p in paragraphs}), "paragraphs": len(paragraphs)}
    report.counts["questions"] = len(examples)
    baseline = baselines.dense_encoder(settings.baseline_encoder, settings.baseline_max_length).to(model.device)
    baseline_name = Path(settings.baseline_encoder).name
    if "global" in settings.tasks:
        report.global_retrieval = _global(model, baseline, baseline_name, examples, settings, report)
        report.seconds["global"] = time.perf_counter() - start
    if "local" in settings.tasks:
        tick = time.perf_counter()
        report.local_retrieval = local_retrieval_metrics(model, examples, baseline, baseline_name, settings.batch_size)
        report.seconds["local"] = time.perf_counter() - tick
    if "long" in settings.tasks:
        tick = time.perf_counter()
        articles = examples_from_triples(long_document_triples(paragraphs))
        articles = sample_in_order(articles, settings.long_questions, settings.seed)
        report.counts["long_questions"] = len(articles)
        report.counts["long_sentences"] = round(mean(len(e.sentences) for e in articles))
        report.long_document_retrieval = local_retrieval_metrics(
            model, articles, baseline, baseline_name, settings.batch_size
        )
        report.seconds["long"] = time.perf_counter() - tick
    if "generation" in settings.tasks:
        tick = time.perf_counter()
        report.generation, report.examples = _generation(model, examples, settings)
        report.seconds["generation"] = time.perf_counter() - tick
    if "cost" in settings.tasks:
        tick = time.perf_counter()
        report.cost = _cost(model, baseline, baseline_name, examples, settings)
        report.seconds["cost"] = time.perf_counter() - tick
    report.seconds["total"] = time.perf_counter() - start
    return report


def _global(
    model: GeARModel,
    baseline: GeARModel,
    baseline_name: str,
    examples: Sequence[QuestionExample],
    settings: EvaluationSettings,
    report: EvaluationReport,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every system through the searcher the library serves, over each question set's corpus and the same with the
    wiki distractors: ``squad`` (the questions' gold paragraphs among every dev paragraph) and, with ``nq_path``,
    ``nq`` (NQ-QED's held-out questions among their passages)."""
    corpus = read_squad(settings.squad_path)  # every dev paragraph: the test articles' and all the others
    question_sets = {
        "squad": (
            [e.question for e in examples],
            [{e.paragraph_id} for e in examples],
            [p.id for p in corpus],
            [p.context for p in corpus],
        )
    }
    if settings.nq_path is not None:
        nq = examples_from_triples(nq_validation_triples(settings.nq_path))
        question_sets["nq"] = passage_questions(nq, "nq")
        report.counts["questions_nq"] = len(nq)
    wiki: tuple[list[str], list[str]] | None = None
    if settings.wiki_path is not None:
        wiki = tuple(map(list, zip(*wiki_vital_documents(settings.wiki_path), strict=True)))  # type: ignore[assignment]
    encoders = {"GeAR": model, baseline_name: baseline}

    def encode(encoder: GeARModel, texts: list[str]) -> EncodedDocuments:
        return encode_for_index(
            encoder, texts, encoder.config.indexes_sentences, settings.batch_size, settings.show_progress
        )

    wiki_vectors = {name: encode(encoder, wiki[1]) for name, encoder in encoders.items()} if wiki else {}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, (queries, golds, ids, texts) in question_sets.items():
        vectors = {name: encode(encoder, texts) for name, encoder in encoders.items()}
        corpora = {set_name: False} | ({f"{set_name}+wiki": True} if wiki else {})
        for corpus_name, with_wiki in corpora.items():
            searchers = {}
            for name, encoder in encoders.items():
                parts = [(vectors[name], ids, texts)] + ([(wiki_vectors[name], *wiki)] if with_wiki else [])
                searchers[name] = dense_searcher(encoder, *parts)
            report.counts[f"corpus_{corpus_name}"] = len(searchers["GeAR"].index)
            gear = searchers.pop("GeAR")
            report.settings["hybrid_fusion"] = asdict(gear.fusion)  # what mode="hybrid" measured
            results[corpus_name] = global_retrieval_metrics(gear, queries, golds, dense_baselines=searchers)
    return results


HYBRID_GLOBAL = "GeAR + BM25 (hybrid)"


def passage_questions(
    examples: Sequence[QuestionExample], prefix: str
) -> tuple[list[str], list[set[str]], list[str], list[str]]:
    """Questions asked against the distinct passages they were written on: ``(queries, golds, ids, texts)``, each
    gold the id (``prefix-i``) of the question's own passage."""
    texts = list(dict.fromkeys(e.context for e in examples))
    id_of = {text: f"{prefix}-{i}" for i, text in enumerate(texts)}
    return [e.question for e in examples], [{id_of[e.context]} for e in examples], list(id_of.values()), texts


def dense_searcher(encoder: GeARModel, *parts: tuple[EncodedDocuments, Sequence[str], Sequence[str]]) -> GeARSearcher:
    """A searcher over documents whose vectors are already computed, each part ``(encoded, ids, texts)`` (a corpus,
    then its distractors; ``encoded`` from :func:`~gear_core.retrieval.encode_for_index`), so a corpus with and
    without distractors is encoded once."""
    sentences = parts[0][0][1] is not None if parts else False
    index = DocumentIndex(encoder.config.hidden_size, model=model_identity(encoder), sentences=sentences)
    for encoded, ids, texts in parts:
        index.add(encoded[0], ids, texts, *encoded[1:])
    return GeARSearcher(encoder, index, check=False, mode="dense")


def searcher_rankings(
    searcher: GeARSearcher, queries: list[str], k: int, dense_baselines: Mapping[str, GeARSearcher] | None = None
) -> dict[str, list[list[str]]]:
    """Each system's top ``k`` ids per query, as a retriever asked for ``k`` returns them (the hybrid fuses as the
    searcher's ``fusion`` says): BM25 (the searcher's ``LexicalIndex``), the dense baselines' searchers, then the
    searcher in ``mode="dense"`` (``GeAR``) and ``mode="hybrid"``. The searcher's mode is left as it was."""
    found = {"BM25": [[i for i, _ in row] for row in searcher.lexical_index().search(queries, k)]}
    for name, baseline in (dense_baselines or {}).items():
        found[name] = [[r.id for r in row] for row in baseline.search_batch(queries, k, rank_sentences=False)]
    mode = searcher.mode
    try:
        for system_mode, name in (("dense", "GeAR"), ("hybrid", HYBRID_GLOBAL)):
            searcher.mode = system_mode
            found[name] = [[r.id for r in row] for row in searcher.search_batch(queries, k, rank_sentences=False)]
    finally:
        searcher.mode = mode
    return found


def global_retrieval_metrics(
    searcher: GeARSearcher,
    queries: list[str],
    golds: list[set[str]],
    dense_baselines: Mapping[str, GeARSearcher] | None = None,
) -> dict[str, dict[str, float]]:
    """R@1, R@5 and MAP@5 from each system's top 5 (what ``similarity_top_k=5`` returns), R@20 from its top 20."""
    top5 = searcher_rankings(searcher, queries, 5, dense_baselines)
    top20 = searcher_rankings(searcher, queries, 20, dense_baselines)
    return {
        system: {
            **retrieval_metrics(top5[system], golds, recall_ks=(1, 5), map_ks=(5,)),
            **retrieval_metrics(top20[system], golds, recall_ks=(20,), map_ks=()),
        }
        for system in top5
    }


def local_retrieval_metrics(
    model: GeARModel,
    examples: Sequence[QuestionExample],
    baseline: GeARModel | None = None,
    baseline_name: str = "all-MiniLM-L6-v2",
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Local retrieval (rank each question's gold document's sentences) for GeAR and, on the same questions, the
    expected random ranking, the first sentence, BM25 and a dense sentence encoder (``baseline``, default
    :func:`~gear_core.evaluation.baselines.dense_encoder` of ``baseline_name``): {system: {metric: value}}."""
    if baseline is None:
        baseline = baselines.dense_encoder(baseline_name)
    golds = [e.gold_sentences for e in examples]
    ks = sorted({*LOCAL_METRICS["recall_ks"], *LOCAL_METRICS["map_ks"]})
    random_row: dict[str, float] = {}
    for k in ks:
        if k in LOCAL_METRICS["recall_ks"]:
            random_row[f"R@{k}"] = mean(
                expected_random_recall_at_k(len(e.sentences), len(e.gold_sentences), k) for e in examples
            )
        if k in LOCAL_METRICS["map_ks"]:
            random_row[f"MAP@{k}"] = mean(
                expected_random_average_precision_at_k(len(e.sentences), len(e.gold_sentences), k) for e in examples
            )
    # "GeAR (cross-attention)" is always the attention alone (a stable key); a model that mixes BM25 in
    # (ranking_lexical_weight) also gets its configured ranking, from the same pass.
    configured = model.config.sentence_scoring
    systems = {"GeAR (cross-attention)": replace(configured, lexical_weight=0.0)}
    if configured.lexical_weight:
        systems[f"GeAR (cross-attention + BM25, weight {configured.lexical_weight:g})"] = configured
    gear = scoring_rankings(model, examples, list(systems.values()), batch_size=min(16, batch_size))
    rankings = {
        "first sentence": baselines.first_sentence_rankings(examples),
        "BM25 (sentences)": baselines.bm25_sentence_rankings(examples),
        f"{baseline_name} (sentences)": baselines.dense_sentence_rankings(baseline, examples, batch_size),
        **dict(zip(systems, gear, strict=True)),
    }
    results = {"random (expected)": random_row}
    results.update({name: retrieval_metrics(r, golds, **LOCAL_METRICS) for name, r in rankings.items()})
    return results


EVIDENCE_LABELS = {"span_reader": "GeAR (span reader)", "decoder": "GeAR (decoder)"}

# Decoding without the span constraint or the query-word penalty (GeARConfig's generation_* defaults).
FREE_DECODING: dict[str, Any] = {"spans_only": False, "span_sentences": 0, "query_penalty": 0.0}


def generation_metrics(
    model: GeARModel, examples: Sequence[QuestionExample], batch_size: int = 16, **options: Any
) -> tuple[dict[str, float], list[str]]:
    """Generated answers (question + gold context) scored as SQuAD does (EM, F1 against ``answers``, 0-100), and
    how often they are grounded (``GeARModel.generate_evidence_batch``: where a quote was copied from, else
    :func:`~gear_core.evidence.ground_evidence`; for the span reader, its support (probability against no answer)
    reaches ``min_support``: the rest it abstains on), and grounded on a gold sentence; also how often the answer's
    span, whatever its support, lies in a gold sentence, how often an answer given (not abstained on) does, and how
    often there is no answer (abstained). ``options``
    go to ``generate_evidence_batch`` (decoding settings, ``evidence_from``).
    Returns the metrics and the outputs."""
    grounded = model.generate_evidence_batch(
        [e.question for e in examples], [e.context for e in examples], batch_size=batch_size, **options
    )
    outputs = [g.text for g in grounded]
    in_gold = [
        g.start_char is not None
        and any(
            g.start_char < e.sentences[i].end_char and e.sentences[i].start_char < g.end_char for i in e.gold_sentences
        )
        for g, e in zip(grounded, examples, strict=True)
    ]
    on_gold = [g.grounded and inside for g, inside in zip(grounded, in_gold, strict=True)]
    given = [inside for o, inside in zip(outputs, in_gold, strict=True) if o]  # the evidence a user is shown
    metrics = {
        "EM": 100 * mean(exact_match(o, e.answers) for o, e in zip(outputs, examples, strict=True)),
        "F1": 100 * mean(token_f1(o, e.answers) for o, e in zip(outputs, examples, strict=True)),
        "grounded %": 100 * mean(g.grounded for g in grounded),
        "grounded on the gold sentence %": 100 * mean(on_gold),
        "in the gold sentence %": 100 * mean(in_gold),
        "answers in the gold sentence %": 100 * mean(given) if given else 0.0,
        "abstained %": 100 * mean(not o for o in outputs),  # no evidence: counted wrong by EM and F1
    }
    return metrics, outputs


def _generation(
    model: GeARModel, examples: Sequence[QuestionExample], settings: EvaluationSettings
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    results: dict[str, dict[str, float]] = {}
    shown: list[dict[str, Any]] = []
    sources = ["span_reader", "decoder"] if model.span_reader is not None else ["decoder"]
    for source in sources:  # the configured evidence's outputs are the examples shown
        metrics, outputs = generation_metrics(model, examples, settings.batch_size, evidence_from=source)
        results[EVIDENCE_LABELS[source]] = metrics
        if source == model.config.evidence_from:
            shown = [
                {"question": e.question, "answers": list(e.answers), "generated": o}
                for e, o in list(zip(examples, outputs, strict=True))[:5]
            ]
    if model.config.generation_spans_only or model.config.generation_query_penalty:
        # The same weights decoding freely (the paper's greedy search), in the same run: what the rules buy.
        results["GeAR (decoder, free decoding)"], _ = generation_metrics(
            model, examples, settings.batch_size, evidence_from="decoder", **FREE_DECODING
        )
    return results, shown


def _cost(
    model: GeARModel,
    baseline: GeARModel,
    baseline_name: str,
    examples: Sequence[QuestionExample],
    settings: EvaluationSettings,
) -> dict[str, dict[str, float]]:
    """Milliseconds per (question, paragraph) pair, one pair at a time and batched, jobs interleaved per round."""
    pairs = [(e.question, e.context, [s.text for s in e.sentences]) for e in examples[: settings.cost_pairs]]
    batch = settings.batch_size

    def bi_encoder_single() -> None:
        for q, d, _ in pairs:
            model.encode_queries([q])
            model.encode_documents([d])

    def bi_encoder_batched() -> None:
        model.encode_queries([q for q, _, _ in pairs], batch_size=batch)
        model.encode_documents([d for _, d, _ in pairs], batch_size=batch)

    def rank_single() -> None:
        for q, d, _ in pairs:
            model.rank_sentences(q, d, top_n=None)

    def rank_batched() -> None:
        model.rank_sentences_batch([q for q, _, _ in pairs], [d for _, d, _ in pairs], batch_size=batch)

    def sentences_single() -> None:
        for q, _, sentences in pairs:
            baseline.encode_queries([q])
            baseline.encode_documents(sentences)

    def sentences_batched() -> None:
        baseline.encode_queries([q for q, _, _ in pairs], batch_size=batch)
        baseline.encode_documents([s for _, _, sentences in pairs for s in sentences], batch_size=batch)

    def generate_batched() -> None:
        model.generate_batch([q for q, _, _ in pairs], [d for _, d, _ in pairs], batch_size=batch)

    def rank_and_read_batched() -> None:  # the highlighter's one pass: the ranking, then the reader's evidence
        model.rank_and_generate_batch([q for q, _, _ in pairs], [d for _, d, _ in pairs], batch_size=batch)

    jobs: dict[str, dict[str, Callable[[], None]]] = {
        "bi-encoder: encode query + paragraph": {"single": bi_encoder_single, "batched": bi_encoder_batched},
        "GeAR rank_sentences (cross-attention)": {"single": rank_single, "batched": rank_batched},
        f"{baseline_name}: encode query + every sentence": {"single": sentences_single, "batched": sentences_batched},
        "GeAR generate (evidence)": {"batched": generate_batched},
    }
    if model.span_reader is not None and model.config.evidence_from == "span_reader":
        jobs["GeAR rank + span reader evidence (one pass)"] = {"batched": rank_and_read_batched}
    timings = _interleaved_medians(jobs, settings.cost_repeats)
    reference = timings["bi-encoder: encode query + paragraph"]
    results = {}
    for job, modes in timings.items():
        row = {}
        for mode, seconds in modes.items():
            row[f"ms/pair ({mode})"] = 1000 * seconds / len(pairs)
            row[f"ratio ({mode})"] = seconds / reference[mode]
        results[job] = row
    return results


def _interleaved_medians(jobs: dict[str, dict[str, Callable[[], None]]], repeats: int) -> dict[str, dict[str, float]]:
    for modes in jobs.values():  # warm-up: first calls pay for lazy initialisation
        for run in modes.values():
            run()
    samples: dict[tuple[str, str], list[float]] = {(j, m): [] for j, modes in jobs.items() for m in modes}
    for _ in range(repeats):
        for job, modes in jobs.items():
            for mode, run in modes.items():
                tick = time.perf_counter()
                run()
                samples[(job, mode)].append(time.perf_counter() - tick)
    return {job: {mode: statistics.median(samples[(job, mode)]) for mode in modes} for job, modes in jobs.items()}


# ----------------------------------------------------------------------------------------------------------
# Markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


#: How each fusion method merges, in a report's words.
MERGED_BY = {"z_score": "standardised score", "reciprocal_rank": "reciprocal rank"}


def hybrid_fusion_method(settings: Mapping[str, Any]) -> str:
    """The fusion method a report's hybrid rows measured (its ``settings``): reports written before fusion had a
    method merged by reciprocal rank."""
    return (settings.get("hybrid_fusion") or {}).get("method", "reciprocal_rank")


def format_markdown(report: EvaluationReport) -> str:
    """The report as markdown tables (what ``gear eval`` prints and benchmarks/ commits)."""
    s = report.settings
    where = "`test` articles" if s["split"] == "test" else "validation slice of the `train` articles"
    parts = [
        f"# GeAR evaluation: `{report.model}`",
        "",
        f"{report.counts.get('questions', 0):,} questions from {report.counts.get('paragraphs', 0):,} paragraphs of "
        f"{report.counts.get('articles', 0)} SQuAD dev {where}. Baseline encoder: `{s['baseline_encoder']}` "
        f"(max {s['baseline_max_length']} tokens). torch {report.environment.get('torch')}, "
        f"{report.environment.get('threads')} threads, {report.environment.get('device')}.",
    ]
    if report.global_retrieval:
        metrics = ["R@1", "R@5", "MAP@5", "R@20"]
        through_searcher = any(HYBRID_GLOBAL in systems for systems in report.global_retrieval.values())
        fusion = s.get("hybrid_fusion")  # reports written before fusion settings fused each one's top k
        method = hybrid_fusion_method(s)
        merged = f"GeAR's and BM25's top k merged by {MERGED_BY[method]}"
        if fusion:
            weighted = (
                f" with constant {fusion['rank_constant']:g}, GeAR's ranks weighted {fusion['dense_weight']:g}"
                if method == "reciprocal_rank"
                else f", GeAR's weighted {fusion['dense_weight']:g}"
            )
            merged = (
                f"GeAR's and BM25's top {fusion['depth']}s (top k when k is larger) merged by {MERGED_BY[method]}"
                f"{weighted}"
            )
        how = (
            'Every system through the library\'s searcher (`GeARSearcher`: `mode="dense"`, `mode="hybrid"` = '
            f"{merged}, BM25 from its `LexicalIndex`); R@1, R@5 and MAP@5 from top-5 searches, R@20 from top-20 ones."
            if through_searcher  # reports written before the searcher measured them: top 20s, fused then cut
            else "Each system's top 20 (exact inner product for the dense ones); GeAR + BM25 merges the two top 20s "
            "by reciprocal rank."
        )
        corpora = "`squad`: the questions above among every SQuAD dev paragraph"
        if "questions_nq" in report.counts:
            corpora += (
                f"; `nq`: NQ-QED's {report.counts['questions_nq']:,} held-out questions (training's `nq` validation "
                "set, which picks checkpoints) among their passages"
            )
        parts += [
            "",
            "## Global retrieval",
            "",
            f"{how} {corpora}; `+wiki`: with the wiki-vital summaries as distractors.",
        ]
        for corpus, systems in report.global_retrieval.items():
            rows = [[name] + [_fmt(values.get(m)) for m in metrics] for name, values in systems.items()]
            if corpus == "squad":
                rows.append([PAPER_LABEL] + [_fmt(PAPER["global"].get(m)) for m in metrics])
            size = report.counts.get("corpus_" + corpus, 0)
            parts += ["", f"### {corpus} ({size:,} documents)", "", _table(["system", *metrics], rows)]
    if report.local_retrieval:
        metrics = ["R@1", "MAP@1", "R@3", "MAP@3"]
        rows = [[name] + [_fmt(m.get(k)) for k in metrics] for name, m in report.local_retrieval.items()]
        rows.append([PAPER_LABEL] + [_fmt(PAPER["local"].get(k)) for k in metrics])
        parts += [
            "",
            "## Local retrieval (rank the gold paragraph's sentences; gold = sentences holding an answer start)",
            "",
            _table(["system", *metrics], rows),
        ]
    if report.long_document_retrieval:
        metrics = ["R@1", "MAP@1", "R@3", "MAP@3"]
        rows = [[name] + [_fmt(m.get(k)) for k in metrics] for name, m in report.long_document_retrieval.items()]
        parts += [
            "",
            f"## Long documents ({report.counts.get('long_questions', 0):,} questions against whole articles, "
            f"{report.counts.get('long_sentences', 0)} sentences on average; GeAR reads them in windows)",
            "",
            _table(["system", *metrics], rows),
        ]
    if report.generation:
        grounding = [
            "grounded %",
            "grounded on the gold sentence %",
            "in the gold sentence %",
            "answers in the gold sentence %",
            "abstained %",
        ]
        rows = [
            [name, _fmt(m["EM"], 1), _fmt(m["F1"], 1), *(_fmt(m.get(k), 1) for k in grounding)]
            for name, m in report.generation.items()
        ]
        rows.append(
            [
                PAPER_LABEL,
                _fmt(PAPER["generation"]["EM"], 1),
                _fmt(PAPER["generation"]["F1"], 1),
                *[""] * len(grounding),
            ]
        )
        parts += [
            "",
            "## Generation (question + gold paragraph -> answer; SQuAD EM / F1)",
            "",
            "Grounded: the paragraph span a quote was copied from, or for free text the span that best supports "
            f"it, has token F1 >= {DEFAULT_MIN_SUPPORT} with the output (`GeARModel.generate_evidence_batch`); on "
            "the gold sentence: that span also overlaps a sentence holding an answer. The span reader's evidence is a "
            "span of the paragraph, given when its support (the probability against no answer) reaches the model's "
            "`span_reader_min_support`: below, it abstains (no evidence; EM and F1 count it wrong); in the gold "
            "sentence: the span, whatever its support, overlaps a sentence holding an answer; answers in the gold "
            "sentence: the same, of the answers given (abstentions left out).",
            "",
            _table(["system", "EM", "F1", *grounding], rows),
        ]
        if report.examples:
            parts += ["", "Examples:", ""]
            parts += [
                f"- {e['question']} -> `{e['generated']}` (gold: {' | '.join(dict.fromkeys(e['answers']))})"
                for e in report.examples
            ]
    if report.cost:
        header = ["job", "ms/pair, one pair at a time", "ratio", f"ms/pair, batched ({s['batch_size']})", "ratio"]
        rows = [
            [
                job,
                _fmt(m.get("ms/pair (single)"), 1),
                _fmt(m.get("ratio (single)"), 2) + ("x" if "ratio (single)" in m else ""),
                _fmt(m.get("ms/pair (batched)"), 1),
                _fmt(m.get("ratio (batched)"), 2) + "x",
            ]
            for job, m in report.cost.items()
        ]
        parts += [
            "",
            f"## Cost ({s['cost_pairs']} question-paragraph pairs, median of {s['cost_repeats']} interleaved rounds; "
            "ratios to the bi-encoder; the paper reports 1.28x for ranking on CPU)",
            "",
            _table(header, rows),
        ]
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
    parts += ["", f"Wall time: {seconds}.", ""]
    return "\n".join(parts)
