"""Peak memory of `caffe train` beside its images/s: the stage-1 DeepPose solver (the seed's net and
solver, CPU, batch 32) on one LMDB of random 227x227 images, for our engine as shipped, our engine on
Caffe's reference path (CAFFE_REFERENCE=1) and the real Caffe, each in its own process.

    python bench/bench_memory.py [--iters 20] [--batch 32] [--seed-caffe /opt/seed-caffe] [--runs 1]

Peak memory is the process's maximum resident set (wait4's ru_maxrss: what the kernel counted,
the LMDB pages read and the final snapshot included); images/s is iters x batch over the wall time
of the whole command (start-up, the net's set-up and the snapshot included). Each engine runs
`--runs` times, interleaved; the table gives the lowest peak and the best rate of each.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import lmdb
import numpy as np

import caffe
from caffe.formats.protoio import read_prototxt, write_prototxt
from caffe.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "models", "deeppose", "deeppose_train_test.prototxt")
SOLVER = os.path.join(ROOT, "models", "deeppose", "deeppose_solver.prototxt")
SIZE, LABELS = 227, 30


def write_lmdb(path, count, seed=0):
    """`count` Datums of random 3x227x227 uint8 images with LABELS float labels (the multi-label
    Data layer's records), as convert_imageset_multilabel writes them."""
    rng = np.random.default_rng(seed)
    env = lmdb.open(path, map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i in range(count):
            datum = caffe_pb2.Datum(channels=3, height=SIZE, width=SIZE,
                                    data=rng.integers(0, 256, (3, SIZE, SIZE), np.uint8).tobytes())
            datum.float_data.extend(rng.uniform(-100, 100, LABELS).astype(np.float32))
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def write_solver(folder, iters, batch):
    """The seed's train net reading the random LMDB (no mean file: the same work for both engines),
    and its solver for `iters` CPU iterations, no test, one snapshot at the end."""
    net = read_prototxt(TRAIN_NET, caffe_pb2.NetParameter)
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = os.path.join(folder, "lmdb")
            layer.transform_param.ClearField("mean_file")
            if any(rule.phase == caffe_pb2.TRAIN for rule in layer.include):
                layer.data_param.batch_size = batch
    solver = read_prototxt(SOLVER, caffe_pb2.SolverParameter)
    solver.net = os.path.join(folder, "net.prototxt")
    solver.max_iter, solver.display, solver.snapshot = iters, 0, 0
    solver.solver_mode = caffe_pb2.SolverParameter.CPU
    solver.snapshot_prefix = os.path.join(folder, "snap")
    solver.test_interval, solver.test_initialization = iters + 1, False
    write_prototxt(solver.net, net)
    path = os.path.join(folder, "solver.prototxt")
    write_prototxt(path, solver)
    return path


def run(command, env):
    """(peak resident MB, wall seconds) of `command`; exits naming it if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return usage.ru_maxrss / 1024, wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed-caffe", default="/opt/seed-caffe", help="the real Caffe's install (skipped if absent)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_lmdb(os.path.join(folder, "lmdb"), a.batch * 4)
        solver = write_solver(folder, a.iters, a.batch)
        base = dict(os.environ, GLOG_minloglevel="1")
        ours = [sys.executable, "-m", "caffe.tools.caffe_main", "train", "-solver", solver]
        engines = {"ours (as shipped)": (ours, dict(base, CAFFE_REFERENCE="0")),
                   "ours (CAFFE_REFERENCE=1)": (ours, dict(base, CAFFE_REFERENCE="1"))}
        seed_bin = os.path.join(a.seed_caffe, "bin", "caffe")
        if os.path.exists(seed_bin):
            engines["real Caffe"] = ([seed_bin, "train", "-solver", solver],
                                     dict(base, PATH=os.path.join(a.seed_caffe, "bin") + os.pathsep + base["PATH"]))
        results = {name: [] for name in engines}
        for _ in range(a.runs):
            for name, (command, env) in engines.items():
                results[name].append(run(command, env))
    print(f"# caffe train, stage-1 DeepPose net, batch {a.batch}, {a.iters} iterations + snapshot; "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; caffe {caffe.__file__}")
    print(f"| engine | peak RSS (MB) | images/s | peak vs real Caffe |")
    print("|---|---|---|---|")
    ref = min(r[0] for r in results["real Caffe"]) if "real Caffe" in results else None
    for name, runs in results.items():
        peak, rate = min(r[0] for r in runs), max(a.iters * a.batch / r[1] for r in runs)
        print(f"| {name} | {peak:.0f} | {rate:.1f} | {peak / ref:.2f} |" if ref else f"| {name} | {peak:.0f} | {rate:.1f} | |")


if __name__ == "__main__":
    main()
