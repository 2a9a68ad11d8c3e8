"""``gear info MODEL``: a model's config and parameter counts."""

from __future__ import annotations

import argparse
import json

from gear_core.cli._common import count_parameters, load


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    parts = {
        "query_encoder": model.query_encoder,
        "document_encoder": model.document_encoder,
        "retrieval_layers": model.retrieval_layers,
        "cross_attention": model.cross_attention,
        "decoder": model.decoder,
        "span_reader": model.span_reader,
    }
    counts = {name: (count_parameters(part) if part is not None else 0) for name, part in parts.items()}
    print(json.dumps({"parameters": {**counts, "total (shared counted once)": count_parameters(model)}}, indent=2))
    print(model.config.to_json_string(use_diff=True))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="print a model's config and parameter counts")
    info.add_argument("model")
    info.set_defaults(handler=run)
