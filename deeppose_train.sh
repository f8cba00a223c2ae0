#!/usr/bin/env bash
# The whole DeepPose pipeline, run from the repository root:
#   ./deeppose_train.sh [--from STEP] [--dataset NAME|path/to/description.py]
# The dataset is the one globalvar.py names (K2HPD) unless --dataset overrides it; every step
# gets it.
# Steps: data stage1 lmdb1 train1 accuracy1 output1 stage2 lmdb2 train2 accuracy2.
# A step whose outputs exist is skipped (outputs are written atomically; an accuracy report counts
# only when complete); --from STEP redoes STEP and every later step. A training
# step stopped with Ctrl-C (caffe train snapshots then) resumes from that snapshot on the next run.
#
# Schedule (DEEPPOSE_SCHEDULE=auto|full|cpu, default auto): with a GPU the committed solvers run
# as they are (the seed's schedule: 120000 iterations, snapshot every 20000). Without a GPU the
# default is the short CPU schedule (~20 minutes on 2 cores): a run-local solver is derived from
# the committed one (models/<net>/run/, git-ignored) with these overrides (environment variables):
#   DEEPPOSE_ITER1=700  DEEPPOSE_ITER2=300    max_iter (snapshot: at the end) of stage 1 / stage 2
#   DEEPPOSE_BATCH1=32  DEEPPOSE_BATCH2=32    TRAIN batch sizes (committed: 32 / 64); smaller
#                                             batches give more updates for the same CPU time
#   DEEPPOSE_LR1, DEEPPOSE_LR2                base_lr (default: the committed 1e-4, which learns
#                                             on CPU too; 1e-3 learned slower, 1e-2 diverged)
#   DEEPPOSE_TEST_ITER=20                     test_iter of the test at the end of training
# GPUs: with the committed solvers, training uses every GPU the machine has (caffe train -gpu all:
# one worker per GPU); DEEPPOSE_GPUS=0,1 picks some (DEEPPOSE_GPUS=0: one). As in Caffe, each
# worker runs the solver's batch (effective batch = batch x GPUs) and base_lr, max_iter and the
# snapshots stay as written: scale base_lr yourself if you want to. (Not yet run on a GPU.)
# Data: when the dataset's directory (data/K2HPD) holds no annotations, a synthetic set is
# generated first (for a dataset with text annotations; others must be put in place, see README):
#   DEEPPOSE_SYNTH_TRAIN=2000 DEEPPOSE_SYNTH_TEST=150 DEEPPOSE_SYNTH_SEED=0
# Stage 2: DEEPPOSE_DISPLACEMENTS=simulated|predictions (default simulated, the paper's),
#   DEEPPOSE_PER_IMAGE=1 (joints cropped per training image).
set -euo pipefail
cd "$(dirname "$0")"

STEPS=(data stage1 lmdb1 train1 accuracy1 output1 stage2 lmdb2 train2 accuracy2)
FROM=""
DS=()  # --dataset, passed to every step
while [ $# -gt 0 ]; do
    case "$1" in
        --from) FROM="${2:?--from needs a step: ${STEPS[*]}}"; shift 2 ;;
        --from=*) FROM="${1#--from=}"; shift ;;
        --dataset) DS=(--dataset "${2:?--dataset needs a name or a description file}"); shift 2 ;;
        --dataset=*) DS=(--dataset "${1#--dataset=}"); shift ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (usage: $0 [--from STEP] [--dataset NAME|FILE.py])" >&2; exit 2 ;;
    esac
done
if [ -n "$FROM" ] && [[ " ${STEPS[*]} " != *" $FROM "* ]]; then
    echo "unknown step '$FROM'; steps: ${STEPS[*]}" >&2; exit 2
fi

DATASET_VARS=$(python -m deeppose.datasets "${DS[@]}")  # DATASET_NAME, DATA, ANNOTATIONS, TEXT_ANNOTATIONS
eval "$DATASET_VARS"
M1=models/deeppose
M2=models/deeppose_refine
say() { echo "[deeppose_train] $*"; }

