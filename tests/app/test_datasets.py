"""The dataset descriptions and readers (LSP, FLIC on small files written in their formats with
scipy.io.savemat), the choice of a run's dataset, and the nets' check against a description."""

import os

import numpy as np
import pytest
from scipy.io import savemat

from deeppose import datasets, nets
from deeppose.nets import REFINE, STAGE1
from deeppose.dataset import read_split
from deeppose.datasets import FLIC, K2HPD, LSP
from deeppose.datasets.flic import COORD_INDEX, POINTS
from tests.app.conftest import TWO_JOINTS
from tests.conftest import ROOT

RNG = np.random.default_rng(0)


def lsp_root(tmp_path, joints):
    (tmp_path / LSP.root).mkdir(parents=True)
    savemat(tmp_path / LSP.root / LSP.train_annotations, {"joints": joints})
    return tmp_path


def test_lsp_original_layout_halves_and_occluded_joints_kept(tmp_path, monkeypatch):
    xy = RNG.uniform(1, 150, (4, 14, 2))  # MATLAB coordinates of 4 images
    occluded = np.zeros((4, 14))
    occluded[1, 3] = 1  # the original set marks an occluded joint with 1
    joints = np.concatenate([xy, occluded[..., None]], axis=2).transpose(2, 1, 0)  # 3 x 14 x 4
    monkeypatch.chdir(lsp_root(tmp_path, joints))
    train, test = read_split(LSP, "train"), read_split(LSP, "test")
    assert [n for n, _ in train] == ["im0001.jpg", "im0002.jpg"] and [n for n, _ in test] == ["im0003.jpg", "im0004.jpg"]
    np.testing.assert_allclose(train[1][1], xy[1] - 0.5)  # the occluded joint keeps its estimate
    np.testing.assert_allclose(test[0][1], xy[2] - 0.5)
    from deeppose.datasets.lsp import read_joints_mat
    layout, _, visible = read_joints_mat(tmp_path / LSP.root / "joints.mat")
    assert layout == "original" and not visible[1, 3] and visible.sum() == 4 * 14 - 1


def test_lsp_extended_layout_and_joints_without_position(tmp_path, monkeypatch):
    xy = RNG.uniform(1, 150, (3, 14, 2))
    visible = np.ones((3, 14))
    visible[0, 5] = 0  # the extended set marks an invisible joint with 0 ...
    xy[2, 7] = [0, 0]  # ... and one without a position: image 3 is left out
    visible[2, 7] = 0
    joints = np.concatenate([xy, visible[..., None]], axis=2).transpose(1, 2, 0)  # 14 x 3 x 3
    monkeypatch.chdir(lsp_root(tmp_path, joints))
    train = read_split(LSP, "train")
    assert [n for n, _ in train] == ["im00001.jpg", "im00002.jpg"]
    np.testing.assert_allclose(train[0][1], xy[0] - 0.5)
    from deeppose.datasets.lsp import read_joints_mat
    assert read_joints_mat(tmp_path / LSP.root / "joints.mat")[2][0, 5] == 0
    with pytest.raises(ValueError, match="training images only"):
        read_split(LSP, "test")


