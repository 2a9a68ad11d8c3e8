"""What evidence costs a RAG user: GeARHighlighter with evidence on against the same highlighter without it.

    python benchmarks/highlighter_evidence_cost.py [--model PATH] [--questions 32] [--nodes 4] [--rounds 3]
        [--out benchmarks/results/highlighter_evidence_cost.md]

Each question of the ``squad`` validation set (held-out SQuAD-train articles) comes with ``--nodes`` retrieved
nodes: its gold paragraph and the next paragraphs of its article, as a retriever's top-k would hand them over. The
highlighter runs once per question over its nodes, with ``generate_evidence=False`` and ``True`` (the model's
evidence: the span reader for a model that has one), in interleaved rounds; the figure is the median time per
question and its ratio. The answers are scored too (SQuAD EM / F1 of the evidence of the gold paragraph's node).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import gear_core
from gear_core import GeARModel
from gear_core.evaluation.metrics import exact_match, mean, token_f1
from llama_index_gear import GeARHighlighter

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_result
from validation_sources import validation_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=gear_core.DEFAULT_MODEL)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/highlighter_evidence_cost.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = GeARModel.from_pretrained(args.model)
    examples = validation_examples(args.questions * 10, 0, [])["squad"]
    paragraphs = list(dict.fromkeys(e.context for e in examples))
    seen, cases = set(), []
    for example in examples:
        if example.context in seen:
            continue
        seen.add(example.context)
        at = paragraphs.index(example.context)
        texts = [paragraphs[(at + i) % len(paragraphs)] for i in range(args.nodes)]
        nodes = [NodeWithScore(node=TextNode(text=t, id_=f"p{at}-{i}"), score=1.0) for i, t in enumerate(texts)]
        cases.append((example, nodes))
    cases = cases[: args.questions]
    highlighters = {
        "highlights only": GeARHighlighter(model=model, generate_evidence=False),
        "highlights + evidence": GeARHighlighter(model=model, generate_evidence=True),
    }

    def run(highlighter: GeARHighlighter) -> list[list[NodeWithScore]]:
        return [highlighter.postprocess_nodes(nodes, QueryBundle(e.question)) for e, nodes in cases]

    outputs = {name: run(h) for name, h in highlighters.items()}  # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in highlighters}
    for _ in range(args.rounds):
        for name, highlighter in highlighters.items():
            tick = time.perf_counter()
            run(highlighter)
            times[name].append(time.perf_counter() - tick)
    base = statistics.median(times["highlights only"])
    answers = [result[0].node.metadata["gear_evidence"]["text"] for result in outputs["highlights + evidence"]]
    em = 100 * mean(exact_match(a, e.answers) for a, (e, _) in zip(answers, cases, strict=True))
    f1 = 100 * mean(token_f1(a, e.answers) for a, (e, _) in zip(answers, cases, strict=True))
    same = all(
        [n.node.metadata["gear_highlights"] for n in a] == [n.node.metadata["gear_highlights"] for n in b]
        for a, b in zip(outputs["highlights only"], outputs["highlights + evidence"], strict=True)
    )
    model_name = "the shipped model" if args.model == gear_core.DEFAULT_MODEL else f"`{args.model}`"
    lines = [
        "# The highlighter with evidence against the highlighter without",
        "",
        f"Command: `python benchmarks/highlighter_evidence_cost.py --questions {len(cases)} --nodes {args.nodes} "
        f"--rounds {args.rounds}` on {model_name} (evidence from its {model.config.evidence_from.replace('_', ' ')}); "
        f"torch {torch.__version__}, {args.threads} threads, nothing else running. {len(cases)} questions of the "
        f"`squad` validation set, each with {args.nodes} nodes (its paragraph and the next ones), median of "
        "interleaved rounds.",
        "",
        "| highlighter | ms / question | ratio |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {1000 * statistics.median(t) / len(cases):.0f} | {statistics.median(t) / base:.2f}x |"
        for name, t in times.items()
    ]
    lines += [
        "",
        f"Same highlights with evidence on: {'yes' if same else 'NO'}. Evidence on each question's own paragraph: "
        f"EM {em:.1f}, F1 {f1:.1f} ({len(cases)} questions; abstentions count as empty answers).",
        "",
    ]
    data = {"ms/question": {n: 1000 * statistics.median(t) / len(cases) for n, t in times.items()}, "EM": em, "F1": f1}
    write_result(args.out, lines, {"args": vars(args), "same highlights": same, **data})


if __name__ == "__main__":
    main()
