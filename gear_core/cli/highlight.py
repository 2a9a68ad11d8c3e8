"""``gear highlight MODEL --query Q (--document TEXT | --file PATH)``: ranked sentences, and evidence."""

from __future__ import annotations

import argparse
import sys

from gear_core.cli._common import CommandError, load, non_blank, positive_int


def read_document(path: str) -> str:
    """The file's text as :func:`gear_core.demo.corpus.read_text_file` reads it for the demo, so the offsets
    printed index the file's own characters (CRLF included); what is wrong with it is one line."""
    from gear_core.demo.corpus import NotTextError, read_text_file

    try:
        document = read_text_file(path)
    except NotTextError as error:  # a folder, a device, a binary file, not UTF-8
        raise CommandError(f"{path} is {error}") from None
    except FileNotFoundError:
        raise  # "no such file: PATH"
    except OSError as error:  # e.g. no permission
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    if not document.strip():
        raise CommandError(f"{path} is empty")
    return document


def run(args: argparse.Namespace) -> int:
    document = args.document if args.file is None else read_document(args.file)
    model = load(args.model)
    generate = model.config.evidence_from == "span_reader" if args.generate is None else args.generate
    if generate:  # one ranking pass gives the sentences and the evidence
        ([ranked], [evidence]) = model.rank_and_generate_batch([args.query], [document], top_n=args.top_n)
    else:
        ranked, evidence = model.rank_sentences(args.query, document, top_n=args.top_n), None
    from gear_core.text import NOT_ENGLISH_NOTE, looks_english

    if not looks_english(args.query):
        print(f"gear: note: {NOT_ENGLISH_NOTE}", file=sys.stderr)
    for rank, sentence in enumerate(ranked, start=1):
        print(f"{rank}. [{sentence.score:.3f}] ({sentence.start_char}:{sentence.end_char}) {sentence.text}")
    if evidence is not None and not evidence.text:  # the span reader abstained
        print(f"evidence: [{evidence.support:.2f}] (no answer in this document)")
    elif evidence is not None:
        where = f"({evidence.start_char}:{evidence.end_char}) " if evidence.grounded else "(ungrounded) "
        print(f"evidence: [{evidence.support:.2f}] {where}{evidence.text}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    highlight = commands.add_parser("highlight", help="rank a document's sentences for a query")
    highlight.add_argument("model")
    highlight.add_argument("--query", required=True, type=non_blank)
    source = highlight.add_mutually_exclusive_group(required=True)
    source.add_argument("--document", type=non_blank, help="the document's text")
    source.add_argument("--file", help="a UTF-8 text file; the offsets printed index its characters")
    highlight.add_argument("--top-n", type=positive_int, default=3)
    highlight.add_argument(
        "--generate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the evidence and its span (default: on for a model with a span reader, as the shipped one)",
    )
    highlight.set_defaults(handler=run)
