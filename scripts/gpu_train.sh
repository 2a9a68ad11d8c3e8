#!/usr/bin/env bash
# The GPU run in two steps: `prepare` here, `train` on the lent GPU machine (device tool, carry [".gpu"]).
#
#   bash scripts/gpu_train.sh prepare [--max-synthetic-mib N] [--synthetic PATH|none] [--max-triples N] [--seed S]
#   bash scripts/gpu_train.sh train OUT [--minutes 7] [--accelerator auto] [extra `gear train` arguments ...]
#   bash scripts/gpu_train.sh restore FILES_AT DEST      # here: the exported model folder from what came back
#
# prepare builds the ignored folder .gpu/ with what the GPU image lacks: pure-Python wheels (pinned below) for
# `gear train`, nltk's English punkt_tab data, and a copy of the data files the run reads (the synthesized
# triples subsampled by whole documents to fit the 64 MiB that may travel); it prints what would travel and
# refuses (exit 1) when that is over the limit less a margin.
# train installs the wheels offline, trains `-c gpu` from the shipped model for at most --minutes of wall clock
# (data loading, validation and the export included), exports the best model as int8 and leaves in OUT: the
# export as model.tar.partNN + manifest.json (a word-embedding shard alone is over the 16 MiB a file may have),
# train.log and metrics.csv. It fails loudly when no validation ran (no best model).
#
# Environment: PYTHON (interpreter, default python3), GPU_DIR (default .gpu), RUN_DIR (default runs/gpu),
# GEAR_GPU_CONFIG (default gpu), GPU_MARGIN_MIB (default 2), GEAR_EXPORT_RESERVE_S (default 30),
# GEAR_VALIDATION_GUESS_S (default 60: a validation's length before one has been timed).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
GPU_DIR=${GPU_DIR:-.gpu}
RUN_DIR=${RUN_DIR:-runs/gpu}
CONFIG=${GEAR_GPU_CONFIG:-gpu}
LIMIT_MIB=64
MARGIN_MIB=${GPU_MARGIN_MIB:-2}
HELPER="$REPO/scripts/gpu_prepare.py"
REFERENCE_MODEL=gear_core/checkpoints/gear-minilm

# What `gear train` imports that the GPU image (torch 2.11, transformers 5.17, lightning) lacks, pure Python:
# jsonargparse[signatures] (LightningCLI) and nltk, with their requirements that neither transformers nor
# lightning brings (click, regex and tqdm come with transformers; PyYAML and typing-extensions with lightning).
WHEELS=(
    jsonargparse==4.53.0      # LightningCLI; requires PyYAML
    docstring-parser==0.18.0  # jsonargparse[signatures]
    typeshed-client==2.15.0   # jsonargparse[signatures]; requires typing-extensions
    nltk==3.10.4              # sentence splitting (punkt); requires click, defusedxml, joblib, regex, tqdm
    defusedxml==0.7.1         # nltk
    joblib==1.6.0             # nltk; requires cloudpickle
    cloudpickle==3.1.3        # joblib
    bm25s==0.3.16             # BM25 in sentence ranking (the lexical mix) and the span reader's collator
)
# Compiled, for the GPU's CPython 3.12 on x86-64 (manylinux): BM25's English stemming. Without it BM25 would still
# run, unstemmed, and rank differently from serving.
BINARY_WHEELS=(
    PyStemmer==2.2.0.3
)
DATA_FILES=(squad/dev-v1.1.json.gz squad/split.json squad/train-v1.1.json.gz nq-qed/qed-train.jsonl.gz)
SYNTHETIC_NAME=synthetic/wiki_extract.jsonl.gz