def test_lsp_refuses_another_shape_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(lsp_root(tmp_path, np.zeros((3, 16, 5))))
    with pytest.raises(ValueError, match=r"joints\.mat: 'joints' is 3x16x5; LSP's is 3x14xN"):
        read_split(LSP, "train")
    savemat(tmp_path / LSP.root / "joints.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match="no variable 'joints' \\(it holds other\\)"):
        read_split(LSP, "train")


def test_flic_examples_split_and_upper_body(tmp_path, monkeypatch):
    n = 5
    examples = np.zeros(n, dtype=[("filepath", object), ("coords", object), ("istrain", object),
                                  ("istest", object), ("imgdims", object)])
    coords = RNG.uniform(1, 480, (n, 2, POINTS))
    coords[:, :, 20:] = np.nan  # FLIC leaves most of its 29 points unannotated
    coords[4, 0, COORD_INDEX["right_wrist"]] = np.nan  # an example missing a kept point
    for i in range(n):
        examples[i] = (f"movie-{i:08d}.jpg", coords[i], int(i < 3), int(i >= 3), np.array([480, 720, 3]))
    (tmp_path / FLIC.root).mkdir(parents=True)
    savemat(tmp_path / FLIC.root / FLIC.train_annotations, {"examples": examples})
    monkeypatch.chdir(tmp_path)
    train, test = read_split(FLIC, "train"), read_split(FLIC, "test")
    assert [n for n, _ in train] == ["movie-00000000.jpg", "movie-00000001.jpg", "movie-00000002.jpg"]
    assert [n for n, _ in test] == ["movie-00000003.jpg"]
    rows = [COORD_INDEX[j] for j in FLIC.joint_names]
    np.testing.assert_allclose(train[2][1], coords[2][:, rows].T - 0.5)
    assert FLIC.num_joints == 11 and FLIC.joint_names[FLIC.torso_joints[0]] == "left_shoulder"


def test_descriptions_mirror_left_and_right():
    for d in (K2HPD, LSP, FLIC):
        for r, l in d.flip_pairs:
            assert d.joint_names[r].replace("right", "left") == d.joint_names[l], d.name
        assert d.joint_names[d.torso_joints[0]].split("_")[0] != d.joint_names[d.torso_joints[1]].split("_")[0]


def test_dataset_choice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="no dataset chosen"):
        datasets.selected()
    (tmp_path / "globalvar.py").write_text('DATASET = "FLIC"\n')
    assert datasets.selected() is FLIC and datasets.selected("LSP") is LSP
    (tmp_path / "mine.py").write_text(
        "from deeppose.dataset import DatasetDescription\n"
        "DATASET = DatasetDescription(name='two', size=(32, 24), joint_names=('a', 'b'), limbs=((0, 1),),\n"
        "    torso_joints=(0, 1), flip_pairs=(), alpha=1.0, root='data/two', image_dir='i',\n"
        "    train_annotations='tr.txt', test_annotations='te.txt', image_name_format='{}.png')\n")
    assert datasets.selected("mine.py").num_joints == 2
    with pytest.raises(ValueError, match="unknown dataset 'MPII'"):
        datasets.selected("MPII")
    (tmp_path / "bad.py").write_text("DATASET = 3\n")
    with pytest.raises(ValueError, match="bad.py: DATASET must be a DatasetDescription"):
        datasets.selected("bad.py")


def test_nets_are_checked_against_the_description():
    nets.check_stage1(K2HPD, STAGE1)
    nets.check_refiner(K2HPD, REFINE)
    with pytest.raises(ValueError) as e:
        nets.check_stage1(LSP, STAGE1)
    msg = str(e.value)
    committed, lsp = 2 * K2HPD.num_joints, 2 * LSP.num_joints  # the committed nets are K2HPD's
    assert (f"models/deeppose/deeppose.prototxt: layer 'predict' inner_product_param.num_output is {committed}; "
            f"it must be {lsp}") in msg
    assert (f"models/deeppose/deeppose_train_test.prototxt: layer 'data' data_param.label_num is {committed}; "
            f"it must be {lsp}") in msg
    with pytest.raises(ValueError, match=rf"deeppose_refine.prototxt: layer 'data' input_param.shape.dim\[0\] is "
                                         rf"{K2HPD.num_joints}; it must be {FLIC.num_joints} \(the deploy batch is one crop per joint"):
        nets.check_refiner(FLIC, REFINE)


@pytest.mark.slow
def test_tools_take_the_dataset(tmp_path):
    """The baseline tool scores a dataset given by a description file with its joint names; the
    synthetic generator refuses a dataset whose annotations are not text."""
    import subprocess
    import sys

    from deeppose.dataset import write_annotations
    from deeppose.stage_data import write_list
    (tmp_path / "two.py").write_text(TWO_JOINTS)
    (tmp_path / "d").mkdir()
    write_annotations(tmp_path / "d/tr.txt", [(f"{i}.png", RNG.uniform(0, 24, (2, 2))) for i in range(4)])
    write_annotations(tmp_path / "d/te.txt", [(f"{i}.png", RNG.uniform(0, 24, (2, 2))) for i in range(3)])
    write_list(tmp_path / "d/stage1/train.txt", [(f"d/i/{i}.png", RNG.uniform(-12, 12, 4)) for i in range(4)])
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "baseline_mean_pose.py"), "--dataset", "two.py"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "tested on 3 images" in r.stdout and "tip " in r.stdout and "base " in r.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_synthetic_k2hpd.py"), "--dataset", "LSP",
                        "--train", "1", "--test", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "LSP has annotation files of its own format" in r.stderr
    assert not (tmp_path / LSP.root).exists()
