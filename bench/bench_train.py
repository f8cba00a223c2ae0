"""Training throughput of the DeepPose stage-1 net at batch 32: `caffe train` (our engine, reading
an LMDB through the Data layer) beside a hand-written PyTorch loop doing the same work (same net,
SGD with momentum, weight decay and per-param rates, batches already in memory), in one run.

    python bench/bench_train.py [--iters 12] [--batch 32] [--records 256]

Prints images/s and the ratio to the hand-written loop, which uses the same LRN operator as our
layer (a second row uses torch's F.local_response_norm); the Data layer's own rate is measured
by bench/bench_data.py.
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import caffe
from lib.deeppose_torch import hand_written_step
from lib.stage1_nets import make_lmdb, write_solver
from lib.stage1_shape import DEPLOY


def caffe_train_rate(solver, batch):
    """Images/s from the `Iteration N (X iter/s ...)` lines of `caffe train`, first display skipped."""
    log = subprocess.run(["caffe", "train", f"-solver={solver}"], capture_output=True, text=True)
    if log.returncode:
        sys.exit(log.stderr[-3000:])
    rates = [float(m) for m in re.findall(r"Iteration \d+ \(([\d.e+-]+) iter/s", log.stderr)][2:]
    return float(np.mean(rates)) * batch


def torch_loop_rate(images, labels, mean, batch, iters, same_lrn):
    """Images/s of a plain PyTorch training loop of the same net and update rule (`hand_written_step`)."""
    net = caffe.Net(DEPLOY, caffe.TEST)  # weights' shapes, xavier-filled
    x_all = torch.from_numpy((images.astype(np.float32) - mean) * 0.00390625)
    y_all = torch.from_numpy(labels)
    step, step_times = hand_written_step(net, same_lrn), []
    for it in range(iters):
        start = time.perf_counter()
        first = (it * batch) % (len(images) - batch + 1)
        step(x_all[first:first + batch], y_all[first:first + batch])
        step_times.append(time.perf_counter() - start)
    return batch / float(np.mean(step_times[2:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--records", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        images, labels, mean = make_lmdb(folder, args.records)
        ours = caffe_train_rate(write_solver(folder, args.batch, args.iters), args.batch)
        theirs = torch_loop_rate(images, labels, mean, args.batch, args.iters, same_lrn=True)
        torch_lrn = torch_loop_rate(images, labels, mean, args.batch, args.iters, same_lrn=False)
    flops = 3 * 1.42e9  # forward + backward of the stage-1 net, per image (bench_inference computes 1.42)
    print(f"# DeepPose stage-1 training, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'engine':40s} {'images/s':>9s} {'~GFLOP/s':>9s} {'vs hand-written':>16s}")
    for name, r in (("PyTorch hand-written loop", theirs), ("PyTorch hand-written, torch's LRN", torch_lrn),
                    ("caffe train (Data layer, LMDB)", ours)):
        print(f"{name:40s} {r:9.2f} {r * flops / 1e9:9.1f} {r / theirs:15.3f}x")


if __name__ == "__main__":
    main()
