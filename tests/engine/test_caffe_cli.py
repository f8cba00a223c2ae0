"""The `caffe` tool: flags, train (log lines as Caffe writes them, snapshots, resume, finetune,
SIGINT), test, time, device_query. Runs in a copy of tests/golden/files (paths are relative to
the current directory, as in Caffe)."""
import os
import re
import shutil
import signal

import numpy as np
import pytest
import torch

import caffe
from caffe.tools import caffe_main
from tests.conftest import GOLDEN

GLOG_LINE = re.compile(r"^([IWEF])\d{4,8} [\d:.]+ +\d+ (\S+?)(:\d+)?\] (.*)$")
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]\d+)?")


@pytest.fixture
def files(golden_files):
    """The golden files as the working directory, with no snapshots yet."""
    shutil.rmtree(golden_files / "snapshots")
    os.mkdir(golden_files / "snapshots")
    return golden_files


def run(capsys, *argv):
    """caffe_main.main(argv) -> (exit status, [(severity, source file, message)] of its glog lines)."""
    capsys.readouterr()
    rc = caffe_main.main(list(argv))
    lines = [GLOG_LINE.match(line) for line in capsys.readouterr().err.splitlines()]
    return rc, [(m.group(1), m.group(2), m.group(4)) for m in lines if m]


def solver_lines(log):
    """The solver's and the tool's messages with the numbers masked (what the two runs share)."""
    return [NUMBER.sub("N", msg) for _, src, msg in log if src in ("solver.cpp", "sgd_solver.cpp", "caffe.cpp")]


def caffe_log():
    lines = [GLOG_LINE.match(line) for line in open("train.log")]
    return [(m.group(1), m.group(2), m.group(4)) for m in lines if m]


def test_train_logs_like_caffe(files, capsys):
    rc, log = run(capsys, "train", "-solver", "train_solver.prototxt")
    assert rc == 0
    assert solver_lines(log) == solver_lines(caffe_log())
    text = [msg for _, _, msg in log]
    # grep Iteration | grep loss | awk '{print $6,$13}': iteration and smoothed loss
    shown = [msg.split() for msg in text if msg.startswith("Iteration") and "loss" in msg and "iters)" in msg]
    assert [int(f[1]) for f in shown] == [0, 2, 4, 6] and all(np.isfinite(float(f[8])) for f in shown)
    assert sorted(os.listdir("snapshots")) == ["train_iter_8.caffemodel", "train_iter_8.solverstate"]  # no lock left
    with open("snapshots/train_iter_8.solverstate", "rb") as f:  # Caffe's fields as Caffe's, + our field 1000
        state = caffe.proto.caffe_pb2.SolverState.FromString(f.read())
    state.DiscardUnknownFields()
    assert state.ByteSize() == os.path.getsize(os.path.join(GOLDEN, "files", "snapshots", "train_iter_8.solverstate"))


def test_train_resumes_from_caffes_snapshot(files, capsys):
    shutil.copytree(os.path.join(GOLDEN, "files", "snapshots"), "snapshots", dirs_exist_ok=True)
    rc, log = run(capsys, "train", "-solver=train_solver.prototxt", "--snapshot", "snapshots/train_iter_8.solverstate")
    assert rc == 0
    text = [msg for _, _, msg in log]
    assert "Resuming from snapshots/train_iter_8.solverstate" in text
    assert not any(m.startswith("Iteration 8 (") for m in text)  # max_iter reached: no training step
    assert any(m.startswith("Iteration 8, loss = ") for m in text)
    assert solver_lines(log)[-1] == "Optimization Done."  # (the data thread may log after it)


def test_finetune_from_weights(files, capsys, tmp_path):
    shutil.copy(os.path.join(GOLDEN, "files", "snapshots", "train_iter_8.caffemodel"), tmp_path / "w.caffemodel")
    rc, log = run(capsys, "train", "-solver", "train_solver.prototxt", f"-weights={tmp_path / 'w.caffemodel'}")
    assert rc == 0 and f"Finetuning from {tmp_path / 'w.caffemodel'}" in [m for _, _, m in log]


def test_sigint_snapshots_and_stops(files, capsys, monkeypatch):
    def get_solver(param):
        solver = caffe.get_solver(param)
        solver.add_callback(lambda: None,
                            lambda: solver.iter == 2 and os.kill(os.getpid(), signal.SIGINT))
        return solver
    monkeypatch.setattr(caffe_main, "get_solver", get_solver)
    previous = signal.getsignal(signal.SIGINT)
    rc, log = run(capsys, "train", "-solver", "train_solver.prototxt")
    assert rc == 0 and signal.getsignal(signal.SIGINT) is previous
    assert "Optimization stopped early." in [m for _, _, m in log]
    assert sorted(os.listdir("snapshots")) == ["train_iter_3.caffemodel", "train_iter_3.solverstate"]


