"""Bad input and faults, as a user meets them: each case runs the real command on a tiny input and
checks the exit status, that the message names the place (file:line, database, option), and that
nothing was lost or half-written.

This module holds the application's cases (make_synthetic_k2hpd, get_stage, the model scripts,
the driver's report check); the engine's are in tests/engine/test_bad_input.py (its commands) and
tests/engine/test_bad_input_data.py (the data tools and readers).
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.formats.protoio import parse_prototxt
from caffe.proto import caffe_pb2
from deeppose import preprocess
from deeppose.datasets import K2HPD
from deeppose.dataset import write_annotations
from deeppose.synth import render_sample
from deeppose.synth.kinect import to_mm16
from tests import conftest
from tests.app.conftest import deploy_input_shape, file_bytes
from tests.conftest import failed, run_command as run

ROOT = Path(conftest.ROOT)
DATA = Path(K2HPD.root)
IMAGES = DATA / K2HPD.image_dir


# -- make_synthetic_k2hpd.py -------------------------------------------------------------------------
SYNTH = [sys.executable, ROOT / "tools/make_synthetic_k2hpd.py", "--workers", "1"]


def test_synthetic_generator_refuses_to_overwrite_a_data_set(tmp_path):
    out = tmp_path / "K2HPD"
    assert run(SYNTH + ["--out", out, "--train", 2, "--test", 1]).returncode == 0
    before = file_bytes(out)
    r = run(SYNTH + ["--out", out, "--train", 3, "--test", 1, "--seed", 5])
    failed(r, out, K2HPD.train_annotations, K2HPD.test_annotations, "3 files in depth_data/depth_images", "--force")
    assert file_bytes(out) == before
    r = run(SYNTH + ["--out", out, "--train", 3, "--test", 1, "--seed", 5, "--force"])
    assert r.returncode == 0 and "stale" in r.stdout
    assert (out / K2HPD.train_annotations).read_bytes() != before[Path(K2HPD.train_annotations)]
    assert not list(out.glob(".tmp-*"))


def test_synthetic_generator_refuses_images_without_annotations(tmp_path):
    """Images copied in before their annotations are a data set too."""
    (tmp_path / K2HPD.image_dir).mkdir(parents=True)
    (tmp_path / K2HPD.image_dir / "real.png").write_bytes(b"mine")
    failed(run(SYNTH + ["--out", tmp_path, "--train", 1, "--test", 1]), "1 files in depth_data/depth_images", "--force")
    assert (tmp_path / K2HPD.image_dir / "real.png").read_bytes() == b"mine"
    assert not (tmp_path / K2HPD.train_annotations).exists()


def test_synthetic_generator_clears_what_an_interrupted_run_left(tmp_path):
    orphan = tmp_path / ".tmp-synthetic-killed" / K2HPD.image_dir
    orphan.mkdir(parents=True)
    (orphan / "00000000.png").write_bytes(b"half")
    assert run(SYNTH + ["--out", tmp_path, "--train", 1, "--test", 1]).returncode == 0
    assert not list(tmp_path.glob(".tmp-*"))
    assert sorted(p.name for p in (tmp_path / K2HPD.image_dir).iterdir()) == ["00000000.png", "00000001.png"]


@pytest.mark.parametrize("args, name", [(["--train", "-5", "--test", "1"], "--train"),
                                        (["--train", "2", "--test", "0"], "--test"),
                                        (["--train", "x", "--test", "1"], "--train"),
                                        (["--train", "2", "--test", "1", "--size", "0x4"], "--size")])
def test_synthetic_generator_refuses_bad_counts(tmp_path, args, name):
    r = run(SYNTH + ["--out", tmp_path / "out"] + args)
    assert r.returncode == 2 and name in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# -- get_stage.py --stage 1 ----------------------------------------------------------------------------
def dataset(root, n_train=4, n_test=2, images=None):
    """A K2HPD-layout set in `root` (the working directory of the commands): n_train + n_test
    distinct 8-bit images (or `images`) and annotations, with the repository's dataset choice and
    nets (which get_stage.py reads)."""
    for f in ["globalvar.py", *(p.relative_to(ROOT) for p in ROOT.glob("models/*/*.prototxt"))]:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes((ROOT / f).read_bytes())
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n_train + n_test):
        image = images[i] if images else rng.integers(1, 255, (K2HPD.height, K2HPD.width), dtype=np.uint8)
        cv2.imwrite(str(root / IMAGES / K2HPD.image_name(i)), image)
        items.append((K2HPD.image_name(i), rng.uniform(20, 200, (K2HPD.num_joints, 2))))
    write_annotations(root / DATA / K2HPD.train_annotations, items[:n_train])
    write_annotations(root / DATA / K2HPD.test_annotations, items[n_train:])
    return items


STAGE1 = [sys.executable, ROOT / "data/K2HPD/get_stage.py", "--stage", "1", "--val-fraction", "0.25"]


def test_mirror_images_follow_their_source(tmp_path):
    """A mirror made from an earlier image (a regenerated set, a dataset copied over) is remade."""
    dataset(tmp_path)
    assert run(STAGE1, cwd=tmp_path).returncode == 0
    mirrors = sorted((tmp_path / IMAGES).glob("*m.png"))
    assert len(mirrors) == 3
    new = np.random.default_rng(1).integers(0, 255, (K2HPD.height, K2HPD.width), dtype=np.uint8)
    source = mirrors[0].with_name(mirrors[0].name.replace("m.png", ".png"))
    cv2.imwrite(str(source), new)
    mirrors[1].write_bytes(b"damaged")
    assert run(STAGE1, cwd=tmp_path).returncode == 0
    for mirror in mirrors:
        original = cv2.imread(str(mirror.with_name(mirror.name.replace("m.png", ".png"))), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(mirror), cv2.IMREAD_UNCHANGED), cv2.flip(original, 1))
    assert not list((tmp_path / IMAGES).glob(".tmp-*"))


def test_nan_coordinates_are_refused_with_file_and_line(tmp_path):
    dataset(tmp_path)
    annotations = tmp_path / DATA / K2HPD.train_annotations
    lines = annotations.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(" ")[1].split(",")[0], "nan", 1)
    annotations.write_text("\n".join(lines) + "\n")
    failed(run(STAGE1, cwd=tmp_path), f"{DATA / K2HPD.train_annotations}:2", "'nan'")
    assert not (tmp_path / DATA / "stage1").exists()


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_annotation_file_is_refused(tmp_path, split):
    dataset(tmp_path)
    name = K2HPD.train_annotations if split == "train" else K2HPD.test_annotations
    (tmp_path / DATA / name).write_text("")
    failed(run(STAGE1, cwd=tmp_path), DATA / name, "no annotation lines")
    assert not (tmp_path / DATA / "stage1").exists()


@pytest.mark.parametrize("index", [0, 5])  # a training image, a test image
def test_16bit_training_image_is_refused(tmp_path, index):
    """convert_imageset would read it as value/256: the stage lists refuse it, naming it."""
    dataset(tmp_path)
    name = K2HPD.image_name(index)
    cv2.imwrite(str(tmp_path / IMAGES / name), np.full((K2HPD.height, K2HPD.width), 3000, np.uint16))
    failed(run(STAGE1, cwd=tmp_path), IMAGES / name, "16-bit", "8-bit")
    assert not (tmp_path / DATA / "stage1").exists()


# -- the model scripts ----------------------------------------------------------------------------------
def test_16bit_depth_png_is_read_at_its_real_depth(tmp_path):
    """A raw 16-bit millimetre PNG gives the description's 8-bit encoding, not value/256."""
    sample = render_sample(K2HPD, 0, 3)
    cv2.imwrite(str(tmp_path / "raw.png"), to_mm16(sample.depth))
    cv2.imwrite(str(tmp_path / "grey.png"), sample.image)
    raw, grey = preprocess.load_image(tmp_path / "raw.png", K2HPD), preprocess.load_image(tmp_path / "grey.png", K2HPD)
    assert raw.shape == grey.shape == (K2HPD.height, K2HPD.width, 3) and raw.dtype == np.uint8
    assert np.abs(raw.astype(int) - grey).max() <= 1  # millimetre rounding
    assert np.abs(cv2.imread(str(tmp_path / "raw.png")).astype(int) - grey).max() > 100  # what OpenCV alone gives


