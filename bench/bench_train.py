"""Training throughput of the DeepPose stage-1 net at batch 32: `caffe train` (our engine, reading
an LMDB through the Data layer) beside a hand-written PyTorch loop doing the same work (same net,
SGD with momentum, weight decay and per-param rates, batches already in memory), in one run.

    python bench/bench_train.py [--iters 12] [--batch 32] [--records 256]

Prints images/s and the ratio to the hand-written loop, which uses the same LRN operator as our
layer (a second row uses torch's F.local_response_norm); the Data layer's own rate is measured
by bench/bench_data.py.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import caffe
from caffe.formats.db.writers import LMDBWriter
from caffe.formats.protoio import array_to_blobproto, read_prototxt, write_binary_proto, write_prototxt
from caffe.proto import caffe_pb2
from deeppose_torch import DeepPoseTorch
from stage1_shape import LABELS, SIZE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "models", "deeppose", "deeppose_train_test.prototxt")


def make_lmdb(folder, records):
    """Random stage-1 BGR records and labels, as convert_imageset_multilabel writes them, and their mean."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (records, 3, SIZE, SIZE), dtype=np.uint8)
    labels = rng.normal(0, 50, (records, LABELS)).astype(np.float32)
    with LMDBWriter(os.path.join(folder, "train_data_lmdb")) as db:
        for i in range(records):
            datum = caffe_pb2.Datum(channels=3, height=SIZE, width=SIZE, data=images[i].tobytes())
            datum.float_data.extend(labels[i])
            db.put(f"{i:08d}_img{i}.png", datum.SerializeToString())
    mean = images.mean(axis=0, dtype=np.float64)[None]
    write_binary_proto(os.path.join(folder, "train_mean.binaryproto"), array_to_blobproto(mean, legacy=True))
    return images, labels, mean.astype(np.float32)


def write_solver(folder, batch, iters):
    """The committed train net with its paths in `folder`, TRAIN phase only, and a solver timing it."""
    net = read_prototxt(TRAIN_NET, caffe_pb2.NetParameter)
    keep = [layer for layer in net.layer if not any(r.phase == caffe_pb2.TEST for r in layer.include)]
    del net.layer[:]
    net.layer.extend(keep)
    data = net.layer[0]
    data.data_param.source = os.path.join(folder, "train_data_lmdb")
    data.data_param.batch_size = batch
    data.transform_param.mean_file = os.path.join(folder, "train_mean.binaryproto")
    write_prototxt(os.path.join(folder, "train.prototxt"), net)
    solver = read_prototxt(os.path.join(ROOT, "models", "deeppose", "deeppose_solver.prototxt"),
                           caffe_pb2.SolverParameter)
    solver.net = os.path.join(folder, "train.prototxt")
    solver.max_iter, solver.display, solver.solver_mode = iters, 2, caffe_pb2.SolverParameter.CPU
    solver.snapshot, solver.snapshot_after_train = 0, False
    solver.snapshot_prefix = os.path.join(folder, "snapshot")  # `caffe train` locks it even without snapshots
    solver.ClearField("test_iter")
    solver.ClearField("test_interval")
    path = os.path.join(folder, "solver.prototxt")
    write_prototxt(path, solver)
    return path


def caffe_train_rate(solver, batch):
    """Images/s from the `Iteration N (X iter/s ...)` lines of `caffe train`, first display skipped."""
    log = subprocess.run(["caffe", "train", f"-solver={solver}"], capture_output=True, text=True)
    if log.returncode:
        sys.exit(log.stderr[-3000:])
    rates = [float(m) for m in re.findall(r"Iteration \d+ \(([\d.e+-]+) iter/s", log.stderr)][2:]
    return float(np.mean(rates)) * batch


def hand_written_step(net, same_lrn=True):
    """`step(x, y)`: one iteration of a plain PyTorch training loop of `net`'s stage-1
    architecture (its weights copied) and update rule on the batch (x, y), with our LRN operator
    if `same_lrn`, else torch's F.local_response_norm."""
    lrn = net.layers[net._layer_names.index("norm1")].module
    model = DeepPoseTorch(net, lrn=(lambda t: lrn(t)[0]) if same_lrn else None).train()
    groups = [{"params": [p for n, p in model.w.items() if n.endswith("_0")], "lr": 1e-4, "weight_decay": 5e-3},
              {"params": [p for n, p in model.w.items() if n.endswith("_1")], "lr": 2e-4, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=1e-4, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).sum() / (2 * y.numel())
        loss.backward()
        opt.step()

    return step


def torch_loop_rate(images, labels, mean, batch, iters, same_lrn):
    """Images/s of a plain PyTorch training loop of the same net and update rule (`hand_written_step`)."""
    net = caffe.Net(TRAIN_NET.replace("_train_test", ""), caffe.TEST)  # weights' shapes, xavier-filled
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
