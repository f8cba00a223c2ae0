"""A/B of the training-step changes in one run, interleaved: the stage-1 DeepPose train net's
`solver.step(1)` (one `caffe train` iteration, the batch in the net's Input blobs) with every
change on (the default), with each one off in turn, and with all of them off:

- BatchNorm + Scale + ReLU in place as one C kernel pass each way (caffe/accel/train_chains.py);
- the LRN layers' C kernels (caffe.accel.native lrn_forward / lrn_backward);
- SGD's update as one C kernel pass per param (caffe.accel.native sgd_update);
- InnerProduct's weight diff computed into the memory of the previous diff (blob.take_spare_diff).

    python bench/bench_train_ab.py [--batch 32] [--seconds 20] [--rounds 5]
"""
import argparse
import contextlib
import tempfile
import types

import numpy as np
import torch

import caffe
from caffe.accel import native, train_chains
from caffe.layer_modules import inner_product
from caffe.solvers.solver import Solver
from lib.stage1_nets import write_nets
from lib.stage1_shape import LABELS, SIZE
from lib.timing import measure

CHANGES = ("BatchNorm+Scale+ReLU kernel", "LRN kernels", "one-pass SGD kernel", "InnerProduct diff memory reused")


def _layer_by_layer(module, env, start, end, after):
    module.run(env, start, end, after=after)
    return []


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def variant(solver, off):
    """A callable doing `solver.step(1)` with the changes named in `off` turned off."""
    if "LRN kernels" in off:
        for layer in solver.net.module.layers:
            if layer.type_name == "LRN":
                layer.native = False
    if "one-pass SGD kernel" in off:
        solver._update_params = types.MethodType(Solver._update_params, solver)

    def step():
        with contextlib.ExitStack() as stack:
            if "BatchNorm+Scale+ReLU kernel" in off:
                stack.enter_context(_patched(train_chains, "run", _layer_by_layer))
            if "InnerProduct diff memory reused" in off:
                stack.enter_context(_patched(inner_product, "take_spare_diff", lambda param: None))
            solver.step(1)
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0, help="time per variant (in interleaved slices)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    caffe.init_log(2)
    if native.library() is None:
        raise SystemExit("the C kernels are not built here (no C compiler?): nothing to compare")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.normal(0, 0.5, (args.batch, LABELS)).astype(np.float32)
    offs = {"all changes on (the default)": ()}
    offs.update({f"without the {change}": (change,) for change in CHANGES})
    offs["all changes off"] = CHANGES
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_nets(folder, args.batch)
        for name, off in offs.items():
            solver = caffe.get_solver(paths["solver"])
            solver.net.blobs["data"].data[...] = x
            solver.net.blobs["label"].data[...] = y
            runs[name] = variant(solver, off)
            runs[name]()
        results = measure(runs, args.batch, args.seconds, args.rounds)
    base = next(iter(results.values()))
    print(f"# DeepPose stage-1 train net, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"median of {args.rounds} interleaved slices")
    print(f"{'variant':48s} {'images/s':>9s} {'vs default':>11s}")
    for name, rate in results.items():
        print(f"{name:48s} {rate:9.2f} {rate / base:10.3f}x")


if __name__ == "__main__":
    main()