def test_16bit_colour_png_is_refused_by_pytest_py(tmp_path):
    cv2.imwrite(str(tmp_path / "colour16.png"), np.full((8, 8, 3), (1000, 2000, 3000), np.uint16))
    r = run([sys.executable, ROOT / "models/deeppose/pytest.py", tmp_path / "w.caffemodel", tmp_path / "colour16.png"],
            cwd=ROOT)
    failed(r, tmp_path / "colour16.png", "16-bit colour")


@pytest.fixture
def app(tmp_path):
    """A working directory with the stage-1 model files and a tiny data set."""
    for name in ("deeppose.prototxt", "deeppose_train_test.prototxt", "pyaccuracy.py"):
        (tmp_path / "models/deeppose").mkdir(parents=True, exist_ok=True)
        (tmp_path / "models/deeppose" / name).write_bytes((ROOT / "models/deeppose" / name).read_bytes())
    dataset(tmp_path, 2, 2)
    shape = deploy_input_shape(ROOT / "models/deeppose/deeppose.prototxt")
    mean = caffe.io.array_to_blobproto(np.full((1, *shape[1:]), 100, np.float32))
    (tmp_path / "models/deeppose/train_mean.binaryproto").write_bytes(mean.SerializeToString())
    return tmp_path


def unrelated_weights(path):
    """The caffemodel of a net sharing no layer name with DeepPose's."""
    net = caffe.Net.from_param(parse_prototxt(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } }\n'
        'layer { name: "other" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }',
        caffe_pb2.NetParameter()), caffe.TEST)
    net.save(str(path))
    return path


@pytest.mark.slow
def test_pyaccuracy_refuses_an_unrelated_nets_weights_and_keeps_the_last_report(app):
    weights = unrelated_weights(app / "other.caffemodel")
    report = app / "models/deeppose/accuracy.json"
    report.write_text('{"images": 2, "stages": {"stage 1": {}}}\n')
    before = report.read_bytes()
    r = run([sys.executable, "models/deeppose/pyaccuracy.py", weights.name, "--out", report], cwd=app)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "other.caffemodel" in r.stdout + r.stderr
    assert report.read_bytes() == before  # not emptied, not half-written
    assert not list(report.parent.glob(".tmp-*"))


def test_an_incomplete_accuracy_report_does_not_count_as_done(tmp_path):
    """The driver's check (its use is tested in test_e2e.py): emptied, cut or foreign JSON."""
    from deeppose.evaluate import read_report, write_report
    report = tmp_path / "accuracy.json"
    for content in ["", '{"images": 2, "stag', '{"images": 2}', "[]"]:
        report.write_text(content)
        with pytest.raises(ValueError, match=f"{report}: not a complete accuracy report"):
            read_report(report)
    report.write_text(json.dumps({"images": 2, "stages": {"stage 1": {"pcp": 0.5}}}))
    assert read_report(report)["images"] == 2
    write_report(report, {"images": 3, "seconds": 1.5, "stages": {"stage 1": {"pcp": 0.25}}})
    assert read_report(report) == {"images": 3, "stages": {"stage 1": {"pcp": 0.25}}}  # no timing
