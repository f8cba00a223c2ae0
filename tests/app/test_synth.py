"""The synthetic K2HPD generator: layout, determinism, annotations on the body, mirror symmetry."""

import cv2
import numpy as np
import pytest

from deeppose.datasets import K2HPD
from deeppose.dataset import flip_joints, read_annotations
from deeppose.synth import RAW_DIR, make_dataset, render_sample
from deeppose.synth.body import PART_MIRROR, PARTS, pose_body, ry, sample_pose, sample_shape
from deeppose.synth.kinect import NOISE_PER_M2, to_gray8
from deeppose.synth.render import Plane, render
from deeppose.synth.scene import MARGIN, NONE
from tests.app.conftest import file_bytes

SEED = 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("k2hpd")
    make_dataset(K2HPD, out, n_train=4, n_test=2, seed=SEED, raw16=True)
    return out


def test_layout_and_annotations(dataset):
    train = read_annotations(dataset / K2HPD.train_annotations, K2HPD)
    test = read_annotations(dataset / K2HPD.test_annotations, K2HPD)
    assert [n for n, _ in train + test] == [K2HPD.image_name(i) for i in range(6)]
    margin = MARGIN * K2HPD.width
    for name, joints in train + test:
        image = cv2.imread(str(dataset / K2HPD.image_dir / name), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.shape == (K2HPD.height, K2HPD.width)
        assert ((joints >= margin) & (joints <= np.array(K2HPD.size) - margin)).all()
        raw = cv2.imread(str(dataset / "depth_data" / RAW_DIR / name), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16
        assert np.abs(to_gray8(raw / 1000.0).astype(int) - image).max() <= 1


def test_same_seed_same_bytes_and_parts_equal_the_whole(dataset, tmp_path):
    make_dataset(K2HPD, tmp_path, n_train=4, n_test=2, seed=SEED, raw16=True, workers=2)
    assert file_bytes(tmp_path) == file_bytes(dataset)
    sample = render_sample(K2HPD, SEED, 5)
    assert cv2.imencode(".png", sample.image)[1].tobytes() == (dataset / K2HPD.image_dir / K2HPD.image_name(5)).read_bytes()
    np.testing.assert_allclose(read_annotations(dataset / K2HPD.test_annotations, K2HPD)[1][1], sample.joints, atol=5e-4)
    assert not np.array_equal(render_sample(K2HPD, SEED + 1, 5).image, sample.image)


def test_joints_lie_on_the_person():
    for index in range(40):
        sample = render_sample(K2HPD, SEED, index)
        scene = sample.scene
        person_depth, labels = scene.render(with_objects=False)
        col, row = np.floor(sample.joints).astype(int).T
        assert (labels[row, col] >= 0).all(), f"sample {index}: a joint misses the body"
        background, _ = render(scene.camera, [p for p in scene.prims if isinstance(p, Plane)], NONE)
        z = person_depth[row, col]
        assert (z < background[row, col]).all()
        # an unoccluded joint's pixel measures the person's depth (up to the sensor noise)
        seen = (sample.labels[row, col] >= 0) & (sample.depth[row, col] > 0)
        error = np.abs(sample.depth[row, col] - z)[seen]
        assert (error <= 3 * NOISE_PER_M2 * z[seen] ** 2 + 1e-4).all()


def test_people_face_the_way_their_feet_point_and_right_is_right():
    rng = np.random.default_rng(0)
    up = np.array([0.0, 1.0, 0.0])
    for _ in range(20):
        _, angles, _ = sample_pose(rng)
        joints, prims = pose_body(sample_shape(rng), angles, ry(0.0))
        feet = {p.label: p.c for p in prims if PARTS[p.label].endswith("_foot")}
        forward = sum(feet[PARTS.index(f"{s}_foot")] - joints[f"{s}_ankle"] for s in ("left", "right"))
        # a person's left is X when up is Y and forward is Z (right-handed)
        assert np.cross(joints["left_hip"] - joints["right_hip"], up) @ forward > 0


def test_right_hip_is_on_the_image_left_when_facing_the_camera():
    seen = 0
    for index in range(60):
        scene = render_sample(K2HPD, SEED, index).scene
        feet = {PARTS[p.label]: p.c for p in scene.prims if p.label >= 0 and PARTS[p.label].endswith("_foot")}
        forward = sum(feet[f"{s}_foot"] - scene.joints[f"{s}_ankle"] for s in ("left", "right"))
        if forward[2] < -0.8 * np.hypot(forward[0], forward[2]):  # toes point at the camera
            seen += 1
            x = dict(zip(K2HPD.joint_names, scene.joints2d(K2HPD.joint_names)[:, 0]))
            assert x["right_hip"] < x["left_hip"]
    assert seen >= 5


def test_mirrored_scene_renders_the_flipped_image_with_flipped_joints():
    for index in range(5):
        sample = render_sample(K2HPD, SEED, index)
        mirror = sample.scene.mirrored()
        depth, labels = mirror.render()
        np.testing.assert_array_equal(depth, sample.true_depth[:, ::-1])
        person = sample.labels >= 0
        expected = np.where(person, PART_MIRROR[np.maximum(sample.labels, 0)], sample.labels)
        np.testing.assert_array_equal(labels, expected[:, ::-1])
        np.testing.assert_allclose(mirror.joints2d(K2HPD.joint_names),
                                   flip_joints(sample.joints, K2HPD.width, K2HPD), atol=1e-9)


def test_render_sizes_and_label_classes():
    sample = render_sample(K2HPD, SEED, 0, size=(128, 106))
    assert sample.image.shape == sample.labels.shape == (106, 128)
    assert (sample.labels >= 0).any() and (sample.labels < 0).any() and NONE < 0
    assert sample.depth.dtype == np.float32 and (sample.image[sample.depth == 0] == 0).all()
