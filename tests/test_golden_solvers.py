"""Solver conformance with the real Caffe: every case of tests/golden/solvers (see its README.md).

Each case runs in a copy of the solvers folder (paths in the solver files are relative to the
current directory, as in Caffe; the copy keeps snapshots out of the golden set).
"""
import glob
import os
import shutil

import numpy as np
import pytest

import caffe
from conftest import GOLDEN, compare

SOLVERS = os.path.join(GOLDEN, "solvers")
CASES = sorted(os.path.basename(f)[:-len(".solver.prototxt")]
               for f in glob.glob(os.path.join(SOLVERS, "*.solver.prototxt")))
RESTORE = "sgd_snapshot_restore"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = tmp_path / "solvers"
    shutil.copytree(SOLVERS, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    monkeypatch.chdir(folder)
    return folder


def run_steps(case, solver, arrays, steps):
    """Steps `steps` (0-based) of the golden procedure, compared with Caffe's after each one."""
    net = solver.net
    for i in steps:
        compare("solvers", case, f"lr[{i}]", solver.lr, arrays["lr"][i])
        net.blobs["x"].data[...] = arrays["x"]
        net.blobs["y"].data[...] = arrays["y"]
        solver.step(1)
        compare("solvers", case, f"loss[{i}]", net.blobs["loss"].data, arrays["loss"][i])
        compare("solvers", case, f"W[{i}]", net.params["fc"][0].data, arrays["W"][i])
        compare("solvers", case, f"b[{i}]", net.params["fc"][1].data, arrays["b"][i])


def new_solver(case, arrays):
    solver = caffe.get_solver(f"{case}.solver.prototxt")
    solver.net.params["fc"][0].data[...] = arrays["W0"]
    solver.net.params["fc"][1].data[...] = arrays["b0"]
    return solver


@pytest.mark.parametrize("case", CASES)
def test_solver(case, workdir):
    arrays = np.load(f"{case}.npz")
    solver = new_solver(case, arrays)
    assert solver.type == solver.param.type
    run_steps(case, solver, arrays, range(6))


def test_restore_caffe_snapshot(workdir):
    """Caffe's own .solverstate (relative learned_net) and .caffemodel of iteration 3, then steps 4-6."""
    arrays = np.load(f"{RESTORE}.npz")
    solver = caffe.get_solver(f"{RESTORE}.solver.prototxt")
    solver.restore(f"{RESTORE}_iter_3.solverstate")
    assert solver.iter == 3
    compare("solvers", RESTORE, "W[2] restored", solver.net.params["fc"][0].data, arrays["W"][2])
    run_steps(RESTORE, solver, arrays, range(3, 6))


def test_restore_own_snapshot_from_elsewhere(workdir, monkeypatch):
    """Our snapshot of iteration 3, restored by a new solver from another directory (learned_net is
    then found next to the .solverstate), continues exactly like Caffe."""
    arrays = np.load(f"{RESTORE}.npz")
    for name in glob.glob(f"{RESTORE}_iter_3.*"):
        os.remove(name)
    run_steps(RESTORE, new_solver(RESTORE, arrays), arrays, range(3))
    assert os.path.isfile(f"{RESTORE}_iter_3.caffemodel")
    solver = caffe.get_solver(f"{RESTORE}.solver.prototxt")
    monkeypatch.chdir(workdir.parent)
    solver.restore(os.path.join("solvers", f"{RESTORE}_iter_3.solverstate"))
    monkeypatch.chdir(workdir)
    run_steps(RESTORE, solver, arrays, range(3, 6))


def test_caffe_train_snapshot_then_final_test(tmp_path, monkeypatch, capsys):
    """files/train.log's last test (iteration 8) from Caffe's own snapshot of the BatchNorm net: the
    .solverstate holds a history blob for every parameter, BatchNorm's frozen ones included; before
    that test Caffe's final display pass ran the TRAIN net forward once more (batch 9: records 2-5),
    which moved BatchNorm's running statistics."""
    shutil.copytree(os.path.join(GOLDEN, "files"), tmp_path / "files")
    monkeypatch.chdir(tmp_path / "files")
    log = open("train.log").read().splitlines()
    caffe_loss = float([line for line in log if "Test net output #0" in line][-1].split()[10])
    solver = caffe.get_solver("train_solver.prototxt")
    solver.restore("snapshots/train_iter_8.solverstate")
    assert solver.iter == 8 and solver.current_step == 1 and len(solver.history) == 9
    bn = [b.data.copy() for b in solver.net.params["bn"]]
    for _ in range(8):  # move the data cursor to batch 9, then put the statistics back
        solver.net.forward()
    for blob, value in zip(solver.net.params["bn"], bn):
        blob.data[...] = value
    solver.net.forward()
    capsys.readouterr()
    solver.test(0)
    line = [x for x in capsys.readouterr().err.splitlines() if "Test net output #0" in x][0]
    compare("solvers", "train.log", "test loss at iteration 8", float(line.split()[10]), caffe_loss)
