"""Several workers training one solver (caffe.distributed) on the CPU with gloo: 2 processes
under torchrun, through `caffe`'s own launcher and through pycaffe's `caffe.NCCL`, against one
worker with iter_size 2 on the same records."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe
from caffe.formats.caffemodel import read_weights
from caffe.formats.db.writers import LMDBWriter
from caffe.proto import caffe_pb2
from caffe.tools import caffe_main

BATCH = 3
NET = """name: "small"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{lmdb}" batch_size: {batch} backend: LMDB label_num: 2 }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 4 kernel_size: 3 weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""
SOLVER = """net: "{net}"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "step" gamma: 0.5 stepsize: 4
max_iter: {max_iter} iter_size: {iter_size} display: 1 random_seed: 1701 solver_mode: CPU
snapshot_prefix: "{prefix}" {extra}
"""


def write_lmdb(path, records):
    rng = np.random.default_rng(0)
    with LMDBWriter(path) as db:
        for i in range(records):
            datum = caffe_pb2.Datum(channels=3, height=6, width=6,
                                    data=rng.integers(0, 256, (3, 6, 6), np.uint8).tobytes())
            datum.float_data.extend(rng.normal(size=2).astype(np.float32))
            db.put(f"{i:04d}", datum.SerializeToString())


def make_run(folder, records, max_iter, iter_size=1, prefix="model", extra="", template=NET):
    """A folder with an LMDB of `records` records, the net and a solver; the solver's path."""
    os.makedirs(folder, exist_ok=True)
    write_lmdb(os.path.join(folder, "lmdb"), records)
    net = os.path.join(folder, "net.prototxt")
    with open(net, "w") as f:
        f.write(template.format(lmdb=os.path.join(folder, "lmdb"), batch=BATCH))
    solver = os.path.join(folder, "solver.prototxt")
    with open(solver, "w") as f:
        f.write(SOLVER.format(net=net, max_iter=max_iter, iter_size=iter_size, prefix=prefix, extra=extra))
    return solver


def caffe_cmd():
    return shutil.which("caffe") or pytest.skip("the caffe console script is not installed")


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args):
    return subprocess.run(TORCHRUN + list(args), capture_output=True, text=True, timeout=300)


def weights(path):
    return {name: [values for _, _, values in blobs] for name, blobs in read_weights(path)}


def assert_same_weights(path, reference):
    got, want = weights(path), weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        for g, w in zip(got[name], want[name]):
            scale = np.abs(w).max()
            assert np.abs(g - w).max() <= 1e-5 * scale, f"{name}: {np.abs(g - w).max() / scale:.3g} relative"


def rank_script(folder):
    """A worker command that runs `caffe train` in the folder rank<RANK>/, its stderr to rank<RANK>.log."""
    script = os.path.join(folder, "worker.sh")
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\ncd "{folder}/rank$RANK" && exec "{caffe_cmd()}" train "$@" 2> "{folder}/rank$RANK.log"\n')
    os.chmod(script, 0o755)
    for r in (0, 1):
        os.makedirs(os.path.join(folder, f"rank{r}"), exist_ok=True)
    return script


ITERS, RECORDS = 6, 16  # 6 records an iteration: the records wrap around, at different places per worker


