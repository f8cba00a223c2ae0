"""A/B of the training-step changes in one run, interleaved: the stage-1 DeepPose train net's
`solver.step(1)` (one `caffe train` iteration, the batch in the net's Input blobs) eager (the
default) and through the opt-in training fast path (caffe/trainpath.py), each with SGD's update computed into the
history (the default: the diffs read as it, copied only when read) and with the update copied
into the diffs each iteration (as before).

    python bench/bench_train_ab.py [--batch 32] [--seconds 40] [--rounds 8]
"""
import argparse
import os
import tempfile

import numpy as np
import torch

import caffe
from caffe.solvers.sgd import SGDSolver
from bench_vs_caffe import write_nets
from stage1_shape import LABELS, SIZE
from timing import measure


class CopyingSGD(SGDSolver):
    """SGD as before the change: the update is copied into the diffs, then into the history."""

    def compute_update(self, grads, rates):
        history = self._slots[0]
        torch._foreach_mul_(grads, rates)
        torch._foreach_add_(grads, history, alpha=self.param.momentum)
        torch._foreach_copy_(history, grads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=40.0, help="time per variant (in interleaved slices)")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    caffe.init_log(2)
    os.environ["CAFFE_COMPILE_AFTER"] = "0"
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.normal(0, 0.5, (args.batch, LABELS)).astype(np.float32)
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_nets(folder, args.batch)
        for compiled in (False, True):
            for cls in (CopyingSGD, SGDSolver):
                solver = cls(paths["solver"])
                solver.net.blobs["data"].data[...] = x
                solver.net.blobs["label"].data[...] = y

                def step(solver=solver, compiled=compiled):
                    os.environ["CAFFE_COMPILE_TRAIN"] = "1" if compiled else "0"
                    solver.step(1)

                step()  # compiles (at once: CAFFE_COMPILE_AFTER=0)
                name = f"solver.step, {'compiled' if compiled else 'eager'}, " + \
                       ("update copied into the diffs" if cls is CopyingSGD else "update into the history")
                runs[name] = step
        results = measure(runs, args.batch, args.seconds, args.rounds)
    base = next(iter(results.values()))
    print(f"# DeepPose stage-1 train net, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'variant':64s} {'images/s':>9s} {'vs first':>9s}")
    for name, rate in results.items():
        print(f"{name:64s} {rate:9.2f} {rate / base:8.3f}x")


if __name__ == "__main__":
    main()
