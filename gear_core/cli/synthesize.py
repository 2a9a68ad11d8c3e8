"""``gear synthesize``: the paper's relevant-information synthesis (keyword query -> sentence triples), resumable."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from gear_core.cli._common import read_checked, reading
from gear_core.data.sources import wiki_vital_documents
from gear_core.data.synthesis import (
    EchoLLM,
    SynthesisConfig,
    load_encoder,
    squad_documents,
    synthesize,
)


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synthesize`` on an argparse subparsers object; its handler is :func:`run`."""
    parser = commands.add_parser(
        "synthesize",
        help="synthesise relevant-information triples (keyword query -> sentence) from documents",
        description="The GeAR paper's relevant-information synthesis (Appendix A). Resumable: rerun the same "
        "command to continue an interrupted run.",
    )
    parser.add_argument("--squad", help="SQuAD v1.1-format file; its --split-name articles' paragraphs are used")
    parser.add_argument(
        "--split",
        help="split.json; required with --squad and --wiki-extract; its test titles are excluded from --wiki and "
        "--wiki-extract",
    )
    parser.add_argument("--split-name", default="train", choices=("train", "test"))
    parser.add_argument("--wiki", help="wiki-vital summaries (JSONL or JSONL.gz with title and text)")
    parser.add_argument(
        "--wiki-extract",
        help="WikiExtractor articles (JSONL(.gz) with title and text, e.g. ../shared/data/wiki-extract/"
        "articles.jsonl.gz), cut into chunks of up to --max-document-words words (ids wx:<title>#<k>)",
    )
    parser.add_argument(
        "--max-document-words",
        type=int,
        default=380,
        help="--wiki-extract chunk size in words (default 380, about 500 tokens: the paper's document length)",
    )
    parser.add_argument("--out", required=True, help="output triples JSONL (appended to; <out>.done tracks progress)")
    parser.add_argument("--limit", type=int, default=None, help="read at most N documents (done ones included)")
    relevance = parser.add_mutually_exclusive_group()
    relevance.add_argument("--encoder", help="GeAR folder or BERT-family encoder for the relevance filter")
    relevance.add_argument("--no-filter", action="store_true", help="skip the relevance filter")
    parser.add_argument(
        "--encoder-max-length",
        type=int,
        default=None,
        help="truncate documents to N tokens for the relevance filter's embeddings (default: the encoder's own, "
        "512). Embedding is the filter's cost and grows with length; all-MiniLM-L6-v2 was trained on inputs of "
        "at most 256 tokens (sentence-transformers truncates it there), so longer text adds little to its "
        "mean-pooled embedding: 256 keeps ~97%% of the queries 512 keeps, at about twice the speed",
    )
    parser.add_argument("--min-similarity", type=float, default=SynthesisConfig.min_similarity)
    parser.add_argument("--seed", type=int, default=SynthesisConfig.seed)
    parser.add_argument(
        "--llm",
        choices=("offline", "mock"),
        default="offline",
        help="query rewriter: the offline keyword rewriter, or LlamaIndex's MockLLM (tests only)",
    )
    parser.add_argument("--sentences-per-document", type=int, default=SynthesisConfig.sentences_per_document)
    parser.add_argument(
        "--min-candidates",
        type=int,
        default=SynthesisConfig.min_candidates,
        help="skip documents with fewer candidate sentences (1 keeps far more of the short wiki-vital summaries)",
    )
    parser.add_argument("--keyword-drop-rate", type=float, default=SynthesisConfig.keyword_drop_rate)
    parser.add_argument("--chunk-size", type=int, default=SynthesisConfig.chunk_size)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """The ``synthesize`` handler: 0 on success, 2 on a usage or input error."""
    from gear_core.data.squad import load_split, read_squad

    def fail(message: str) -> int:
        print(f"gear synthesize: {message}", file=sys.stderr)
        return 2

    if not args.squad and not args.wiki and not args.wiki_extract:
        return fail("give --squad (with --split), --wiki and/or --wiki-extract (with --split)")
    for option, value in (("--squad", args.squad), ("--wiki-extract", args.wiki_extract)):
        if value and not args.split:
            return fail(f"{option} needs --split, so that test articles never reach the training data")
    if args.max_document_words < 1:
        return fail("--max-document-words must be at least 1")
    if args.encoder_max_length is not None and args.encoder_max_length < 8:
        return fail("--encoder-max-length must be at least 8")
    if not args.encoder and not args.no_filter:
        return fail("give --encoder for the relevance filter, or --no-filter to skip it")
    try:
        config = SynthesisConfig(
            min_similarity=args.min_similarity,
            seed=args.seed,
            sentences_per_document=args.sentences_per_document,
            min_candidates=args.min_candidates,
            keyword_drop_rate=args.keyword_drop_rate,
            chunk_size=args.chunk_size,
        )
    except ValueError as error:
        return fail(str(error))
    try:
        with reading(args.split):
            split = load_split(args.split) if args.split else {}
        if args.split and args.split_name not in split:
            return fail(f"{args.split} has no {args.split_name!r} split")
        if args.split_name == "test":
            print("gear synthesize: warning: synthesising from the test split; never train on it", file=sys.stderr)
        sources: list[Iterable[tuple[str, str]]] = []
        if args.squad:
            with reading(args.squad):
                sources.append(squad_documents(read_squad(args.squad, titles=split[args.split_name])))
        if args.wiki:
            if not Path(args.wiki).is_file():
                return fail(f"no such file: {args.wiki}")
            sources.append(
                read_checked(args.wiki, wiki_vital_documents(args.wiki, exclude_titles=split.get("test", ())))
            )
        if args.wiki_extract:
            from gear_core.data.sources import wiki_extract_documents

            if not Path(args.wiki_extract).is_file():
                return fail(f"no such file: {args.wiki_extract}")
            if "test" not in split:
                return fail(f"{args.split} has no 'test' split to exclude from --wiki-extract")
            chunks = wiki_extract_documents(
                args.wiki_extract, max_words=args.max_document_words, exclude_titles=split["test"]
            )
            sources.append(read_checked(args.wiki_extract, chunks))
    except (FileNotFoundError, ValueError, KeyError) as error:
        return fail(str(error))

    llm = EchoLLM() if args.llm == "mock" else None  # exercises the LLM path, whose parser rejects the echo
    encoder = load_encoder(args.encoder, args.encoder_max_length) if args.encoder else None
    documents = (document for source in sources for document in source)
    stats = synthesize(
        documents, args.out, config, llm=llm, encoder=encoder, show_progress=not args.no_progress, limit=args.limit
    )
    print(json.dumps(stats.as_dict(), indent=2))
    return 0