# the models/ outputs (databases, snapshots, reports) belong to one dataset: another one remakes them
STAMP=models/dataset.txt
if [ -e $STAMP ] && [ "$(cat $STAMP)" != "$DATASET_NAME" ]; then
    case "$FROM" in
        data|stage1|lmdb1) ;;
        *) say "models/ holds the outputs of a run on $(cat $STAMP), not $DATASET_NAME: run with --from stage1 to remake them (or move them away first)" >&2
           exit 1 ;;
    esac
fi

# forced: steps from --from on run even when their outputs exist
forced=0
is_done() {  # is_done OUTPUT: it exists (every output is written atomically), a report is complete
    [ -e "$1" ] || return 1
    case "$1" in
        */accuracy.json)
            python -m deeppose.pipeline check-report "$1" && return 0
            say "$1 is not a complete report (an interrupted or failed run): its step runs again"
            return 1 ;;
    esac
}
should_run() {  # should_run STEP OUTPUT...
    local step=$1; shift
    [ "$step" = "$FROM" ] && forced=1
    if [ $forced = 1 ]; then return 0; fi
    for f in "$@"; do is_done "$f" || return 0; done
    say "step $step: done already ($*), skipped"
    return 1
}

# -- schedule -----------------------------------------------------------------------------------
SCHEDULE=${DEEPPOSE_SCHEDULE:-auto}
if [ "$SCHEDULE" = auto ]; then
    if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        SCHEDULE=full
    else
        SCHEDULE=cpu
    fi
fi
solver_for() {  # solver_for DIR NAME ITER BATCH [LR] -> the solver file to train with
    local dir=$1 name=$2 iter=$3 batch=$4 lr=${5:+base_lr=$5}
    local committed=$dir/${name}_solver.prototxt
    case "$SCHEDULE" in
        full)
            if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
                echo "$committed"
            else
                python -m deeppose.pipeline derive-solver "$committed" "$dir/run/${name}_solver.prototxt" \
                    solver_mode=CPU
            fi ;;
        cpu)
            python -m deeppose.pipeline derive-solver "$committed" "$dir/run/${name}_solver.prototxt" \
                solver_mode=CPU max_iter="$iter" snapshot="$iter" $lr display=10 \
                test_interval="$iter" test_iter="${DEEPPOSE_TEST_ITER:-20}" --train-batch "$batch" ;;
        *) echo "DEEPPOSE_SCHEDULE must be auto, full or cpu, not '$SCHEDULE'" >&2; exit 2 ;;
    esac
}
SOLVER1=$(solver_for $M1 deeppose "${DEEPPOSE_ITER1:-700}" "${DEEPPOSE_BATCH1:-32}" "${DEEPPOSE_LR1:-}")
SOLVER2=$(solver_for $M2 deeppose_refine "${DEEPPOSE_ITER2:-300}" "${DEEPPOSE_BATCH2:-32}" "${DEEPPOSE_LR2:-}")
if [ "$SCHEDULE" = cpu ]; then
    say "no GPU: running on CPU with the short schedule: $SOLVER1 and $SOLVER2 (derived from the committed solvers)"
elif [ "$SOLVER1" != $M1/deeppose_solver.prototxt ]; then
    say "no GPU: the full schedule runs on CPU (solver_mode CPU in $SOLVER1, $SOLVER2); this takes days"
fi
GPUS=()  # caffe train's -gpu flag: only with the committed (GPU) solvers
if [ "$SOLVER1" = $M1/deeppose_solver.prototxt ]; then GPUS=(-gpu "${DEEPPOSE_GPUS:-all}"); fi
MODEL1=$(python -m deeppose.pipeline final-snapshot "$SOLVER1")
MODEL2=$(python -m deeppose.pipeline final-snapshot "$SOLVER2")
START=$(date +%s)

# -- data ---------------------------------------------------------------------------------------
has_annotations() { for f in "${ANNOTATIONS[@]}"; do [ -e "$f" ] || return 1; done; }
if should_run data "${ANNOTATIONS[@]}"; then
    if has_annotations; then
        say "step data: $DATA holds a dataset; kept"
    elif [ "$TEXT_ANNOTATIONS" != 1 ]; then
        say "step data: $DATA holds no dataset (no ${ANNOTATIONS[*]}); put it in place (see README.md)"
        exit 1
    else
        say "step data: $DATA holds no dataset (no ${ANNOTATIONS[*]}): generating the synthetic set"
        python tools/make_synthetic_k2hpd.py "${DS[@]}" --out $DATA --train "${DEEPPOSE_SYNTH_TRAIN:-2000}" \
            --test "${DEEPPOSE_SYNTH_TEST:-150}" --seed "${DEEPPOSE_SYNTH_SEED:-0}"
    fi
