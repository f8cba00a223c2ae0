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

from tests.app.conftest import TINY, copy_repository, run_tiny as run  # the same copy and schedule as test_e2e

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


SIZES = [(320, 240), (200, 300), (480, 240), (257, 193)]  # the description's own size, a tall, a wide, an odd one


def test_a_dataset_of_mixed_image_sizes_is_scored_in_each_images_own_pixels(tmp_path):
    """Images of several sizes (made in the test): the run letterboxes them into the description's
    frame for training, and its outputs, predictions and report are in each image's own pixels."""
    import numpy as np

    from deeppose.dataset import read_annotations, write_annotations
    from deeppose.evaluate import scores
    from deeppose.synth import render_sample

    repo = copy_repository(tmp_path)
    (repo / "synth14.py").write_text(DESCRIPTION)
    namespace = {}
    exec(DESCRIPTION, namespace)
    desc = namespace["DATASET"]
    root = repo / desc.root
    (root / desc.image_dir).mkdir(parents=True)
    items, sizes = [], {}
    for i in range(24):
        sample = render_sample(desc, 0, i, SIZES[i % 4])
        name = desc.image_name(i)
        assert cv2.imwrite(str(root / desc.image_dir / name), sample.image)
        items.append((name, sample.joints))
        sizes[f"{desc.root}/{desc.image_dir}/{name}"] = SIZES[i % 4]
    write_annotations(root / desc.train_annotations, items[:16])
    write_annotations(root / desc.test_annotations, items[16:])
    truth = {f"{desc.root}/{desc.image_dir}/{n}": j
             for split in ("train", "test") for n, j in read_annotations(root / getattr(desc, f"{split}_annotations"), desc)}

    out = run(["bash", "deeppose_train.sh", "--dataset", "synth14.py"], repo)
    assert "18 images not of the description's size 320x240: letterboxed into it" in out
    frames = json.loads((root / "stage1/frames.json").read_text())
    assert sorted(r["image"] for r in frames.values()) == sorted(n for n, s in sizes.items() if s != (320, 240))
    assert all(cv2.imread(str(repo / copy)).shape[:2] == (240, 320) for copy in frames)

    def outputs(path, bounded=False):
        """An output file's rows, checked: the truth is the annotation, in the image's own pixels;
        `bounded`: the mean predicted joint lies in the image (a net of 2 iterations predicts about
        the centre of its frame)."""
        rows = [line.split() for line in path.read_text().splitlines()]
        for row in rows:
            values = np.array(row[1:], float).reshape(2, 14, 2)
            assert np.allclose(values[0], truth[row[0]], atol=1e-3)
            centre = values[1].mean(axis=0)
            assert not bounded or ((centre > 0) & (centre < sizes[row[0]])).all(), (row[0], centre)
        return rows

    assert len(outputs(root / "stage1/output_val.txt", bounded=True)) == 2  # the held-out part of the 16 training images
    m1 = "models/deeppose/snapshot/deeppose_iter_2.caffemodel"
    m2 = "models/deeppose_refine/snapshot/deeppose_refine_iter_2.caffemodel"
    run([sys.executable, "models/deeppose/pyoutput.py", m1, "--split", "test", "--dataset", "synth14.py"], repo)
    assert len(outputs(root / "stage1/output_test.txt", bounded=True)) == 8

    # the report's scores are those of the cascade's predictions against the annotations, in the images'
    # pixels (a refiner of 2 iterations moves the joints anywhere: no bounds)
    run([sys.executable, "models/deeppose/pyoutput.py", m1, m2, "--split", "test", "--dataset", "synth14.py"], repo)
    rows = outputs(root / "stage2/output_test.txt")
    assert sorted(r[0] for r in rows) == sorted(list(truth)[16:])
    pred = np.array([r[1:] for r in rows], float)[:, 28:].reshape(-1, 14, 2)
    ours = scores(pred, np.stack([truth[r[0]] for r in rows]), desc)
    report = json.loads((repo / "models/deeppose_refine/accuracy.json").read_text())["stages"]
    assert report["stage 2"]["loss"] == pytest.approx(ours["loss"], rel=1e-3)
    assert report["stage 2"]["pdj"] == pytest.approx(ours["pdj"], abs=0.02)
    assert report["stage 2"]["pcp"] == pytest.approx(ours["pcp"], abs=0.02)
    # the mean pose (of the stage-1 training list, about the frame's centre) is put into each test image's pixels
    targets = np.array([line.split()[1:] for line in (root / "stage1/train.txt").read_text().splitlines()], float)
    assert json.loads((root / "stage1/targets.json").read_text()) == {"units": "pixels"}  # the driver's default
    pose = targets.mean(axis=0).reshape(14, 2) + np.array([160, 120])  # pixel offsets from the frame's centre
    by_image = {r["image"]: r for r in frames.values()}
    test_images = list(truth)[16:]
    baseline = [(pose - by_image[n]["offset"]) / by_image[n]["scale"] if n in by_image else pose for n in test_images]
    assert report["mean pose"]["loss"] == pytest.approx(scores(np.stack(baseline), np.stack([truth[n] for n in test_images]),
                                                               desc)["loss"], rel=1e-4)

    # pytest.py predicts an image of another size in its own pixels, as pyoutput.py did (stage 2 loosely:
    # a batch of another size moves stage 1 by rounding errors, which an untrained refiner magnifies)
    image = next(r for r in rows if sizes[r[0]] == (200, 300))[0]
    out = run([sys.executable, "models/deeppose_refine/pytest.py", m1, m2, image, "--out", "o.png",
               "--dataset", "synth14.py"], repo)
    for stage, atol in ((1, 0.01), (2, 1.0)):
        printed = out[out.index(f"stage {stage} joints"):].splitlines()[1:15]
        row = next(r for r in outputs(root / f"stage{stage}/output_test.txt") if r[0] == image)
        assert np.allclose([[float(v) for v in line.split()[1:]] for line in printed],
                           np.array(row[29:], float).reshape(14, 2), atol=atol)
