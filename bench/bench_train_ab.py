"""A/B of the training-step accelerations in one run, interleaved: the stage-1 DeepPose train net's
`solver.step(1)` (one `caffe train` iteration, the batch in the net's Input blobs) with every
acceleration on (the default), with each one off in turn, and with all of them off, each turned
off by its own knob (caffe.accel.switched):

- train_chains: BatchNorm + Scale + ReLU in place as one C kernel pass each way
  (caffe/accel/train_chains.py);
- native_lrn: the LRN layers' C kernels (caffe.accel.native lrn_forward / lrn_backward);
- native_pool: MAX pooling's C kernels with an int32 mask (caffe.accel.native max_pool);
- native_sgd: SGD's update as one C kernel pass per param (caffe.accel.native sgd_update);
- reused_diffs: InnerProduct's weight diff computed into the memory of the previous diff, and the
  update copied into the param diffs only when one is read (caffe/blob.py).

    python bench/bench_train_ab.py [--batch 32] [--seconds 20] [--rounds 5]
"""
import argparse
import tempfile

import numpy as np
import torch

import caffe
from caffe import accel
from caffe.accel import native
from lib.stage1_nets import write_nets
from lib.stage1_shape import LABELS, SIZE
from lib.timing import measure

CHANGES = ("train_chains", "native_lrn", "native_pool", "native_sgd", "reused_diffs")  # caffe.accel.REGISTRY's names


def variant(solver_path, off, x, y):
    """A callable doing `solver.step(1)` of a solver of its own, with the accelerations named in
    `off` turned off and the other CHANGES on (the LRN layers ask when the net is built, the others
    at each step), on the batch (x, y)."""
    knobs = {name: name not in off for name in CHANGES}
    with accel.switched(**knobs):
        solver = caffe.get_solver(solver_path)
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["label"].data[...] = y

    def step():
        with accel.switched(**knobs):
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
    offs = {"all on (the default)": ()}
    offs.update({f"without {name}": (name,) for name in CHANGES})
    offs["all off"] = CHANGES
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_nets(folder, args.batch)
        for name, off in offs.items():
            runs[name] = variant(paths["solver"], off, x, y)
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
