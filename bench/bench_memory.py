"""Peak memory of `caffe train` beside its images/s: the stage-1 DeepPose solver (the seed's net and
solver, CPU, batch 32, TRAIN phase) on an LMDB of random 227x227 images (bench/lib/stage1_nets.py),
for our engine as shipped, our engine on Caffe's reference path (CAFFE_REFERENCE=1) and the real
Caffe, each in its own process.

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

import caffe
from caffe.formats.protoio import read_prototxt, write_prototxt
from caffe.proto import caffe_pb2
from lib.stage1_nets import make_lmdb, write_solver


def snapshotting_solver(folder, batch, iters):
    """bench/lib's stage-1 solver on its random LMDB, with the snapshot `caffe train` writes at the end."""
    make_lmdb(folder, batch * 4)
    path = write_solver(folder, batch, iters)
    solver = read_prototxt(path, caffe_pb2.SolverParameter)
    solver.snapshot_after_train = True
    write_prototxt(path, solver)
    return path


def run(command, env):
    """(peak resident MB, wall seconds) of `command`; exits naming it if it fails."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{err.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed-caffe", default="/opt/seed-caffe", help="the real Caffe's install (skipped if absent)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        solver = snapshotting_solver(folder, a.batch, a.iters)
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
