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
