"""LSP (Leeds Sports Pose): 14 joints, annotations in ``joints.mat``, colour images ``images/``.

Two layouts of ``joints``: the original set's 3 x 14 x N (2000 images, im0001.jpg ...; the first
half is the training set, the second the test set) and the extended set's (LSPET) 14 x 3 x N
(10000 training images, im00001.jpg ...; it has no test set). The third value of a joint is its
visibility, with opposite conventions: in the original set 1 marks an occluded joint (0 visible),
in the extended set 1 marks a visible one.

Invisible joints: the annotators placed occluded joints where they estimated them, and DeepPose
trains and scores all 14 joints (EuclideanLoss cannot leave a coordinate out), so an invisible
joint is kept with its estimated position. An image with a joint that has no position (not a
finite number, or at a coordinate <= 0, i.e. outside the image) is left out of its split.
MATLAB coordinates (pixel k's centre at k) are moved by -0.5 to ours (its centre at k - 0.5).
"""

from __future__ import annotations

import numpy as np

from ..dataset import DatasetDescription, annotation_paths
from .mat import MATLAB_PIXEL_OFFSET, load_variable

JOINTS = 14
NAME_FORMATS = {"original": "im{:04d}.jpg", "extended": "im{:05d}.jpg"}


def read_joints_mat(path) -> tuple[str, np.ndarray, np.ndarray]:
    """(layout, joints (N, 14, 2) in our continuous pixel coordinates, visible (N, 14) bool)."""
    a = np.asarray(load_variable(path, "joints"), float)
    if a.ndim == 2:  # MATLAB drops a trailing 1: one image
        a = a[..., None]
    if a.ndim == 3 and a.shape[:2] == (3, JOINTS):
        layout, xy, visible = "original", a[:2].transpose(2, 1, 0), a[2].T == 0
    elif a.ndim == 3 and a.shape[:2] == (JOINTS, 3):
        layout, xy, visible = "extended", a[:, :2].transpose(2, 0, 1), a[:, 2].T != 0
    else:
        raise ValueError(f"{path}: 'joints' is {'x'.join(map(str, a.shape))}; LSP's is 3x14xN "
                         f"(original) or 14x3xN (extended)")
    return layout, xy - MATLAB_PIXEL_OFFSET, visible


def read_lsp(desc: DatasetDescription, split: str) -> list[tuple[str, np.ndarray]]:
    """The split's ``(image name, joints (14, 2))`` pairs from the split's joints.mat."""
    path = annotation_paths(desc.root, desc)[split]
    layout, xy, _ = read_joints_mat(path)
    n = len(xy)
    if layout == "original":
        indices = range(n // 2) if split == "train" else range(n // 2, n)
    elif split == "train":
        indices = range(n)
    else:
        raise ValueError(f"{path}: the extended (14x3xN) layout has training images only; "
                         "the test annotations must be an original-layout joints.mat")
    positioned = np.isfinite(xy).all(axis=(1, 2)) & (xy > -MATLAB_PIXEL_OFFSET).all(axis=(1, 2))
    return [(NAME_FORMATS[layout].format(i + 1), xy[i]) for i in indices if positioned[i]]


DATASET = DatasetDescription(
    name="LSP",
    size=(150, 150),  # the frame its images, of many sizes, are letterboxed into (see the README)
    joint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
        "neck", "head_top",
    ),
    limbs=((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13)),
    torso_joints=(8, 3),  # right shoulder - left hip
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    alpha=0.8,
    root="data/LSP",
    image_dir="images",
    train_annotations="joints.mat",
    test_annotations="joints.mat",
    image_name_format=NAME_FORMATS["original"],
    reader=read_lsp,
)
