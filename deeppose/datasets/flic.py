"""FLIC (Frames Labeled In Cinema): upper bodies in 720x480 film frames, annotations in
``examples.mat``: a struct array `examples` whose `coords` (2 x 29, NaN where not annotated)
hold FLIC's 29 points, `filepath` the image under ``images/``, `istrain` / `istest` the split.

The description keeps the 11 points FLIC annotates (shoulders, elbows, wrists, hips, eyes,
nose); an example with one of them not annotated (NaN) is left out of its split. MATLAB
coordinates (pixel k's centre at k) are moved by -0.5 to ours (its centre at k - 0.5).
"""

from __future__ import annotations

import numpy as np

from ..dataset import DatasetDescription, annotation_paths
from .mat import MATLAB_PIXEL_OFFSET, load_variable

POINTS = 29
# FLIC's coords rows (0-based) of the kept points, in the description's joint order
COORD_INDEX = {"left_shoulder": 0, "left_elbow": 1, "left_wrist": 2, "right_shoulder": 3, "right_elbow": 4,
               "right_wrist": 5, "left_hip": 6, "right_hip": 9, "left_eye": 12, "right_eye": 13, "nose": 16}
SPLIT_FIELD = {"train": "istrain", "test": "istest"}


def read_flic(desc: DatasetDescription, split: str) -> list[tuple[str, np.ndarray]]:
    """The split's ``(image name, joints (J, 2))`` pairs from examples.mat."""
    path = annotation_paths(desc.root, desc)[split]
    examples = np.atleast_1d(load_variable(path, "examples"))
    fields = examples.dtype.names or ()
    missing = [f for f in ("coords", "filepath", SPLIT_FIELD[split]) if f not in fields]
    if missing:
        raise ValueError(f"{path}: 'examples' has no field(s) {', '.join(missing)} (FLIC's has "
                         "coords, filepath, istrain, istest)")
    rows = [COORD_INDEX[n] for n in desc.joint_names]
    items = []
    for i, ex in enumerate(examples):
        if not bool(ex[SPLIT_FIELD[split]]):
            continue
        coords = np.asarray(ex["coords"], float)
        if coords.shape != (2, POINTS):
            raise ValueError(f"{path}: examples({i + 1}).coords is {coords.shape}, FLIC's is (2, {POINTS})")
        joints = coords[:, rows].T - MATLAB_PIXEL_OFFSET
        if np.isfinite(joints).all():
            items.append((str(ex["filepath"]), joints))
    return items


DATASET = DatasetDescription(
    name="FLIC",
    size=(720, 480),
    joint_names=tuple(COORD_INDEX),
    limbs=((0, 1), (1, 2), (3, 4), (4, 5), (0, 6), (3, 7)),
    torso_joints=(0, 7),  # left shoulder - right hip, FLIC's PDJ normalisation
    flip_pairs=((3, 0), (4, 1), (5, 2), (7, 6), (9, 8)),
    alpha=0.8,
    root="data/FLIC",
    image_dir="images",
    train_annotations="examples.mat",
    test_annotations="examples.mat",
    image_name_format="{:08d}.jpg",
    reader=read_flic,
)
