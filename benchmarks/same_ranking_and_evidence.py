"""Do two GeAR models rank sentences and give evidence identically? The check behind a towers stage with
``retrieval_layers`` (only the embeddings may change), run on the validation sources, never on SQuAD ``test``.

    python benchmarks/same_ranking_and_evidence.py --model before=gear-minilm --model after=runs/towers-cpu/best \
        [--questions 100] [--long-questions 20] [--sets squad long nq] [--out ...]

For each validation pair: every sentence's rank and score (``rank_sentences_batch``, whole articles in windows
included), the evidence (``rank_and_generate_batch``: text, offsets, support), and the question and document
embeddings. Rankings and evidence must be equal bit for bit; the embeddings' largest difference is reported.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from gear_core import GeARModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from validation_sources import sets_from_args, validation_parser

DEFAULT_OUT = "benchmarks/results/same_ranking_and_evidence"


def outputs(model: GeARModel, examples: list) -> dict[str, object]:
    queries = [e.question for e in examples]
    documents = [e.context for e in examples]
    ranked = model.rank_sentences_batch(queries, documents)
    _, evidence = model.rank_and_generate_batch(queries, documents, top_n=1)
    return {
        "ranking": [[(s.start_char, s.end_char, s.score) for s in sentences] for sentences in ranked],
        "evidence": [(e.text, e.start_char, e.end_char, e.support) for e in evidence],
        "queries": model.encode_queries(queries),
        "documents": model.encode_documents(documents),
    }


def main() -> int:
    parser = validation_parser(__doc__)
    parser.set_defaults(questions=100, long_questions=20, sets=["squad", "long", "nq"])
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write (.md and .json)")
    args = parser.parse_args()
    if len(args.model) != 2:
        parser.error("give two models: --model before=PATH --model after=PATH")
    sets = sets_from_args(args)
    names, paths = zip(*(m.split("=", 1) for m in args.model), strict=True)
    started = time.perf_counter()
    rows, data = [], {}
    results = {name: {} for name in names}
    for name, path in zip(names, paths, strict=True):
        model = GeARModel.from_pretrained(path).eval()
        for set_name, examples in sets.items():
            results[name][set_name] = outputs(model, examples)
    before, after = (results[n] for n in names)
    for set_name, examples in sets.items():
        a, b = before[set_name], after[set_name]
        row = {
            "set": set_name,
            "pairs": len(examples),
            "same ranking": sum(x == y for x, y in zip(a["ranking"], b["ranking"], strict=True)),
            "same evidence": sum(x == y for x, y in zip(a["evidence"], b["evidence"], strict=True)),
            "query embedding max diff": float(np.abs(a["queries"] - b["queries"]).max()),
            "document embedding max diff": float(np.abs(a["documents"] - b["documents"]).max()),
        }
        rows.append(row)
        data[set_name] = row
    seconds = time.perf_counter() - started
    header = list(rows[0])
    lines = [
        f"# Same ranking and evidence: `{paths[0]}` ({names[0]}) against `{paths[1]}` ({names[1]})",
        "",
        "Validation pairs (never SQuAD `test`); a pair counts as the same when every sentence's rank and score, or "
        "the evidence's text, offsets and support, are equal bit for bit.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {seconds:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads."]
    write_result(args.out, lines, {"args": vars(args), "sets": data})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
