"""What gloo costs on one machine: training images/s of a small net from an LMDB with 2 worker
processes under torchrun (CPU, gloo; batch B each, gradients all-reduced every iteration) beside
1 process with batch B and iter_size 1 or 2 (iter_size 2 is the same update as the 2 workers).

    python bench/bench_distributed.py [--batch 32] [--iters 40] [--rounds 2]

Rates come from rank 0's `Iteration N (X iter/s ...)` lines (first display skipped), the median
over `rounds` interleaved rounds; a row's images/s = iter/s x batch x iter_size x workers. Each
torchrun worker gets torch's default of OMP_NUM_THREADS=1, so 1 process is shown with 1 thread and
with as many threads as the workers together have.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from lib.small_net import make_lmdb, write_solver

def iter_rate(cmd, env):
    """Mean iter/s of rank 0's display lines, the first one skipped."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    rates = [float(r) for r in re.findall(r"Iteration \d+ \(([\d.e+-]+) iter/s", done.stderr)][1:]
    return float(np.mean(rates))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    caffe = shutil.which("caffe") or sys.exit("the caffe console script is not installed (pip install -e .)")
    workers = 2
    with tempfile.TemporaryDirectory() as folder:
        make_lmdb(os.path.join(folder, "lmdb"), 512)
        one, two = (write_solver(folder, args.batch, args.iters, k) for k in (1, 2))
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(workers)]
        rows = [  # label, command, threads per process, images per iteration
            ("1 process, iter_size 1", [caffe, "train", "-solver", one], 1, args.batch),
            ("1 process, iter_size 1", [caffe, "train", "-solver", one], workers, args.batch),
            ("1 process, iter_size 2", [caffe, "train", "-solver", two], workers, 2 * args.batch),
            (f"{workers} processes (torchrun, gloo)", torchrun + [caffe, "train", "-solver", one], 1,
             workers * args.batch),
        ]
        rates = {i: [] for i in range(len(rows))}
        for _ in range(args.rounds):
            for i, (_, cmd, threads, _) in enumerate(rows):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                rates[i].append(iter_rate(cmd, env))
    print(f"\nSmall net (2 conv + 2 fc, 3x32x32 inputs), batch {args.batch} per process, CPU, "
          f"{os.cpu_count()} cores, median of {args.rounds} rounds\n")
    print("| configuration | threads per process | images per update | images/s | ratio |")
    print("|---|---|---|---|---|")
    base = None
    for i, (label, _, threads, images) in enumerate(rows):
        rate = float(np.median(rates[i])) * images
        base = base or rate
        print(f"| {label} | {threads} | {images} | {rate:.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
