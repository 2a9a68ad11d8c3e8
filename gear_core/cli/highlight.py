"""``gear highlight MODEL --query Q (--document TEXT | --file PATH)``: ranked sentences, and evidence."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gear_core.cli._common import CommandError, load, positive_int


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            print(f"gear: no such file: {path}", file=sys.stderr)
            return 2
        try:
            document = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text") from None
    else:
        document = args.document
    model = load(args.model)
    for rank, sentence in enumerate(model.rank_sentences(args.query, document, top_n=args.top_n), start=1):
        print(f"{rank}. [{sentence.score:.3f}] ({sentence.start_char}:{sentence.end_char}) {sentence.text}")
    if args.generate:
        (evidence,) = model.generate_evidence_batch([args.query], [document])
        where = f"({evidence.start_char}:{evidence.end_char}) " if evidence.grounded else "(ungrounded) "
        print(f"evidence: [{evidence.support:.2f}] {where}{evidence.text}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    highlight = commands.add_parser("highlight", help="rank a document's sentences for a query")
    highlight.add_argument("model")
    highlight.add_argument("--query", required=True)
    source = highlight.add_mutually_exclusive_group(required=True)
    source.add_argument("--document")
    source.add_argument("--file")
    highlight.add_argument("--top-n", type=positive_int, default=3)
    highlight.add_argument("--generate", action="store_true", help="also generate evidence")
    highlight.set_defaults(handler=run)
