"""A new dataset defined by a description file only (14 joints at 320x240, made by the synthetic
generator) runs through ./deeppose_train.sh --dataset FILE.py on a tiny schedule: stage 1, the
refiner and the accuracy report with its joint names. The committed nets (15 joints) stay as they
are: the run derives run-local copies with the joint-dependent fields set, and logs each change."""

import json
import os
import subprocess
import sys

import cv2
import pytest

from test_e2e import ROOT, TINY, copy_repository, run  # the same copy of the repository, the same tiny schedule

pytestmark = pytest.mark.slow  # the whole pipeline runs (minutes)

JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
          "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
          "neck", "head")
DESCRIPTION = f'''
from deeppose.dataset import DatasetDescription

DATASET = DatasetDescription(
    name="Synth14",
    size=(320, 240),
    joint_names={JOINTS!r},
    limbs=((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13)),
    torso_joints=(8, 3),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    alpha=0.8,
    root="data/Synth14",
    image_dir="images",
    train_annotations="train.txt",
    test_annotations="test.txt",
    image_name_format="{{:05d}}.png",
)
'''


def test_a_dataset_described_in_one_file_runs_through_the_pipeline(tmp_path):
    repo = copy_repository(tmp_path)
    committed = {p: p.read_bytes() for p in repo.glob("models/*/*.prototxt")}
    (repo / "synth14.py").write_text(DESCRIPTION)
    out = run(["bash", "deeppose_train.sh", "--dataset", "synth14.py"], repo)
    for change in ("models/deeppose/deeppose.prototxt: layer 'predict' inner_product_param.num_output 30 -> 28 "
                   "(2 x the 14 joints of Synth14)",
                   "models/deeppose/deeppose_train_test.prototxt: layer 'data' data_param.label_num 30 -> 28",
                   "models/deeppose_refine/deeppose_refine.prototxt: layer 'data' input_param.shape.dim[0] 15 -> 14"):
        assert change in out
    assert {p: p.read_bytes() for p in repo.glob("models/*/*.prototxt")} == committed
    assert "num_output: 28" in (repo / "models/deeppose/run/deeppose.prototxt").read_text()
    report = json.loads((repo / "models/deeppose_refine/accuracy.json").read_text())
    assert report["images"] == 8 and list(report["stages"]) == ["mean pose", "stage 1", "stage 2"]
    for s in report["stages"].values():
        assert list(s["mean_error_px"]) == list(JOINTS)
    assert "right_shoulder" in out and "head" in out  # the per-joint table of the printed report
    lines = (repo / "data/Synth14/stage1/train.txt").read_text().splitlines()
    assert len(lines[0].split()) == 1 + 28  # an image and 14 joint offsets
    images = sorted((repo / "data/Synth14/images").glob("*.png"))
    assert cv2.imread(str(images[0])).shape[:2] == (240, 320)

    # the seed's commands take the same description and use the run-local nets
    m1 = "models/deeppose/snapshot/deeppose_iter_2.caffemodel"
    m2 = "models/deeppose_refine/snapshot/deeppose_refine_iter_2.caffemodel"
    out = run([sys.executable, "models/deeppose_refine/pytest.py", m1, m2, str(images[0]), "--out", "o.png",
               "--dataset", "synth14.py"], repo)
    assert "stage 2 joints" in out and "head_top" not in out and "  head " in out

    # models/ now holds this dataset's outputs: a run on another dataset refuses to reuse them
    r = subprocess.run(["bash", "deeppose_train.sh"], cwd=repo, env={**os.environ, **TINY}, capture_output=True, text=True)
    assert r.returncode == 1 and "models/ holds the outputs of a run on Synth14, not K2HPD" in r.stderr


def test_what_the_description_cannot_fix_stops_the_run(tmp_path):
    """A net field that does not follow from the description (here a grey-image input) stops the
    driver before any step, naming the prototxt, layer, field and the value it must have."""
    repo = copy_repository(tmp_path)
    deploy = repo / "models/deeppose/deeppose.prototxt"
    deploy.write_text(deploy.read_text().replace("dim: 1 dim: 3 dim: 227", "dim: 1 dim: 1 dim: 227"))
    r = subprocess.run(["bash", "deeppose_train.sh"], cwd=repo, env={**os.environ, **TINY}, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert ("models/deeppose/deeppose.prototxt: layer 'data' input_param.shape.dim[1] is 1; it must be 3 "
            "(images are read in colour)") in r.stderr
    assert not (repo / "data/K2HPD/depth_data").exists() and not (repo / "models/deeppose/run").exists()
