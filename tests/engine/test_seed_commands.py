"""The seed's three shell steps, run as subprocesses of the installed console scripts on a tiny
image list and a tiny net, and its log parsed the way Caffe logs are."""
import os
import shutil
import subprocess

import pytest

from tests.conftest import GOLDEN

FILES = os.path.join(GOLDEN, "files")
STEPS = """
set -eo pipefail
convert_imageset_multilabel -resize_height=16 -resize_width=16 "" list_multilabel.txt multilabel_lmdb
compute_image_mean multilabel_lmdb mean.binaryproto
caffe train -solver train_solver.prototxt 2>&1 | tee train.log
"""


@pytest.mark.slow
def test_convert_mean_train_and_parse_the_log(tmp_path):
    shutil.copytree(os.path.join(FILES, "images"), tmp_path / "images")
    for name in ("list_multilabel.txt", "train_net.prototxt", "train_solver.prototxt"):
        shutil.copy(os.path.join(FILES, name), tmp_path / name)
    os.mkdir(tmp_path / "snapshots")
    subprocess.run(["bash", "-c", STEPS], cwd=tmp_path, check=True, capture_output=True)
    parsed = subprocess.run(["bash", "-c", "grep Iteration train.log | grep loss | awk '{print $6,$13}'"],
                            cwd=tmp_path, check=True, capture_output=True, text=True).stdout.split("\n")
    pairs = [line.split() for line in parsed if line]
    # display: 2, max_iter: 8 -> the display lines of iterations 0, 2, 4, 6 and the final "Iteration 8, loss = "
    assert [p[0] for p in pairs] == ["0", "2", "4", "6", "8,"]
    assert all(float(p[1]) > 0 for p in pairs[:-1])
    assert sorted(os.listdir(tmp_path / "snapshots")) == ["train_iter_8.caffemodel", "train_iter_8.solverstate"]
    assert not list(tmp_path.rglob("*.lock"))  # the database's and the snapshot prefix's: removed at the end