fi

# -- stage 1 ------------------------------------------------------------------------------------
if should_run stage1 $DATA/stage1/train.txt $DATA/stage1/val.txt $DATA/stage1/test.txt; then
    python data/K2HPD/get_stage.py --stage 1 "${DS[@]}"
fi

make_lmdbs() {  # make_lmdbs MODEL_DIR DEPLOY LIST_DIR TESTED: train and TESTED (stage 1: test, refiner: val) lists
    local dir=$1 size tested=$4
    size=$(python -m deeppose.pipeline input-size "$2")
    rm -rf "$dir/train_data_lmdb" "$dir/${tested}_data_lmdb" "$dir/train_mean.binaryproto"
    convert_imageset_multilabel -resize_height="${size% *}" -resize_width="${size#* }" "" "$3/train.txt" "$dir/train_data_lmdb"
    convert_imageset_multilabel -resize_height="${size% *}" -resize_width="${size#* }" "" "$3/$tested.txt" "$dir/${tested}_data_lmdb"
    compute_image_mean "$dir/train_data_lmdb" "$dir/train_mean.binaryproto"
}
if should_run lmdb1 $M1/train_data_lmdb $M1/test_data_lmdb $M1/train_mean.binaryproto; then
    make_lmdbs $M1 $M1/deeppose.prototxt $DATA/stage1 test
    echo "$DATASET_NAME" > $STAMP
fi

train() {  # train SOLVER LOG: an interrupted run (Ctrl-C snapshots) resumes unless the step is redone
    mkdir -p "$(dirname "$(python -m deeppose.pipeline final-snapshot "$1")")"
    local state=""
    [ $forced = 1 ] || state=$(python -m deeppose.pipeline latest-state "$1")
    if [ -n "$state" ]; then
        say "resuming from $state"
        caffe train -solver "$1" -snapshot "$state" ${GPUS[@]+"${GPUS[@]}"} 2>&1 | tee -a "$2"
    else
        caffe train -solver "$1" ${GPUS[@]+"${GPUS[@]}"} 2>&1 | tee "$2"
    fi
}
if should_run train1 "$MODEL1"; then
    train "$SOLVER1" $M1/deeppose.log
fi
if should_run accuracy1 $M1/accuracy.json; then
    python $M1/pyaccuracy.py "$MODEL1" --out $M1/accuracy.json "${DS[@]}"
fi
OUTPUT_SPLITS=(--split val)
if [ "${DEEPPOSE_DISPLACEMENTS:-simulated}" = predictions ]; then OUTPUT_SPLITS+=(--split train); fi
if should_run output1 $DATA/stage1/output_val.txt; then
    python $M1/pyoutput.py "$MODEL1" "${OUTPUT_SPLITS[@]}" "${DS[@]}"
fi

# -- stage 2 ------------------------------------------------------------------------------------
if should_run stage2 $DATA/stage2/train.txt $DATA/stage2/val.txt; then
    rm -rf $DATA/stage2
    python data/K2HPD/get_stage.py --stage 2 "${DS[@]}" --displacements "${DEEPPOSE_DISPLACEMENTS:-simulated}" \
        --per-image "${DEEPPOSE_PER_IMAGE:-1}"
fi
if should_run lmdb2 $M2/train_data_lmdb $M2/val_data_lmdb $M2/train_mean.binaryproto; then
    make_lmdbs $M2 $M2/deeppose_refine.prototxt $DATA/stage2 val
fi
if should_run train2 "$MODEL2"; then
    train "$SOLVER2" $M2/deeppose_refine.log
fi
if should_run accuracy2 $M2/accuracy.json; then
    python $M2/pyaccuracy.py "$MODEL1" "$MODEL2" --out $M2/accuracy.json "${DS[@]}"
fi
say "finished in $(( $(date +%s) - START )) s; models: $MODEL1 $MODEL2; PDJ curves: $M2/pdj_curve.png"
