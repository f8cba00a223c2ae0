"""Our engine against the real Caffe (the original system's pycaffe), in one run, interleaved:
the stage-1 DeepPose net's forward (deploy net), forward + backward and one solver step (the
train net with its data layers as in-memory Input blobs), and a hand-written PyTorch training
loop of the same net, at each batch size.

    python bench/bench_vs_caffe.py [--batches 32 1] [--seconds 8] [--calls 10] [--seed-caffe /opt/seed-caffe]

`--against CHECKOUT` puts another checkout of this project (an older commit in a git worktree) in
the real Caffe's place: its engine, this Python, the same interleaving, so the ratio column reads
as after / before on the same drift of the machine ("No speed lost" in one run).

The real Caffe runs in its own process (its python, its pycaffe: bench/lib/seed_caffe_worker.py),
driven slice by slice, so both sides share the machine's drift. Both load the same weights and
inputs; the forward outputs are checked to agree. Prints images/s and the ratio to the real
Caffe, and which BLAS / threading libraries each side loaded (threadpoolctl, in each process),
so that no ratio is read against a handicapped baseline. `solver.step` is what `caffe train`
runs each iteration (here without the Data layer, which bench/bench_data.py measures apart).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

import caffe
from caffe.formats.protoio import read_prototxt, write_prototxt
from caffe.proto import caffe_pb2
from lib.deeppose_torch import hand_written_step
from lib.seed_caffe_worker import read
from lib.stage1_nets import flops_per_image, random_weights, write_nets
from lib.stage1_shape import LABELS, SIZE
from lib.timing import fastest_call, measure

BENCH = os.path.dirname(os.path.abspath(__file__))


class SeedCaffe:
    """The real Caffe (or `checkout`'s engine) in a worker process; `run(key, what)` is a callable
    for `measure`."""

    def __init__(self, home, checkout=None):
        if checkout:
            python = sys.executable
            path = os.pathsep.join([os.path.join(checkout, "caffe-deeppose", "python"), checkout])
            self.name = "commit " + subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                                                   capture_output=True, text=True, check=True).stdout.strip()
        else:
            python, path = os.path.join(home, "venv", "bin", "python"), os.path.join(home, "python")
            self.name = "real Caffe"
        env = dict(os.environ, PYTHONPATH=path, GLOG_minloglevel="2")
        env["PATH"] = os.path.join(home, "bin") + os.pathsep + env.get("PATH", "")
        self.proc = subprocess.Popen([python, "-m", "lib.seed_caffe_worker"],
                                     cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the {self.name} worker died on {request['op']} (its stderr is above)")
        reply = json.loads(line)
        if "error" in reply:
            sys.exit(f"the {self.name} worker: {reply['error']}")
        return reply

    def run(self, key, what):
        worker = self

        class Remote:
            def __call__(self):
                worker.ask(op="run", key=key, what=what)

            @staticmethod
            def time_slice(seconds):
                reply = worker.ask(op="time", key=key, what=what, seconds=seconds)
                return reply["calls"], reply["elapsed"]

        return Remote()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def blas_lines(info):
    """One line per BLAS / OpenMP library threadpoolctl found."""
    return [f"{i['internal_api']} {i.get('version') or ''} {i.get('architecture') or ''} "
            f"{i['num_threads']} threads ({os.path.basename(i['filepath'])})".replace("  ", " ")
            for i in info]


CHECKED = ("conv1", "conv1.diff", "norm1.diff", "fc6.diff", "conv1/0.diff", "scale1/0.diff", "scale1/1.diff",
           "fc6/0.diff", "bn1/0", "bn1/1")


def check_training(folder, batch, seed, weights, files):
    """One forward + backward of the train net without its Dropout layers (their masks are random)
    on both engines: the relative L2 difference of each array of CHECKED. (Element-wise, the
    diffs below a MAX pooling differ where two inputs of a window are equal to rounding and the
    engines pick different maxima: a few tenths of a percent of the elements at batch 32, with
    the PyTorch implementations as with the C kernels.)"""
    path = os.path.join(folder, f"train_check_{batch}.prototxt")
    net = read_prototxt(write_nets(folder, batch)["train"], caffe_pb2.NetParameter)
    keep = [lp for lp in net.layer if lp.type != "Dropout"]
    del net.layer[:]
    net.layer.extend(keep)
    write_prototxt(path, net)
    ours = caffe.Net(path, caffe.TRAIN, weights=weights)
    for name, file in files.items():
        ours.blobs[name].data[...] = np.load(file)
    ours.forward()
    ours.backward()
    saved = {what: os.path.join(folder, f"check_{what.replace('/', '_')}.npy") for what in CHECKED}
    seed.ask(op="net", key=f"check{batch}", prototxt=path, phase="TRAIN", weights=weights, inputs=files)
    seed.ask(op="run", key=f"check{batch}", what="forward_backward", save=saved)
    errs = {}
    for what, file in saved.items():
        theirs, mine = np.load(file), read(ours, what)
        errs[what] = float(np.linalg.norm(mine - theirs) / np.linalg.norm(theirs))
    return errs


def engines(folder, batch, seed):
    """(inference runs, training runs, GFLOP per image forward), every run warm; the forward
    outputs of both engines are checked to agree."""
    paths = write_nets(folder, batch)
    rng = np.random.default_rng(batch)
    inputs = {"data": rng.uniform(-1, 1, (batch, 3, SIZE, SIZE)).astype(np.float32),
              "label": rng.normal(0, 0.5, (batch, LABELS)).astype(np.float32)}
    files = {}
    for name, value in inputs.items():
        files[name] = os.path.join(folder, f"{name}_{batch}.npy")
        np.save(files[name], value)
    deploy = caffe.Net(paths["deploy"], caffe.TEST)
    random_weights(deploy)
    weights = os.path.join(folder, f"weights_{batch}.caffemodel")
    deploy.save(weights)
    deploy.blobs["data"].data[...] = inputs["data"]
    train = caffe.Net(paths["train"], caffe.TRAIN, weights=weights)
    solver = caffe.get_solver(paths["solver"])
    for net in (train, solver.net):
        net.copy_from(weights)
        for name, value in inputs.items():
            net.blobs[name].data[...] = value
    hand_step = hand_written_step(deploy)
    x, y = torch.from_numpy(inputs["data"]), torch.from_numpy(inputs["label"])
    infer = {"ours: caffe.Net.forward": lambda: deploy.forward()}
    training = {"ours: Net.forward + backward": lambda: (train.forward(), train.backward()),
                "ours: solver.step (caffe train)": lambda: solver.step(1),
                "PyTorch hand-written loop step": lambda: hand_step(x, y)}
    if seed is not None:
        seed.ask(op="net", key=f"deploy{batch}", prototxt=paths["deploy"], phase="TEST", weights=weights,
                 inputs={"data": files["data"]})
        seed.ask(op="net", key=f"train{batch}", prototxt=paths["train"], phase="TRAIN", weights=weights,
                 inputs=files)
        seed.ask(op="solver", key=f"solver{batch}", solver=paths["solver"], weights=weights, inputs=files)
        infer[f"{seed.name}: forward"] = seed.run(f"deploy{batch}", "forward")
        training[f"{seed.name}: forward + backward"] = seed.run(f"train{batch}", "forward_backward")
        training[f"{seed.name}: solver.step"] = seed.run(f"solver{batch}", "step")
        saved = os.path.join(folder, f"predict_{batch}.npy")
        seed.ask(op="run", key=f"deploy{batch}", what="forward", save={"predict": saved})
        ours, theirs = deploy.forward()["predict"], np.load(saved)
        err = np.abs(ours - theirs).max() / np.abs(theirs).max()
        assert err < 1e-4, f"batch {batch}: our forward differs from the {seed.name}'s by {err:.2g} of its scale"
        errs = check_training(folder, batch, seed, weights, files)
        worst = max(errs, key=errs.get)
        print(f"# batch {batch}: the train net's forward + backward (without Dropout) against the {seed.name}'s: "
              f"{', '.join(CHECKED)} within {errs[worst]:.2g} relative L2 (worst: {worst}; "
              + ", ".join(f"{k} {v:.1g}" for k, v in errs.items()) + ")")
        assert errs[worst] < 1e-2, f"batch {batch}: our training pass differs from the {seed.name}'s: {errs}"
    for fn in list(infer.values()) + list(training.values()):
        fn()
    return infer, training, flops_per_image(deploy) / 1e9


def table(title, results, batch, base, flops, best=None):
    """One table; with `best` (fastest single calls) also their rates and ratios."""
    print(f"\n{title}, batch {batch}")
    extra = f" {'fastest call':>13s} {'ratio':>6s}" if best else ""
    print(f"{'engine':36s} {'images/s':>9s} {'GFLOP/s':>8s} {'vs ' + base:>24s}{extra}")
    for name, r in results.items():
        ratio = f"{r / results[base]:.2f}x" if base in results else "-"
        if best:
            extra = f" {best[name]:13.1f} " + (f"{best[name] / best[base]:5.2f}x" if base in best else "     -")
        print(f"{name:36s} {r:9.1f} {r * flops:8.1f} {ratio:>24s}{extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    ap.add_argument("--seconds", type=float, default=8.0, help="time per engine and batch (in interleaved slices)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calls", type=int, default=0,
                    help="also this many interleaved rounds of single calls: each engine's fastest call")
    ap.add_argument("--seed-caffe", default="/opt/seed-caffe", help="the real Caffe's install (bin, python, venv)")
    ap.add_argument("--against", metavar="CHECKOUT",
                    help="another checkout of this project (a git worktree) measured in the real Caffe's place")
    args = ap.parse_args()
    import threadpoolctl  # pip install .[bench]
    caffe.init_log(2)
    # our inference fast path compiles a shape once it has spent this many seconds eagerly (20 by
    # default); the bench compiles at once, in its warm-up, to time the steady state
    os.environ.setdefault("CAFFE_COMPILE_AFTER", "0")
    if args.against and not os.path.isdir(os.path.join(args.against, "caffe-deeppose", "python")):
        sys.exit(f"--against {args.against}: not a checkout of this project (no caffe-deeppose/python)")
    seed = (SeedCaffe(args.seed_caffe, args.against)
            if args.against or os.path.isdir(os.path.join(args.seed_caffe, "python")) else None)
    print(f"# stage-1 DeepPose net, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, CAFFE_COMPILE="
          f"{os.environ.get('CAFFE_COMPILE', '1')} CAFFE_COMPILE_AFTER={os.environ['CAFFE_COMPILE_AFTER']}")
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    print(f"# ours: torch's oneDNN {torch.backends.mkldnn.is_available() and 'on'} (convolutions), "
          f"{blas.group(1) if blas else 'unknown'} BLAS linked into torch (inner products); loaded libraries: "
          + "; ".join(blas_lines(threadpoolctl.threadpool_info())))
    if seed is None:
        print(f"# the real Caffe is not installed at {args.seed_caffe}: only our engine is measured")
    else:
        blas_of_seed = seed.ask(op="blas", threadpoolctl=threadpoolctl.__file__)["blas"]
        print(f"# {seed.name}: " + "; ".join(blas_lines(blas_of_seed)))
    them = seed.name if seed is not None else "real Caffe"
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            infer, training, flops = engines(folder, batch, seed)
            results = measure({**infer, **training}, batch, args.seconds, args.rounds)
            best = fastest_call({**infer, **training}, batch, args.calls) if args.calls else None
            table("Inference", {k: results[k] for k in infer}, batch, f"{them}: forward", flops, best)
            table("Training (GFLOP/s as 3x forward)", {k: results[k] for k in training}, batch,
                  f"{them}: solver.step", 3 * flops, best)
            if f"{them}: forward + backward" in results:
                print(f"{'ours fwd+bwd vs ' + them + ' fwd+bwd':36s} "
                      f"{results['ours: Net.forward + backward'] / results[them + ': forward + backward']:.2f}x")
            print(f"{'caffe train step vs hand-written':36s} "
                  f"{results['ours: solver.step (caffe train)'] / results['PyTorch hand-written loop step']:.2f}x")
    if seed is not None:
        seed.close()


if __name__ == "__main__":
    main()
