"""``gear export MODEL OUT``: a release copy (fp16, bf16, fp32 or int8; sharded safetensors; ``--set`` config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gear_core.cli._common import CommandError, file_size, load, one_line, writing_folder


def parse_setting(text: str) -> tuple[str, object]:
    field, separator, value = text.partition("=")
    if not separator or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return field, json.loads(value)  # numbers, booleans, null
    except json.JSONDecodeError:
        return field, value  # plain strings such as max


def run(args: argparse.Namespace) -> int:
    import torch

    from gear_core.config import GeARConfig
    from gear_core.folders import is_model_file

    # A failed export leaves no half-written folder; replacing one keeps what is not the model's (its card).
    with writing_folder(args.out, args.overwrite, keep=lambda path: not is_model_file(path.name)) as folder:
        model = load(args.model)
        for field, value in args.settings:
            if not hasattr(model.config, field):
                raise CommandError(f"GeARConfig has no field {field!r}")
            if field == "storage_dtype":
                raise CommandError("storage_dtype follows --dtype; use --dtype int8")
            setattr(model.config, field, value)
        try:  # the same checks a fresh config gets, so a bad --set fails here and not in a user's session
            GeARConfig.from_dict(model.config.to_dict())
        except ValueError as error:
            raise CommandError(one_line(error)) from None
        if args.dtype == "int8":  # int8 matrices + per-row scales (gear_core.quantization), float32 on load
            from gear_core.folders import finish_model_folder
            from gear_core.quantization import STORAGE_DTYPE, save_int8_weights, untied_state_dict

            save_int8_weights(untied_state_dict(model.float()), folder, max_shard_size=args.max_shard_size)
            model.config.storage_dtype = STORAGE_DTYPE
            model.config.save_pretrained(folder)
            finish_model_folder(folder, model.tokenizer)
        else:
            model.to(getattr(torch, args.dtype)).save_pretrained(folder, max_shard_size=args.max_shard_size)
    files = sorted(p for p in Path(args.out).iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"saved {args.model} as {args.dtype} to {args.out}: {len(files)} files, {total / 2**20:.1f} MiB")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="copy a model for release: cast weights (fp16 halves the size) and shard the safetensors"
    )
    export.add_argument("model", help="a GeAR folder")
    export.add_argument("out", help="output folder")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    export.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32", "int8"),
        default="float16",
        help="float16 (default) halves the size; int8 quarters it (per-row scales, dequantised to float32 on load)",
    )
    export.add_argument(
        "--max-shard-size", type=file_size, default="15MB", help="largest weight file, e.g. 500KB, 1.5GB (default 15MB)"
    )
    export.add_argument(
        "--set",
        dest="settings",
        type=parse_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a GeARConfig field in the copy, e.g. ranking_query_pooling=max (repeatable)",
    )
    export.set_defaults(handler=run)