def one_worker(folder, records, max_iter):
    """One worker, iter_size 2, batch B: its final weights."""
    solver = make_run(folder, records, max_iter, iter_size=2, prefix=os.path.join(folder, "model"))
    done = subprocess.run([caffe_cmd(), "train", "-solver", solver], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return os.path.join(folder, f"model_iter_{max_iter}.caffemodel")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return one_worker(str(tmp_path_factory.mktemp("single")), RECORDS, ITERS)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """2 workers with batch B under torchrun, each in its own folder (relative snapshot prefix)."""
    folder = str(tmp_path_factory.mktemp("two"))
    solver = make_run(folder, RECORDS, ITERS)
    done = torchrun("--no-python", rank_script(folder), "-solver", solver)
    assert done.returncode == 0, done.stderr[-3000:] + open(os.path.join(folder, "rank0.log")).read()[-3000:]
    return folder


@pytest.mark.slow
def test_two_workers_equal_one_worker_with_iter_size_2(two_workers, reference):
    assert_same_weights(os.path.join(two_workers, "rank0", f"model_iter_{ITERS}.caffemodel"), reference)


@pytest.mark.slow
def test_only_rank_0_logs_and_snapshots(two_workers):
    assert sorted(os.listdir(os.path.join(two_workers, "rank0"))) == [  # no lock left
        f"model_iter_{ITERS}.caffemodel", f"model_iter_{ITERS}.solverstate"]
    assert os.listdir(os.path.join(two_workers, "rank1")) == []
    root = open(os.path.join(two_workers, "rank0.log")).read().splitlines()
    other = open(os.path.join(two_workers, "rank1.log")).read().splitlines()
    assert sum(f"Iteration {i} " in line and "loss = " in line for line in root for i in range(ITERS)) == ITERS
    assert "Optimization Done." in root[-1]
    assert not [line for line in other if line.startswith("I")]


@pytest.mark.skipif(caffe.distributed.torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_list_without_cuda_is_refused(tmp_path, capsys):
    solver = make_run(str(tmp_path), RECORDS, ITERS, prefix=str(tmp_path / "model"))
    for gpu in ("0,1", "all"):
        capsys.readouterr()
        assert caffe_main.main(["train", "-solver", solver, "-gpu", gpu]) == 1
        assert "CUDA device" in capsys.readouterr().err.splitlines()[-1]
    assert not [n for n in os.listdir(tmp_path) if n.startswith("model")]


def test_worker_needs_its_own_device(tmp_path, capsys, monkeypatch):
    """A worker of torchrun takes the LOCAL_RANK-th device of -gpu: one is needed per worker of the node."""
    solver = make_run(str(tmp_path), RECORDS, ITERS, prefix=str(tmp_path / "model"))
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    try:
        assert caffe_main.main(["train", "-solver", solver, "-gpu", "0"]) == 1
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
    assert "names 1 device(s), but this worker's LOCAL_RANK is 1" in capsys.readouterr().err.splitlines()[-1]


LAUNCH = [sys.executable, "-c", "import sys; from caffe import distributed; sys.exit(distributed.launch(sys.argv[1:], 2))"]


def interrupted(cmd, iteration, folder, signum=signal.SIGINT):
    """Run `cmd`, send it `signum` once rank 0 logged `iteration`; the iteration of the snapshot it left."""
    before = set(os.listdir(folder))
    run = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = []
    for line in run.stderr:
        log.append(line)
        if f"Iteration {iteration} " in line:
            run.send_signal(signum)
    run.wait(timeout=120)  # (torchrun exits with 1 after passing a signal on)
    assert "Optimization stopped early." in "".join(log), "".join(log[-50:])
    snapshots = sorted(n for n in set(os.listdir(folder)) - before if n.startswith("model_iter_"))
    assert len(snapshots) == 2 and snapshots[0].endswith(".caffemodel"), snapshots
    stopped = int(snapshots[0].split("_")[-1].split(".")[0])
    assert iteration < stopped
    return stopped


@pytest.mark.slow
def test_sigint_stops_all_workers_and_resumes_with_two(tmp_path):
    """SIGINT to torchrun, then SIGTERM to the `caffe train` that started 2 workers
    (distributed.launch, as `-gpu 0,1` starts them): each time both workers stop at one iteration
    and rank 0 writes one snapshot. 2 workers resumed from the last one end with the weights of one worker with
    iter_size 2, as does one worker with iter_size 2 resumed from it. Each iteration reads the
    whole LMDB (2 x batch records), so a resumed run reads what an uninterrupted one does."""
    max_iter, cut = 100, tmp_path / "cut"
    solver = make_run(str(cut), 2 * BATCH, max_iter, prefix=str(cut / "model"))
    first = interrupted(TORCHRUN + [caffe_cmd(), "train", "-solver", solver], 10, cut)
    second = interrupted(LAUNCH + ["train", "-solver", solver, "-snapshot", str(cut / f"model_iter_{first}.solverstate")],
                         first + 10, cut, signal.SIGTERM)
    assert second < max_iter
    done = torchrun(caffe_cmd(), "train", "-solver", solver, "-snapshot", str(cut / f"model_iter_{second}.solverstate"))
    assert done.returncode == 0, done.stderr[-3000:]
    whole = one_worker(str(tmp_path / "whole"), 2 * BATCH, max_iter)
    assert_same_weights(cut / f"model_iter_{max_iter}.caffemodel", whole)
    # the snapshot of 2 workers resumed by 1 worker with iter_size 2: the same weights again
    single = tmp_path / "whole" / "solver.prototxt"
    single.write_text(single.read_text().replace(str(tmp_path / "whole" / "model"), str(tmp_path / "one")))
    done = subprocess.run([caffe_cmd(), "train", "-solver", str(single), "-snapshot",
                           str(cut / f"model_iter_{second}.solverstate")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "was written by 2 worker(s), this run has 1: every worker continues" in done.stderr
    assert_same_weights(tmp_path / f"one_iter_{max_iter}.caffemodel", whole)


RANDOM_NET = NET.replace("transform_param {{ ", "transform_param {{ mirror: true ").replace(
    'layer {{ name: "fc"', 'layer {{ name: "drop" type: "Dropout" bottom: "conv" top: "conv" }}\nlayer {{ name: "fc"')


@pytest.mark.slow
def test_two_workers_resumed_continue_each_their_own_random_streams(tmp_path):
    """2 workers on a net with Dropout and random mirrors, resumed by 2 workers from the snapshot of
    iteration 4, end with the bytes of the run never stopped: the snapshot keeps each worker's random
    streams (torch, numpy, the data transformer's) and data positions, and each worker continues its own."""
    assert "Dropout" in RANDOM_NET and "mirror: true" in RANDOM_NET
    runs = {}
    for name, args in (("ref", []), ("res", ["-snapshot", str(tmp_path / "ref" / "model_iter_4.solverstate")])):
        solver = make_run(str(tmp_path / name), RECORDS, 8, prefix=str(tmp_path / name / "model"),
                          extra="snapshot: 4", template=RANDOM_NET)
        done = torchrun(caffe_cmd(), "train", "-solver", solver, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = [(tmp_path / name / f"model_iter_8{ext}").read_bytes().replace(b"/res/", b"/ref/")
                      for ext in (".caffemodel", ".solverstate")]
    assert runs["res"] == runs["ref"]
    assert b'"workers"' in runs["ref"][1]


TRAIN_PY = '''
import sys
from multiprocessing import Process
import caffe


def solve(proto, uid, rank, count):  # BVLC python/train.py's solve(), CPU workers
    caffe.set_mode_cpu()
    caffe.set_solver_count(count)
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)
    solver = caffe.SGDSolver(proto)
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    solver.step(solver.param.max_iter)
    if rank == 0:
        solver.snapshot()


if __name__ == "__main__":
    uid = caffe.NCCL.new_uid()
    procs = [Process(target=solve, args=(sys.argv[1], uid, rank, 2)) for rank in range(2)]
    for p in procs:
        p.daemon = True
        p.start()
    for p in procs:
        p.join()
    sys.exit(max(p.exitcode for p in procs))
'''


@pytest.mark.slow
@pytest.mark.parametrize("layer_wise", ["true", "false"])
def test_pycaffe_nccl_like_bvlc_train_py(tmp_path, reference, layer_wise):
    solver = make_run(str(tmp_path), RECORDS, ITERS, prefix=str(tmp_path / "model"),
                      extra=f"layer_wise_reduce: {layer_wise}")
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAIN_PY))
    done = subprocess.run([sys.executable, str(tmp_path / "train.py"), solver], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(tmp_path / f"model_iter_{ITERS}.caffemodel", reference)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("model")) == [
        f"model_iter_{ITERS}.caffemodel", f"model_iter_{ITERS}.solverstate"]


def test_data_layer_skip_splits_records_by_running_index(tmp_path):
    """Worker r of N reads the records whose running index i has i mod N == r, wrapping around
    the LMDB; a TEST-phase Data layer reads every record (only rank 0 tests)."""
    make_run(str(tmp_path), 5, 1)
    net = tmp_path / "any_phase.prototxt"
    net.write_text((tmp_path / "net.prototxt").read_text().replace("include { phase: TRAIN }", ""))

    def labels(phase, batches):
        reader = caffe.Net(str(net), phase)
        return np.concatenate([reader.forward() and reader.blobs["label"].data[:, :, 0, 0].copy()
                               for _ in range(batches)])

    order = labels(caffe.TRAIN, 4)  # running index 0..11: records 0..4, 0..4, 0, 1
    np.testing.assert_array_equal(order[5:10], order[:5])
    try:
        caffe.set_solver_count(2)
        for rank in (0, 1):
            caffe.set_solver_rank(rank)
            np.testing.assert_array_equal(labels(caffe.TRAIN, 2), order[rank::2])
            np.testing.assert_array_equal(labels(caffe.TEST, 2), order[:6])
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)

