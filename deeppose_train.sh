#!/usr/bin/env bash
# The whole DeepPose pipeline, run from the repository root (the seed's command):
#   ./deeppose_train.sh [--from STEP] [--dataset NAME|path/to/description.py] [--seed N] [schedule options]
# It is `python -m deeppose train` (deeppose/driver.py; --help lists every option). The dataset is
# the one globalvar.py names (K2HPD) unless --dataset overrides it.
# Steps: data stage1 lmdb1 train1 accuracy1 output1 stage2 lmdb2 train2 accuracy2.
# A step whose outputs exist is skipped (outputs are written atomically; an accuracy report counts
# only when complete); --from STEP redoes STEP and every later step. A training step stopped with
# Ctrl-C (or SIGTERM) snapshots; the next run resumes from that snapshot.
#
# Seed: one seed (--seed N, default SEED = 0 in globalvar.py) gives the synthetic set, the stage-1
# split and list order, the refiner's crops and the solvers' random_seed: a run from scratch
# repeats its numbers (models and accuracy reports byte for byte) on the same machine.
#
# Schedule (--schedule / DEEPPOSE_SCHEDULE=auto|full|cpu, default auto): with a GPU the committed
# solvers' schedule runs (the seed's: 120000 iterations, snapshot every 20000). Without a GPU the
# default is the short CPU schedule (Adam, base_lr 1e-4: docs/cpu_schedule.md). Either way the run trains with a
# run-local solver derived from the committed one (models/<net>/run/, git-ignored: random_seed,
# and for the CPU schedule these overrides; options, or the environment variables as defaults):
#   --iter1/DEEPPOSE_ITER1=600  --iter2/DEEPPOSE_ITER2=300    max_iter (snapshot: at the end)
#   --batch1/DEEPPOSE_BATCH1=32 --batch2/DEEPPOSE_BATCH2=32   TRAIN batch sizes (committed: 32 / 64)
#   --lr1/DEEPPOSE_LR1, --lr2/DEEPPOSE_LR2                    base_lr (default: the CPU schedule's 1e-4)
#   --cpu-solver/DEEPPOSE_CPU_SOLVER=tuned|seed               seed: the committed solver's rules, short lengths
#   --targets/DEEPPOSE_TARGETS=pixels|box                     target units (box: the paper's normalisation)
#   --test-iter/DEEPPOSE_TEST_ITER=20                         test_iter of the test at the end
# GPUs: the full schedule trains on every GPU the machine has; --gpus/DEEPPOSE_GPUS=0,1 picks some
# (one worker per GPU, as caffe train -gpu; effective batch = batch x GPUs, base_lr as written).
# Data: when the dataset's directory (data/K2HPD) holds no annotations, a synthetic set is
# generated first (for a dataset with text annotations; others must be put in place, see README):
#   --synth-train/DEEPPOSE_SYNTH_TRAIN=2000 --synth-test/DEEPPOSE_SYNTH_TEST=150
#   --synth-seed/DEEPPOSE_SYNTH_SEED (default: the run's seed)
# Stage 2: --displacements/DEEPPOSE_DISPLACEMENTS=simulated|predictions (default simulated, the
#   paper's), --per-image/DEEPPOSE_PER_IMAGE=1 (joints cropped per training image).
set -euo pipefail
cd "$(dirname "$0")"
exec python -m deeppose train "$@"
