"""The dataset description, the K2HPD annotation reader/writer, metrics and drawings."""

import numpy as np
import pytest

from deeppose.datasets import K2HPD
from deeppose.dataset import (DatasetDescription, flip_joints, read_annotations,
                              torso_diameter, write_annotations)
from deeppose.draw import LEFT, RIGHT, contact_sheet
from deeppose.metrics import euclidean_loss, pcp, pdj

# a toy dataset: three joints in a row, the outer two a left/right pair
TOY = DatasetDescription(name="toy", size=(10, 8), joint_names=("right_hand", "centre", "left_hand"),
                         limbs=((0, 1), (1, 2)), torso_joints=(0, 2), flip_pairs=((0, 2),),
                         alpha=1.0, root="data/toy", image_dir="images", train_annotations="train.txt",
                         test_annotations="test.txt", image_name_format="{:03d}.png")


def test_k2hpd_description_is_consistent():
    d = K2HPD
    names = d.joint_names
    for right, left in d.flip_pairs:
        assert names[right].startswith("right_") and names[left] == names[right].replace("right_", "left_")
    unpaired = set(range(d.num_joints)) - {i for p in d.flip_pairs for i in p}
    assert not any(names[i].startswith(("left_", "right_")) for i in unpaired)
    p = d.flip_permutation
    assert (p[p] == np.arange(d.num_joints)).all()
    assert (names[d.torso_joints[0]], names[d.torso_joints[1]]) == ("right_shoulder", "left_hip")
    assert {names[i].split("_")[-1] for limb in d.limbs for i in limb} >= {"elbow", "knee", "head"}


def test_description_rejects_bad_indices():
    with pytest.raises(ValueError, match="out of range"):
        DatasetDescription(**{**TOY.__dict__, "limbs": ((0, 3),)})
    with pytest.raises(ValueError, match="two flip pairs"):
        DatasetDescription(**{**TOY.__dict__, "flip_pairs": ((0, 2), (2, 1))})


def test_annotations_round_trip(tmp_path):
    items = [("000.png", np.array([[1.5, 2.25], [3, 4], [5.125, 6]])), ("001.png", np.zeros((3, 2)))]
    path = tmp_path / "a.txt"
    write_annotations(path, items)
    assert path.read_text().splitlines()[0] == "000.png 1.500,2.250,3.000,4.000,5.125,6.000"
    back = read_annotations(path, TOY)
    assert [n for n, _ in back] == ["000.png", "001.png"]
    for (_, a), (_, b) in zip(items, back):
        np.testing.assert_array_equal(a, b)


def test_reader_strips_nul_bytes_skips_blank_lines_and_ignores_extra_numbers(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\x00\x00000.png 1,2,3,4,5,6,7,8,9\n\n001.png 6,5,4,3,2,1\n")
    back = read_annotations(path, TOY)
    assert [n for n, _ in back] == ["000.png", "001.png"]
    np.testing.assert_array_equal(back[0][1], [[1, 2], [3, 4], [5, 6]])


@pytest.mark.parametrize("line, message", [("000.png 1,2,3,4,5", "has 5 numbers, 6 needed"),
                                           ("000.png", "has 0 numbers"),
                                           ("000.png 1,2,x,4,5,6", "non-numeric")])
def test_reader_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("001.png 1,2,3,4,5,6\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.txt:2: .*{message}"):
        read_annotations(path, TOY)


def test_flip_joints_mirrors_and_swaps():
    joints = np.array([[1.0, 2.0], [5.0, 3.0], [9.0, 4.0]])
    flipped = flip_joints(joints, TOY.width, TOY)
    np.testing.assert_array_equal(flipped, [[1.0, 4.0], [5.0, 3.0], [9.0, 2.0]])
    np.testing.assert_array_equal(flip_joints(flipped, TOY.width, TOY), joints)
    batch = np.stack([joints, joints + 1])
    np.testing.assert_array_equal(flip_joints(batch, TOY.width, TOY)[1], flip_joints(joints + 1, TOY.width, TOY))


def test_torso_diameter():
    joints = np.array([[[0.0, 0.0], [9.0, 9.0], [3.0, 4.0]], [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    np.testing.assert_allclose(torso_diameter(joints, TOY), [5.0, 0.0])


def test_pdj_hand_computed():
    gt = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[0, :, 0] = [1.0, 2.0, 4.0]  # image 0: errors 1, 2, 4 with diameter 10
    pred[1, :, 1] = [0.0, 3.0, 0.5]  # image 1: errors 0, 3, 0.5 with diameter 0
    score = pdj(pred, gt, diam=[10.0, 0.0], fractions=[0.1, 0.2, 0.5])
    # fraction 0.1 (threshold 1 / 0): errors 1 yes, 2 no, 4 no | 0 yes, 3 no, 0.5 no
    np.testing.assert_allclose(score.overall, [2 / 6, 3 / 6, 4 / 6])
    np.testing.assert_allclose(score.per_item, [[1, 0, 0], [1, 0.5, 0], [1, 0.5, 0.5]])
    assert np.isfinite(score.per_item).all()


def test_pcp_hand_computed():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [10.0, 4.0]]])  # limb lengths 10 and 4
    pred = gt + [[[5.0, 0.0], [0.0, 2.0], [0.0, 2.5]]]
    # limb (0,1): ends off by 5 and 2, half length 5 -> correct; limb (1,2): 2 and 2.5 > 2 -> wrong
    score = pcp(pred, gt, TOY.limbs)
    assert score.overall == 0.5
    np.testing.assert_array_equal(score.per_item, [1.0, 0.0])


def test_euclidean_loss_is_caffe_normalised():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [3.0, 4.0]
    assert euclidean_loss(pred, gt) == pytest.approx(25 / (2 * 12))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="expected two"):
        pdj(np.zeros((1, 3, 2)), np.zeros((1, 2, 2)), [1.0])


def test_contact_sheet_draws_sides_in_their_colours(tmp_path):
    image = np.zeros((40, 60), np.uint8)
    joints = np.array([[10.0, 20.0], [30.0, 20.0], [50.0, 20.0]])
    sheet = contact_sheet([image] * 3, [joints] * 3, tmp_path / "s.png", TOY, cols=2)
    assert sheet.shape == (80, 120, 3) and (tmp_path / "s.png").stat().st_size > 0
    assert tuple(sheet[19, 9]) == RIGHT and tuple(sheet[19, 49]) == LEFT
