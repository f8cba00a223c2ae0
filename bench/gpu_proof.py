"""The GPU path, proven on a machine with CUDA in a few minutes; prints one table:

- the test suite on CUDA (CAFFE_TEST_DEVICE=gpu: the tests' nets and solvers compute on GPU 0,
  compared with the same expected values as on the CPU: the golden set's layers, solvers and
  files within 1e-4, the Data layer, snapshots and resume);
- the first 20 losses of the stage-1 net trained on the GPU against the same 20 on the CPU (same
  weights and records; the Dropout layers are taken out, their random masks differ by device);
- training images/s of the stage-1 net (batch 32 and the largest batch that fits, fp32 and TF32)
  and the projected time of the seed's stage-1 schedule (120 000 iterations of batch 32);
- the Data layer's own rate beside it (is the Data layer what limits the GPU?);
- with 2 or more GPUs: `caffe train -gpu 0,1` against one GPU with iter_size 2 (weights, images/s).

    python bench/gpu_proof.py [--records 256]

NOT YET RUN ON A GPU: it was written and checked on a CPU-only machine, where it says there is
no GPU and exits with status 0. No GPU number in this project comes from it yet.
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
from caffe.formats.caffemodel import read_weights
from caffe.formats.protoio import read_prototxt, write_prototxt
from caffe.proto import caffe_pb2
from lib.small_net import make_lmdb as make_small_lmdb
from lib.small_net import write_solver as write_small_solver
from lib.stage1_nets import make_lmdb, write_solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = ["tests/engine/test_golden.py", "tests/engine/test_layers_basic.py", "tests/engine/test_layers_vision.py",
         "tests/engine/test_net.py", "tests/engine/test_solvers.py", "tests/engine/test_data.py",
         "tests/engine/test_io.py"]
SEED_ITERS, SEED_BATCH = 120000, 32


def suite_on_cuda():
    env = dict(os.environ, CAFFE_TEST_DEVICE="gpu")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    return [("test suite on CUDA (" + ", ".join(os.path.basename(s) for s in SUITE) + ")", summary)] + \
        [("  " + line, "") for line in failed[:10]]


def solver_param(path, batch, iters, no_dropout=False):
    param = read_prototxt(path, caffe_pb2.SolverParameter)
    if no_dropout:
        net = read_prototxt(param.net, caffe_pb2.NetParameter)
        keep = [layer for layer in net.layer if layer.type != "Dropout"]
        del net.layer[:]
        net.layer.extend(keep)
        param.net = path.replace(".prototxt", "_nodropout.prototxt")
        write_prototxt(param.net, net)
    param.max_iter, param.display, param.random_seed = iters, 0, 1
    return param


def train_losses(param, gpu, steps):
    (caffe.set_mode_gpu if gpu else caffe.set_mode_cpu)()
    solver = caffe.get_solver(param)
    losses = []
    for _ in range(steps):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    return losses


def rate(param, tf32, iters=6, warmup=2):
    """Training images/s on GPU 0 (None if the batch does not fit)."""
    caffe.set_mode_gpu()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    batch = read_prototxt(param.net, caffe_pb2.NetParameter).layer[0].data_param.batch_size
    try:
        solver = caffe.get_solver(param)
        solver.step(warmup)
        torch.cuda.synchronize()
        start = time.perf_counter()
        solver.step(iters)
        torch.cuda.synchronize()
        return iters * batch / (time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        solver = None
        torch.cuda.empty_cache()


def data_rate(net_path, batches=20):
    caffe.set_mode_gpu()
    net = read_prototxt(net_path, caffe_pb2.NetParameter)
    data = net.layer[0]
    del net.layer[:]
    net.layer.extend([data])
    path = net_path.replace(".prototxt", "_data.prototxt")
    write_prototxt(path, net)
    reader = caffe.Net(path, caffe.TRAIN)
    reader.forward()
    start = time.perf_counter()
    for _ in range(batches):
        reader.forward()
    torch.cuda.synchronize()
    return batches * data.data_param.batch_size / (time.perf_counter() - start)


def with_batch(folder, batch, iters):
    return solver_param(write_solver(folder, batch, iters), batch, iters)


def multi_gpu(folder):
    """`caffe train -gpu 0,1` (batch B each) against `-gpu 0` with iter_size 2: weights and images/s."""
    make_small_lmdb(os.path.join(folder, "lmdb"), 512)
    runs = {}
    for name, iter_size, gpus in (("two", 1, "0,1"), ("one", 2, "0")):
        path = write_small_solver(folder, 32, 40, iter_size)
        text = open(path).read().replace("snapshot_after_train: false", f'snapshot_prefix: "{folder}/{name}"')
        open(path, "w").write(text)
        done = subprocess.run(["caffe", "train", "-solver", path, "-gpu", gpus], capture_output=True, text=True)
        if done.returncode:
            return [(f"caffe train -gpu {gpus}", "FAILED: " + done.stderr.strip().splitlines()[-1])]
        rates = [float(r) for r in re.findall(r"Iteration \d+ \(([\d.e+-]+) iter/s", done.stderr)][1:]
        runs[name] = (float(np.mean(rates)) * 64, dict(read_weights(f"{folder}/{name}_iter_40.caffemodel")))
    worst = max(float(np.abs(g[2] - w[2]).max() / np.abs(w[2]).max())
                for layer, blobs in runs["one"][1].items() for g, w in zip(runs["two"][1][layer], blobs))
    return [("caffe train -gpu 0,1 vs -gpu 0 with iter_size 2: weights after 40 iterations, worst relative "
             "difference", f"{worst:.2e} ({'ok' if worst <= 1e-4 else 'ABOVE 1e-4'})"),
            ("  images/s: 2 GPUs / 1 GPU (small net, batch 32 per GPU)",
             f"{runs['two'][0]:.0f} / {runs['one'][0]:.0f}")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=256)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_proof: PyTorch sees no CUDA device on this machine: nothing to prove here. Run it on a "
              "machine with an NVIDIA GPU (it has not run on one yet).")
        return 0
    start = time.perf_counter()
    rows = [("device", f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, torch {torch.__version__}")]
    rows += suite_on_cuda()
    with tempfile.TemporaryDirectory() as folder:
        make_lmdb(folder, args.records)
        path = write_solver(folder, SEED_BATCH, 20)
        cpu = train_losses(solver_param(path, SEED_BATCH, 20, no_dropout=True), False, 20)
        gpu = train_losses(solver_param(path, SEED_BATCH, 20, no_dropout=True), True, 20)
        worst = max(abs(g - c) / max(abs(c), 1e-12) for g, c in zip(gpu, cpu))
        rows.append(("stage-1 net, first 20 losses GPU vs CPU: worst relative difference",
                     f"{worst:.2e} ({'ok' if worst <= 1e-4 else 'ABOVE 1e-4'})"))
        rows.append(("  losses GPU", " ".join(f"{v:.6g}" for v in gpu)))
        rows.append(("  losses CPU", " ".join(f"{v:.6g}" for v in cpu)))
        fp32 = rate(with_batch(folder, SEED_BATCH, 8), tf32=False)
        largest, batch = (SEED_BATCH, fp32), SEED_BATCH
        while batch < 1024:
            batch *= 2
            r = rate(with_batch(folder, batch, 8), tf32=False)
            if r is None:
                break
            largest = (batch, r)
        for label, b, tf32 in (("fp32", SEED_BATCH, False), ("TF32", SEED_BATCH, True),
                               ("fp32", largest[0], False), ("TF32", largest[0], True)):
            r = fp32 if (b, tf32) == (SEED_BATCH, False) else rate(with_batch(folder, b, 8), tf32=tf32)
            rows.append((f"stage-1 training images/s, batch {b}, {label}", f"{r:.1f}" if r else "does not fit"))
        rows.append(("projected stage-1 schedule (120000 iterations of batch 32, fp32)",
                     f"{SEED_ITERS * SEED_BATCH / fp32 / 3600:.1f} h"))
        data = data_rate(os.path.join(folder, "train.prototxt"))
        rows.append((f"Data layer alone (mean + scale, {os.cpu_count()} CPU cores), images/s",
                     f"{data:.0f} ({'limits' if data < 1.2 * largest[1] else 'does not limit'} the GPU)"))
        if torch.cuda.device_count() >= 2:
            rows += multi_gpu(folder)
    rows.append(("wall time of this script", f"{time.perf_counter() - start:.0f} s"))
    print("\n| check | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
