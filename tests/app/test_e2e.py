"""End to end: ./deeppose_train.sh (python -m deeppose train) on a tiny synthetic set with a tiny
schedule, then the seed's commands (pytest.py, pyaccuracy.py --json, draw_loss.py), all as
subprocesses in a copy of the repository's user-facing files (the checkout's data/ and models/
are left alone); a second run from scratch repeats the first byte for byte; Ctrl-C during
training snapshots and the next run resumes from there."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import cv2
import pytest

from deeppose.datasets import K2HPD
from deeppose.metrics import PDJ_FRACTIONS
from tests.app.conftest import TINY, copy_repository, run_tiny as run

pytestmark = pytest.mark.slow  # every test reads the run of the whole pipeline (minutes)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    repo = copy_repository(tmp_path_factory.mktemp("repo"))
    out = run(["bash", "deeppose_train.sh"], repo)
    return repo, out


RESULTS = ["models/deeppose/snapshot/deeppose_iter_2.caffemodel",
           "models/deeppose_refine/snapshot/deeppose_refine_iter_2.caffemodel",
           "models/deeppose/accuracy.json", "models/deeppose_refine/accuracy.json"]


def test_pipeline_makes_every_file(trained):
    repo, out = trained
    assert "holds no dataset" in out and "generating the synthetic" in out
    assert "no GPU: running on CPU with the short schedule" in out
    d = repo / K2HPD.root
    assert len(list((d / K2HPD.image_dir).glob("*m.png"))) > 0  # mirrors
    for m, tested in (("models/deeppose", "test"), ("models/deeppose_refine", "val")):
        assert (repo / m / "train_data_lmdb" / "data.mdb").exists()
        assert (repo / m / f"{tested}_data_lmdb" / "data.mdb").exists()
        assert (repo / m / "train_mean.binaryproto").exists()
        assert (repo / m / "pdj_curve.png").exists()
        sheet = cv2.imread(str(repo / m / "results_sheet.png"))  # best, median, worst: 4 images a row
        stages = 1 if m == "models/deeppose" else 2
        assert sheet.shape[0] > 3 * 220 and sheet.shape[1] > 4 * stages * 220
    assert (repo / "models/deeppose/snapshot/deeppose_iter_2.caffemodel").exists()
    assert (repo / "models/deeppose_refine/snapshot/deeppose_refine_iter_2.caffemodel").exists()
    assert (repo / "models/deeppose/deeppose.log").read_text().count("Iteration") > 0
    stage2 = (d / "stage2/train.txt").read_text().split("\n")
    n_train = len((d / "stage1/train.txt").read_text().splitlines())
    assert len([l for l in stage2 if l]) == 2 * n_train  # DEEPPOSE_PER_IMAGE crops an image
    assert (d / "stage2/displacements.json").exists() and (d / "stage1/output_val.txt").exists()
    assert not list(repo.rglob("*.lock"))  # the locks of the databases, snapshot prefixes and data set


def test_accuracy_report(trained):
    repo, _ = trained
    report = json.loads((repo / "models/deeppose_refine/accuracy.json").read_text())
    assert report["images"] == 8
    assert list(report["stages"]) == ["mean pose", "stage 1", "stage 2"]
    for s in report["stages"].values():
        assert list(s["pdj"]) == [f"{f:.2f}" for f in PDJ_FRACTIONS]
        assert 0 <= s["pcp"] <= 1 and s["loss"] >= 0
        assert set(s["mean_error_px"]) == set(K2HPD.joint_names)
    one = json.loads((repo / "models/deeppose/accuracy.json").read_text())
    assert list(one["stages"]) == ["mean pose", "stage 1"]
    for key in ("loss", "pcp"):  # stage 1 alone and inside the cascade agree
        assert one["stages"]["stage 1"][key] == pytest.approx(report["stages"]["stage 1"][key], rel=1e-5)


def test_rerun_skips_and_from_restarts(trained):
    repo, _ = trained
    out = run(["bash", "deeppose_train.sh"], repo)
    assert out.count("skipped") == 10
    out = run(["bash", "deeppose_train.sh", "--from", "accuracy2"], repo)
    assert out.count("skipped") == 9 and "PCP" in out


def test_an_interrupted_accuracy_report_is_redone(trained):
    repo, _ = trained
    report = repo / "models/deeppose/accuracy.json"
    report.write_text(report.read_text()[:40])  # what `--json > accuracy.json` left when interrupted
    out = run(["bash", "deeppose_train.sh"], repo)
    assert "not a complete report" in out and out.count("skipped") == 9
    assert json.loads(report.read_text())["images"] == 8


def test_seed_commands(trained):
    repo, _ = trained
    m1 = "models/deeppose/snapshot/deeppose_iter_2.caffemodel"
    m2 = "models/deeppose_refine/snapshot/deeppose_refine_iter_2.caffemodel"
    image = f"{K2HPD.root}/{K2HPD.image_dir}/{K2HPD.image_name(16)}"
    out = run([sys.executable, "models/deeppose/pytest.py", m1, image], repo)
    assert out.count("\n") >= K2HPD.num_joints and (repo / "out/00000016_stage1.png").exists()
    out = run([sys.executable, "models/deeppose_refine/pytest.py", m1, m2, image, "--out", "o.png"], repo)
    assert "stage 2 joints" in out and (repo / "o.png").exists()
    out = run([sys.executable, "models/deeppose/draw_loss.py"], repo)
    assert (repo / "models/deeppose/deeppose_loss.png").exists()


def test_a_run_from_scratch_repeats_byte_for_byte(trained, tmp_path):
    """The one seed (globalvar.py's SEED) fixes the synthetic set, the lists, the crops and the
    solvers' random_seed: a second run in a fresh copy writes the same weights and reports."""
    first, _ = trained
    second = copy_repository(tmp_path)
    run(["bash", "deeppose_train.sh"], second)
    for f in RESULTS + ["data/K2HPD/stage1/train.txt", "data/K2HPD/stage2/train.txt"]:
        assert (second / f).read_bytes() == (first / f).read_bytes(), f
    run([sys.executable, "data/K2HPD/get_stage.py", "--stage", "1", "--seed", "1"], second)  # another seed: another split
    assert (second / "data/K2HPD/stage1/train.txt").read_bytes() != (first / "data/K2HPD/stage1/train.txt").read_bytes()


def test_ctrl_c_snapshots_and_the_next_run_resumes(trained, tmp_path):
    """SIGINT during training stops it with a snapshot (exit 130); the next run resumes from it
    (here stage 1's max_iter is raised to 30, so the finished run's iteration-2 state is the
    resume point first)."""
    repo = tmp_path / "repo"
    shutil.copytree(trained[0], repo)
    env = {**os.environ, **TINY, "DEEPPOSE_ITER1": "30"}
    proc = subprocess.Popen(["bash", "deeppose_train.sh"], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "] Iteration 10 " in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "resuming from models/deeppose/snapshot/deeppose_iter_2.solverstate" in out
    stopped = int(re.search(r"training stopped at iteration (\d+) by SIGINT", out).group(1))
    assert 10 < stopped < 30
    state = f"models/deeppose/snapshot/deeppose_iter_{stopped}.solverstate"
    assert (repo / state).exists() and state in out
    out = run(["bash", "deeppose_train.sh"], repo, {"DEEPPOSE_ITER1": str(stopped + 2)})
    assert f"resuming from {state}" in out
    assert (repo / f"models/deeppose/snapshot/deeppose_iter_{stopped + 2}.caffemodel").exists()


def test_what_more_time_buys(trained):
    """tools/pdj_vs_iterations.py continues both stages from the run's final snapshots; its first
    point is the run itself."""
    repo, _ = trained
    run([sys.executable, "tools/pdj_vs_iterations.py", "--factor", "2", "--out", "more.png", "--json", "more.json"], repo)
    points = json.loads((repo / "more.json").read_text())
    assert [(p["factor"], p["iter1"], p["iter2"]) for p in points] == [(1, 2, 2), (2, 4, 4)]
    report = json.loads((repo / "models/deeppose_refine/accuracy.json").read_text())["stages"]
    assert points[0]["stage 1"] == report["stage 1"]["pdj"]["0.20"] and points[0]["cascade"] == report["stage 2"]["pdj"]["0.20"]
    assert (repo / "models/deeppose/more_time/deeppose_iter_4.caffemodel").exists()
    assert (repo / "models/deeppose_refine/more_time/deeppose_refine_iter_4.caffemodel").exists()
    assert cv2.imread(str(repo / "more.png")).shape == (440, 640, 3)
