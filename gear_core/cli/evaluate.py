"""``gear eval [MODEL]``: the paper's tables, baselines in the same run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gear_core.cli._common import load, positive_int, read_checked, reading

if TYPE_CHECKING:
    from gear_core.evaluation.benchmark import EvaluationSettings


def model_or_default(path: str | None):
    from gear_core.loading import resolve_model_path

    path = resolve_model_path(path)
    return path, load(path)


def check_inputs(settings: EvaluationSettings) -> None:
    """Read the input files before the model loads, so a file that is not what it should be is one line naming it,
    at once (the SQuAD file and the split are read whole; the wiki corpus to its first record)."""
    from gear_core.data.sources import read_nq_qed, wiki_vital_documents
    from gear_core.data.squad import load_split, read_squad

    with reading(settings.squad_path):
        read_squad(settings.squad_path)
    with reading(settings.split_path):
        load_split(settings.split_path)
    if settings.wiki_path is not None:
        read_checked(settings.wiki_path, wiki_vital_documents(settings.wiki_path))
    if settings.nq_path is not None:
        with reading(settings.nq_path):
            read_nq_qed(settings.nq_path)


def run(args: argparse.Namespace) -> int:
    from gear_core.data.sources import NQ_QED, SQUAD_DEV, SQUAD_SPLIT, WIKI_VITAL, data_path, data_root
    from gear_core.evaluation.benchmark import EvaluationSettings, evaluate

    root = Path(args.data_dir) if args.data_dir else data_root()
    try:
        settings = EvaluationSettings(
            squad_path=args.squad or str(data_path(SQUAD_DEV, root)),
            split_path=args.split_file or str(data_path(SQUAD_SPLIT, root)),
            wiki_path=None if args.no_wiki else (args.wiki or str(data_path(WIKI_VITAL, root))),
            nq_path=None if args.no_nq else (args.nq or str(data_path(NQ_QED, root))),
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
    check_inputs(settings)
    path, model = model_or_default(args.model)
    if args.device:
        model.to(args.device)
    report = evaluate(model, settings, model_name=args.model or path)  # as asked for: no machine path
    markdown = report.to_markdown()
    print(markdown)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown, encoding="utf-8")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json(), encoding="utf-8")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    evaluation = commands.add_parser(
        "eval", help="the paper's tables (global, local, generation, cost) for a model, baselines in the same run"
    )
    evaluation.add_argument("model", nargs="?", default=None, help="a GeAR folder (default: the shipped model)")
    evaluation.add_argument(
        "--data-dir",
        default=None,
        help="the data root with squad/, nq-qed/ and wiki-vital/ (default: $GEAR_DATA_ROOT or ../shared/data)",
    )
    evaluation.add_argument("--squad", default=None, help="SQuAD v1.1 dev file (default: DATA_DIR/squad/...)")
    evaluation.add_argument("--split-file", default=None, help="the project's split.json")
    evaluation.add_argument("--wiki", default=None, help="wiki-vital summaries (JSONL.gz): distractor corpus")
    evaluation.add_argument("--no-wiki", action="store_true", help="skip the corpus with wiki distractors")
    evaluation.add_argument(
        "--nq", default=None, help="NQ-QED (JSONL.gz): its held-out questions join global retrieval"
    )
    evaluation.add_argument("--no-nq", action="store_true", help="leave NQ out of the global table")
    evaluation.add_argument(
        "--split", choices=("test", "validation"), default="test", help="report on test; choose settings on validation"
    )
    evaluation.add_argument("--tasks", default="global,local,long,generation,cost", help="comma-separated subset")
    evaluation.add_argument("--max-questions", type=positive_int, default=None, help="sample this many questions")
    evaluation.add_argument(
        "--long-questions",
        type=positive_int,
        default=300,
        help="questions asked against whole articles (the long task)",
    )
    evaluation.add_argument("--baseline", default="all-MiniLM-L6-v2", help="dense baseline encoder")
    evaluation.add_argument("--batch-size", type=positive_int, default=32)
    evaluation.add_argument("--cost-pairs", type=positive_int, default=48)
    evaluation.add_argument("--cost-repeats", type=positive_int, default=3)
    evaluation.add_argument("--device", default=None, help="e.g. cuda (default: where the model loads, the CPU)")
    evaluation.add_argument("--out", default=None, help="also write the markdown here")
    evaluation.add_argument("--json", default=None, help="also write every figure as JSON here")
    evaluation.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluation.set_defaults(handler=run)