die() { echo "gpu_train: $*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
json_field() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# ---- prepare (here) ------------------------------------------------------------------------------------

prepare() {
    local max_synthetic_mib="" synthetic=runs/data/wiki_extract.jsonl max_triples="" seed=0
    while (($#)); do
        case $1 in
            --max-synthetic-mib) max_synthetic_mib=$2; shift 2 ;;
            --synthetic) synthetic=$2; shift 2 ;;
            --max-triples) max_triples=$2; shift 2 ;;
            --seed) seed=$2; shift 2 ;;
            *) die "prepare: unknown option $1" ;;
        esac
    done
    local data_root=${GEAR_DATA_ROOT:-../shared/data}
    for f in "${DATA_FILES[@]}"; do [[ -f $data_root/$f ]] || die "no $data_root/$f (set GEAR_DATA_ROOT)"; done
    if [[ $synthetic != none && ! -f $synthetic ]]; then
        die "no synthesized triples at $synthetic (--synthetic PATH, or --synthetic none and train with --data.triples_paths '[]')"
    fi
    if [[ -e $GPU_DIR && ! -f $GPU_DIR/.gpu_prepare && -n $(ls -A "$GPU_DIR") ]]; then
        die "$GPU_DIR exists and was not made by this script: not replacing it"
    fi
    rm -rf "$GPU_DIR"
    mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/nltk_data/tokenizers/punkt_tab" "$GPU_DIR/data"
    touch "$GPU_DIR/.gpu_prepare"

    echo "== wheels (pip download --no-deps, pure Python and PyStemmer, for the GPU's Python 3.12)"
    local pip_log="$GPU_DIR/.pip.log"
    for spec in "${WHEELS[@]}"; do
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation py --abi none --platform any -d "$GPU_DIR/wheels" "$spec" \
            2>"$pip_log" || { cat "$pip_log" >&2; die "pip download $spec failed"; }
    done
    for spec in "${BINARY_WHEELS[@]}"; do
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$GPU_DIR/wheels" "$spec" \
            2>"$pip_log" || { cat "$pip_log" >&2; die "pip download $spec failed"; }
    done
    rm -f "$pip_log"
    local wheel
    for wheel in "$GPU_DIR"/wheels/*; do
        [[ $wheel == *-none-any.whl || $wheel == *-cp312-*x86_64*.whl ]] || die "$wheel is neither pure Python nor for CPython 3.12 on x86-64"
        printf '   %-48s %8s KiB\n' "$(basename "$wheel")" $(($(stat -c %s "$wheel") / 1024))
    done
    local expected=$((${#WHEELS[@]} + ${#BINARY_WHEELS[@]}))
    (($(ls "$GPU_DIR"/wheels | wc -l) == expected)) || die "expected $expected wheels in $GPU_DIR/wheels"

    echo "== nltk data (punkt_tab/english, from llama-index-core's nltk_cache)"
    local cache
    cache=$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("llama_index.core"); print(os.path.join(os.path.dirname(s.origin), "_static", "nltk_cache"))' 2>/dev/null) \
        || die "llama-index-core is not installed here (it ships nltk's punkt_tab): run scripts/setup.sh"
    [[ -f $cache/tokenizers/punkt_tab/english/ortho_context.tab ]] || die "no punkt_tab/english under $cache"
    cp -r "$cache/tokenizers/punkt_tab/english" "$GPU_DIR/nltk_data/tokenizers/punkt_tab/"
    if ! NLTK_DATA="$GPU_DIR/nltk_data" "$PY" -c '
import nltk
nltk.data.path[:] = [p for p in nltk.data.path if "nltk_cache" not in p]
from nltk.tokenize.punkt import PunktTokenizer
assert len(PunktTokenizer("english").tokenize("Dr. Smith left. He came back.")) == 2'; then
        die "nltk could not load punkt_tab/english from $GPU_DIR/nltk_data"
    fi

    echo "== data (from $data_root)"
    for f in "${DATA_FILES[@]}"; do
        mkdir -p "$GPU_DIR/data/$(dirname "$f")"
        cp "$data_root/$f" "$GPU_DIR/data/$f"
        printf '   %-48s %8s KiB\n' "$f" $(($(stat -c %s "$GPU_DIR/data/$f") / 1024))
    done

    local limit=$((LIMIT_MIB * 1048576 - MARGIN_MIB * 1048576)) sizes total
    sizes=$("$PY" "$HELPER" travel-size --extra "$GPU_DIR")
    total=$(json_field "$sizes" total)
    if [[ $synthetic != none ]]; then
        local budget=$((limit - total))
        if [[ -n $max_synthetic_mib ]]; then
            local cap
            cap=$(awk -v m="$max_synthetic_mib" 'BEGIN { printf "%d", m * 1048576 }')
            ((cap < budget)) && budget=$cap
        fi
        ((budget > 0)) || die "nothing left for synthetic triples: $(mib "$total") MiB would travel without them (limit $LIMIT_MIB MiB less $MARGIN_MIB MiB)"
        echo "== synthetic triples ($synthetic, whole documents, sorted by document_id, at most $(mib "$budget") MiB gzipped)"
        local report
        report=$("$PY" "$HELPER" synthetic --input "$synthetic" --output "$GPU_DIR/data/$SYNTHETIC_NAME" \
            --max-bytes "$budget" ${max_triples:+--max-triples "$max_triples"} --seed "$seed")
        "$PY" "$HELPER" describe synthetic "$report"
        ((${max_triples:-1} > 0)) && [[ $(json_field "$report" triples) == 0 ]] && die "no synthetic triple fits the budget"
        sizes=$("$PY" "$HELPER" travel-size --extra "$GPU_DIR")
        total=$(json_field "$sizes" total)
    fi

    echo "== what travels"
    "$PY" "$HELPER" describe travel "$sizes" --limit-mib "$LIMIT_MIB" --margin-mib "$MARGIN_MIB"
    ((total <= limit)) || die "$(mib "$total") MiB would travel: over $LIMIT_MIB MiB less the $MARGIN_MIB MiB margin (--max-synthetic-mib smaller, or fewer files in the tree)"
    local carry=$GPU_DIR
    case $GPU_DIR in /*) carry=$(realpath --relative-to="$REPO" "$GPU_DIR") ;; esac
    if [[ $carry == ../* ]]; then
        echo "warning: $GPU_DIR is outside the repository and cannot be carried (a test run, or set GPU_DIR=.gpu)"
    else
        echo "carry: [\"${carry#./}\"]"
    fi
    echo "then, on the device: bash scripts/gpu_train.sh train \$OUT --minutes 7"
}

# ---- train (on the GPU machine) ------------------------------------------------------------------------

train() {
    (($# >= 1)) || die "usage: gpu_train.sh train OUT [--minutes M] [--accelerator A] [gear train arguments ...]"
    local out=$1; shift
    local minutes=7 accelerator=auto extra=()
    while (($#)); do
        case $1 in
            --minutes) minutes=$2; shift 2 ;;
            --accelerator) accelerator=$2; shift 2 ;;
            *) extra+=("$1"); shift ;;
        esac
    done
    local start deadline
    start=$(date +%s)
    deadline=$(awk -v s="$start" -v m="$minutes" 'BEGIN { printf "%d", s + m * 60 }')
    mkdir -p "$out" "$RUN_DIR"
    out=$(cd "$out" && pwd)
    local log="$RUN_DIR/train.log"
    set +e
    train_inner "$out" "$start" "$deadline" "$accelerator" "${extra[@]}" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    # The log last, so it holds the export too; kept under 2 MiB (its head and its end), so that with the model's
    # ~60 MiB it stays under the 64 MiB that may come back.
    if (($(stat -c %s "$log") > 2 * 1048576)); then
        { head -c 524288 "$log"; printf '\n[... cut by gpu_train.sh ...]\n'; tail -c 1572864 "$log"; } >"$out/train.log"
    else
        cp "$log" "$out/train.log"
    fi
    if ! "$PY" "$HELPER" check-out "$out"; then
        echo "gpu_train: some of $out will not come back (above)" >&2
        ((rc)) || rc=1
    fi
    echo "== $out: $(ls "$out" | tr '\n' ' ')"
    return "$rc"
}

train_inner() {
    set -e
    local out=$1 start=$2 deadline=$3 accelerator=$4; shift 4
    local gpu_dir site
    [[ -d $GPU_DIR/wheels && -d $GPU_DIR/data ]] || die "no $GPU_DIR/wheels or $GPU_DIR/data: run 'bash scripts/gpu_train.sh prepare' first (and carry it)"
    gpu_dir=$(cd "$GPU_DIR" && pwd)
    mkdir -p "$RUN_DIR"
    RUN_DIR=$(cd "$RUN_DIR" && pwd)
    rm -rf "$RUN_DIR/best" "$RUN_DIR/export" "$RUN_DIR/logs" "$RUN_DIR/checkpoints" "$RUN_DIR/throughput.json"
    site=${GEAR_GPU_SITE:-$RUN_DIR/site}

    echo "== $("$PY" --version 2>&1) at $(command -v "$PY"); wheels for what is missing ($site)"
    local missing
    missing=$("$PY" - "$gpu_dir/wheels" <<'EOF'
import importlib.metadata as metadata, pathlib, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        print(f"   have {name} {metadata.version(name)}", file=sys.stderr)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
)
    if [[ -n $missing ]]; then
        # --target: the GPU image's python3 is itself a venv (/opt/torch/.venv), where --user is refused and a
        # venv made from it would not see torch; the target folder goes first on PYTHONPATH.
        # shellcheck disable=SC2086
        "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-cache-dir --upgrade \
            --target "$site" $missing || die "pip install of the wheels failed"
        echo "   installed: $(for w in $missing; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
    fi
    export PYTHONPATH="$REPO:$site:$REPO/scripts${PYTHONPATH:+:$PYTHONPATH}"
    export NLTK_DATA="$gpu_dir/nltk_data" GEAR_DATA_ROOT="$gpu_dir/data"
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
    export GEAR_DEADLINE=$deadline GEAR_EXPORT_RESERVE_S=${GEAR_EXPORT_RESERVE_S:-30}
    export GEAR_THROUGHPUT_JSON="$RUN_DIR/throughput.json"

    # Lightning's Timer counts from the first step, after data loading, and stops with a last validation: the
    # callback WallClockBudget stops early enough for that validation and the export; max_time is a bound.
    local left=$((deadline - $(date +%s) - GEAR_EXPORT_RESERVE_S)) max_time
    ((left > 0)) || die "no time left for training (--minutes $minutes)"
    max_time=$(printf '%02d:%02d:%02d:%02d' $((left / 86400)) $((left % 86400 / 3600)) $((left % 3600 / 60)) $((left % 60)))
    local command=("$PY" -m gear_core.cli train -c "$CONFIG" --trainer.accelerator "$accelerator"
        --trainer.max_time "$max_time" --trainer.default_root_dir "$RUN_DIR"
        --trainer.logger.init_args.save_dir "$RUN_DIR" --model.export_dir "$RUN_DIR/best"
        --trainer.enable_progress_bar false "--trainer.callbacks+=gpu_prepare.WallClockBudget" "$@")
    echo "== ${command[*]}"
    echo "   data root $GEAR_DATA_ROOT; deadline in $((deadline - $(date +%s))) s"
    touch "$RUN_DIR/.started"
    local rc=0
    "${command[@]}" || rc=$?
    ((rc == 0)) || echo "gpu_train: gear train exited with $rc" >&2

    local metrics
    metrics=$(ls -t "$RUN_DIR"/logs/*/metrics.csv 2>/dev/null | head -n 1 || true)
    if [[ -n $metrics ]]; then cp "$metrics" "$out/metrics.csv"; else echo "gpu_train: no metrics.csv under $RUN_DIR/logs" >&2; fi

    if [[ ! -f $RUN_DIR/best/config.json || $RUN_DIR/best/config.json -ot $RUN_DIR/.started ]]; then
        echo "gpu_train: FAILED: no best model in $RUN_DIR/best: no validation ran (or none finished), nothing exported" >&2
        return 3
    fi
    # int8, as the shipped model is stored: the fp16 copy of a model with a span reader (74 MiB) is over what OUT
    # may bring back (64 MiB).
    echo "== export (int8)"
    "$PY" -m gear_core.cli export "$RUN_DIR/best" "$RUN_DIR/export" --overwrite --dtype int8 --max-shard-size 15MB \
        || { echo "gpu_train: FAILED: the export" >&2; return 4; }
    "$PY" "$HELPER" pack "$RUN_DIR/export" "$out" --reference "$REFERENCE_MODEL" --throughput "$GEAR_THROUGHPUT_JSON" \
        || { echo "gpu_train: FAILED: packing the export" >&2; return 4; }
    local now
    now=$(date +%s)
    echo "== done in $((now - start)) s of $((deadline - start)) s ($((deadline - now)) s to spare)"
    if [[ -f $GEAR_THROUGHPUT_JSON ]]; then
        "$PY" "$HELPER" describe throughput "$(cat "$GEAR_THROUGHPUT_JSON")"
    fi
    return "$rc"
}

# ---- restore (here) ------------------------------------------------------------------------------------

restore() {
    (($# == 2)) || die "usage: gpu_train.sh restore FILES_AT DEST"
    "$PY" "$HELPER" restore "$1" "$2" --repo "$REPO"
}

case ${1:-} in
    prepare) shift; prepare "$@" ;;
    train) shift; train "$@" ;;
    restore) shift; restore "$@" ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
