"""A new dataset defined by a description file only (14 joints at 320x240, made by the synthetic
generator) runs through ./deeppose_train.sh --dataset FILE.py on a tiny schedule: stage 1, the
refiner and the accuracy report with its joint names. The committed nets (15 joints) are refused
first, naming the prototxt, the field and the value it must have; set as told, the run completes."""

import json
import os
import re
import shutil
import subprocess

import cv2
import pytest

from test_e2e import FILES, ROOT, TINY, run  # the same copy of the repository, the same tiny schedule

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
    repo = tmp_path
    for f in FILES:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, repo / f)
    (repo / "synth14.py").write_text(DESCRIPTION)
    args = ["bash", "deeppose_train.sh", "--dataset", "synth14.py"]
    r = subprocess.run(args, cwd=repo, env={**os.environ, **TINY}, capture_output=True, text=True)
    assert r.returncode == 1
    assert ("models/deeppose/deeppose.prototxt: layer 'predict' inner_product_param.num_output is 30; "
            "it must be 28 (2 x the 14 joints of Synth14)") in r.stderr
    assert "deeppose_train_test.prototxt: layer 'data' data_param.label_num is 30; it must be 28" in r.stderr
    images = sorted((repo / "data/Synth14/images").glob("*.png"))
    assert len(images) == 24 and not (repo / "data/Synth14/stage1").exists()

    # the user sets the values the error names
    for net in ("deeppose/deeppose.prototxt", "deeppose/deeppose_train_test.prototxt"):
        path = repo / "models" / net
        text = re.sub(r"(name: \"predict\".*?num_output: )30", r"\g<1>28", path.read_text(), flags=re.S)
        path.write_text(text.replace("label_num: 30", "label_num: 28"))
    path = repo / "models/deeppose_refine/deeppose_refine.prototxt"
    path.write_text(path.read_text().replace("dim: 15 dim: 3", "dim: 14 dim: 3"))

    out = run(args, repo)
    assert "step data: done already" in out
    report = json.loads((repo / "models/deeppose_refine/accuracy.json").read_text())
    assert report["images"] == 8 and list(report["stages"]) == ["mean pose", "stage 1", "stage 2"]
    for s in report["stages"].values():
        assert list(s["mean_error_px"]) == list(JOINTS)
    assert "right_shoulder" in out and "head" in out  # the per-joint table of the printed report
    lines = (repo / "data/Synth14/stage1/train.txt").read_text().splitlines()
    assert len(lines[0].split()) == 1 + 28  # an image and 14 joint offsets
    assert cv2.imread(str(images[0])).shape[:2] == (240, 320)

    # models/ now holds this dataset's outputs: a run on another dataset refuses to reuse them
    r = subprocess.run(["bash", "deeppose_train.sh"], cwd=repo, env={**os.environ, **TINY}, capture_output=True, text=True)
    assert r.returncode == 1 and "models/ holds the outputs of a run on Synth14, not K2HPD" in r.stderr
