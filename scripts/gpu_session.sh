#!/usr/bin/env bash
# One lent GPU session (15 minutes of device time, one command of at most 10) in two stages, each through
# scripts/gpu_train.sh train:
#   1. the full GeAR step (`-c gpu`: towers, fusion, decoder) from the shipped model, RUN_DIR runs/gpu;
#   2. the span reader (`-c span-reader-gpu`) from stage 1's best model (the shipped one when stage 1
#      left none), so the reader reads through the new towers' shared layers. RUN_DIR runs/gpu-reader.
#   3. with --parity, benchmarks/device_parity.py: the trained model ranking and answering on the CPU and on CUDA
#      (the first H200 run scored the frozen ranking's whole-article local R@1 0.333 where this CPU scores 0.667).
# OUT receives stage 2's packed int8 export, train.log and metrics.csv, and as full_stage_logs.tar stage 1's
# train.log and metrics.csv and the parity tables (7 files of the 8 that may come back).
#
# --reader-layers SHARED,OWN gives the reader another shape (span_reader_shared_layers, span_reader_layers): it then
# starts afresh from the encoder's layers (a shallower reader costs less; 1,3 reads at 2/3 of today's 2,4 cost).
# --reader-teacher MODEL distils the reader from MODEL's (e.g. gear-minilm) and starts it as MODEL's first layers
# (--model.reader_teacher, --model.reader_start teacher: the same shared layers, no more own layers).
#
#   bash scripts/gpu_session.sh OUT [--full-minutes 5] [--reader-minutes 3.5] [--reader-steps 4000] [--parity]
#       [--reader-layers SHARED,OWN] [--reader-teacher MODEL]
# Here: `bash scripts/gpu_train.sh prepare` first, then the device tool with carry [".gpu"].
set -uo pipefail
cd "$(dirname "$0")/.."
(($# >= 1)) || { sed -n '17,18p' "$0" >&2; exit 2; }
out=$1; shift
full_minutes=5 reader_minutes=3.5 reader_steps=4000 parity=0 reader_layers="" reader_teacher=""
while (($#)); do
    case $1 in
        --full-minutes) full_minutes=$2; shift 2 ;;
        --reader-minutes) reader_minutes=$2; shift 2 ;;
        --reader-steps) reader_steps=$2; shift 2 ;;
        --parity) parity=1; shift ;;
        --reader-layers) reader_layers=$2; shift 2 ;;
        --reader-teacher) reader_teacher=$2; shift 2 ;;
        *) echo "gpu_session: unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
stage1_out=$(mktemp -d)
echo "#### stage 1: the full step ($full_minutes min)"
full_args=()  # no synthesized triples prepared: SQuAD train and NQ-QED alone
[[ -f ${GPU_DIR:-.gpu}/data/synthetic/wiki_extract.jsonl.gz ]] || full_args=(--data.triples_paths '[]')
RUN_DIR=runs/gpu GEAR_GPU_CONFIG=gpu bash scripts/gpu_train.sh train "$stage1_out" --minutes "$full_minutes" "${full_args[@]}"
rc1=$?
start_model=gear-minilm
if ((rc1 == 0)) && [[ -f runs/gpu/best/config.json ]]; then start_model=runs/gpu/best; fi
echo "#### stage 2: the span reader from $start_model ($reader_minutes min, at most $reader_steps steps)"
reader_args=()
if [[ -n $reader_layers ]]; then
    reader_args=(--model.config_overrides "{span_reader_shared_layers: ${reader_layers%,*}, span_reader_layers: ${reader_layers#*,}, evidence_from: span_reader}")
fi
if [[ -n $reader_teacher ]]; then
    reader_args+=(--model.reader_teacher "$reader_teacher" --model.reader_start teacher)
fi
RUN_DIR=runs/gpu-reader GEAR_GPU_CONFIG=span-reader-gpu bash scripts/gpu_train.sh train "$out" \
    --minutes "$reader_minutes" --model.model_name_or_path "$start_model" --trainer.max_steps "$reader_steps" \
    "${reader_args[@]}"
rc2=$?
if ((parity)); then
    model=gear_core/checkpoints/gear-minilm
    [[ -f runs/gpu-reader/best/config.json ]] && model=runs/gpu-reader/best
    echo "#### device parity of $model"
    PYTHONPATH="$(pwd):$(pwd)/runs/gpu-reader/site" NLTK_DATA="${GPU_DIR:-.gpu}/nltk_data" \
        GEAR_DATA_ROOT="${GPU_DIR:-.gpu}/data" HF_HUB_OFFLINE=1 timeout 300 \
        python3 benchmarks/device_parity.py --model "$model" --out "$stage1_out/device_parity" || echo "parity failed"
fi
tar -cf "$out/full_stage_logs.tar" -C "$stage1_out" $(cd "$stage1_out" && ls train.log metrics.csv device_parity.* 2>/dev/null)
echo "#### stage 1 exit $rc1 (model: $start_model), stage 2 exit $rc2"
exit $((rc2 ? rc2 : rc1))
