"""The seed's dataset constants, all read from `deeppose.dataset.K2HPD`.

To use another dataset, describe it in `deeppose/dataset.py` and point DATASET at it here.
"""

from deeppose.dataset import K2HPD as DATASET

SIZE = list(DATASET.size)  # [cols, rows]
JOINTS = DATASET.num_joints
LIMBS = DATASET.limbs
FLIP_PAIRS = DATASET.flip_pairs
TORSO = DATASET.torso_joints
alpha = DATASET.alpha
DSPATH = DATASET.root + "/"
IMPATH = f"{DATASET.root}/{DATASET.image_dir}/"