def test_test_command(files, capsys):
    weights = os.path.join(GOLDEN, "files", "snapshots", "train_iter_8.caffemodel")
    rc, log = run(capsys, "test", "-model", "train_net.prototxt", "-weights", weights, "-iterations", "3")
    assert rc == 0
    text = [m for _, _, m in log]
    batches = [float(m.split(" = ")[1]) for m in text if m.startswith("Batch ")]
    assert len(batches) == 3
    net = caffe.Net("train_net.prototxt", caffe.TEST, weights=weights)
    expected = []
    for _ in range(3):
        net.forward()
        expected.append(float(net.blobs["loss"].data))
    np.testing.assert_allclose(batches, expected, rtol=1e-5)
    mean = np.mean(expected)
    loss = float([m for m in text if m.startswith("Loss: ")][0].split()[1])
    assert loss == pytest.approx(mean, rel=1e-5)
    final = [m for m in text if m.startswith("loss = ")][0]
    assert re.fullmatch(r"loss = \S+ \(\* 1 = \S+ loss\)", final)


def test_time_command(files, capsys):
    rc, log = run(capsys, "time", "-model", "train_net.prototxt", "-iterations", "2")
    assert rc == 0
    text = [m for _, _, m in log]
    layers = ["data", "conv", "bn", "scale", "relu", "pool", "fc", "loss"]
    per_layer = [m.split() for m in text if "\tforward: " in m or "\tbackward: " in m]
    assert [f[0] for f in per_layer] == [n for n in layers for _ in range(2)]
    assert all(f[2].replace(".", "").replace("e-", "").isdigit() and f[3] == "ms." for f in per_layer)
    for start in ("Average Forward pass: ", "Average Backward pass: ", "Average Forward-Backward: ", "Total Time: "):
        assert sum(m.startswith(start) for m in text) == 1
    assert sum(m.startswith("Iteration: ") for m in text) == 2
    assert solver_lines(log)[-1] == "*** Benchmark ends ***"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
def test_gpu_requests_without_cuda(files, capsys):
    rc, log = run(capsys, "device_query")
    assert rc == 0 and log[0][2] == "Querying GPUs "
    rc, log = run(capsys, "device_query", "-gpu", "0")
    assert rc == 1 and log[-1][0] == "F" and "sees 0 CUDA device" in log[-1][2]
    with open("train_solver.prototxt") as f:
        text = f.read().replace("solver_mode: CPU", "solver_mode: GPU")
    with open("gpu_solver.prototxt", "w") as f:
        f.write(text)
    rc, log = run(capsys, "train", "-solver", "gpu_solver.prototxt")
    assert rc == 1 and "solver_mode: GPU" in log[-1][2] and "solver_mode: CPU" in log[-1][2]


@pytest.mark.parametrize("argv, message", [
    (["train"], "Need a solver definition to train."),
    (["train", "-solver", "train_solver.prototxt", "-snapshot", "a", "-weights", "b"], "but not both"),
    (["train", "-solver", "missing.prototxt"], "missing.prototxt"),
    (["train", "-solver", "train_solver.prototxt", "-sigint_effect", "explode"], "Invalid signal effect"),
    (["test", "-model", "train_net.prototxt"], "Need model weights to score."),
    (["time"], "Need a model definition to time."),
    (["time", "-model", "train_net.prototxt", "-phase", "VAL"], 'phase must be "TRAIN" or "TEST"'),
    (["brew"], "Unknown action: brew"),
])
def test_command_errors(files, capsys, argv, message):
    rc, log = run(capsys, *argv)
    assert rc == 1 and log[-1][0] == "F" and message in log[-1][2]


def test_flag_errors(capsys):
    for argv, message in ((["train", "-bogus=1"], "unknown command line flag 'bogus'"),
                          (["test", "-iterations", "many"], "illegal value 'many'"),
                          (["train", "-solver"], "missing its argument")):
        with pytest.raises(SystemExit) as exit_info:
            caffe_main.main(argv)
        assert exit_info.value.code == 1 and message in capsys.readouterr().err
    assert caffe_main.main([]) == 1 and "usage: caffe <command> <args>" in capsys.readouterr().err
