"""The dataset description type: everything about a dataset in one place, and the generic
helpers on annotations (the text annotation format, flips, torso diameters).

Every transform, metric, drawing and the synthetic renderer read a `DatasetDescription`
passed to them; no other module writes down a joint count, an image size or a joint index.
The descriptions themselves (and their annotation readers) are in `deeppose.datasets`.

Coordinates are continuous pixel coordinates: pixel column ``i`` covers ``[i, i + 1)``, so
its centre is at ``i + 0.5``. In this convention the seed's horizontal mirror ``x -> width - x``
is exact (it maps the image edge 0 onto ``width``), and `flip_joints` keeps it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from caffe.atomic_file import atomic_write


@dataclass(frozen=True)
class DatasetDescription:
    """Joints, skeleton, flips and file layout of a 2-D pose dataset.

    `flip_pairs` are ``(right, left)`` joint indices swapped by a horizontal mirror;
    `torso_joints` are the two joints whose distance is the torso diameter (the PDJ
    scale and the stage-2 crop scale); the stage-2 crop side is ``alpha`` x that diameter.
    Paths are relative to `root` (the dataset directory). `reader(desc, split)` gives the
    ``(image name, joints (J, 2))`` pairs of the ``"train"`` or ``"test"`` split (default:
    the text annotation files, `read_annotations`); image names are relative to `image_dir`.

    Images are `image_bits`-bit; a depth dataset's images are grey depth maps: grey 255 (near) .. 1 (far) stands linearly for
    `depth_range_mm`, 0 for no reading. A 16-bit PNG of millimetres (a sensor's raw depth) is
    read into this encoding (`preprocess.load_image`); the training images must be 8-bit, as the
    LMDB tool reads them (OpenCV, 16 bits would become value/256).
    """

    name: str
    size: tuple[int, int]  # (cols, rows)
    joint_names: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    torso_joints: tuple[int, int]
    flip_pairs: tuple[tuple[int, int], ...]
    alpha: float
    root: str
    image_dir: str
    train_annotations: str
    test_annotations: str
    image_name_format: str  # str.format pattern taking the image index
    image_bits: int = 8
    depth_range_mm: tuple[float, float] = (500.0, 8000.0)  # (grey 255, grey 1)
    reader: Callable[["DatasetDescription", str], list] | None = None

    def __post_init__(self):
        j = self.num_joints
        pairs = list(self.limbs) + list(self.flip_pairs) + [self.torso_joints]
        bad = [p for p in pairs if not all(0 <= i < j for i in p)]
        if bad:
            raise ValueError(f"{self.name}: joint indices out of range 0..{j - 1}: {bad}")
        flipped = [i for p in self.flip_pairs for i in p]
        if len(set(flipped)) != len(flipped):
            raise ValueError(f"{self.name}: a joint appears in two flip pairs: {self.flip_pairs}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index array p: joint i of a mirrored image is joint p[i] of the original."""
        p = np.arange(self.num_joints)
        for r, l in self.flip_pairs:
            p[r], p[l] = l, r
        return p

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def image_name(self, index: int) -> str:
        return self.image_name_format.format(index)


_SEPARATORS = re.compile(r"[,\s]+")


def depth_to_grey(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """uint8 grey of a depth map (any unit): near -> 255 .. far -> 1 linearly (clipped), 0 where
    the depth is 0 or less (no reading)."""
    grey = np.clip(np.rint(255 - (depth - near) * (254 / (far - near))), 1, 255).astype(np.uint8)
    grey[depth <= 0] = 0
    return grey


def read_annotations(path, desc: DatasetDescription) -> list[tuple[str, np.ndarray]]:
    """Read ``<file name> x1,y1,x2,y2,...`` lines into ``(name, joints (J, 2))`` pairs.

    Leading NUL bytes (present in some lines of real annotation files) are stripped, blank lines skipped, and
    only the first 2*J numbers of a line are used (lines may carry more); a value that is not
    a finite number is an error naming the file and line.
    """
    need = 2 * desc.num_joints
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.lstrip("\x00").strip()
            if not line:
                continue
            name, _, rest = line.partition(" ")
            fields = [v for v in _SEPARATORS.split(rest.strip()) if v][:need]
            if len(fields) < need:
                raise ValueError(f"{path}:{lineno}: {name!r} has {len(fields)} numbers, "
                                 f"{need} needed for {desc.num_joints} joints")
            try:
                values = np.array([float(v) for v in fields])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {name!r}: non-numeric value ({e})") from None
            if not np.isfinite(values).all():
                raise ValueError(f"{path}:{lineno}: {name!r}: coordinate "
                                 f"{fields[int(np.argmin(np.isfinite(values)))]!r} is not a finite number")
            items.append((name, values.reshape(desc.num_joints, 2)))
    return items


def write_annotations(path, items: Iterable[tuple[str, np.ndarray]], decimals: int = 3) -> None:
    """Write ``(name, joints (J, 2))`` pairs as text annotation lines ``<name> x1,y1,x2,y2,...`` (atomically)."""
    lines = [f"{name} " + ",".join(f"{v:.{decimals}f}" for v in np.asarray(joints, float).ravel()) + "\n"
             for name, joints in items]
    atomic_write(path, "".join(lines))


def flip_joints(joints: np.ndarray, width: float, desc: DatasetDescription) -> np.ndarray:
    """Joints (..., J, 2) of the horizontally mirrored image: x -> width - x, left/right swapped."""
    flipped = np.array(joints, dtype=float)[..., desc.flip_permutation, :]
    flipped[..., 0] = width - flipped[..., 0]
    return flipped


def torso_diameter(joints: np.ndarray, desc: DatasetDescription) -> np.ndarray:
    """Distance between the description's two torso joints, for joints (..., J, 2)."""
    a, b = desc.torso_joints
    joints = np.asarray(joints, dtype=float)
    return np.linalg.norm(joints[..., a, :] - joints[..., b, :], axis=-1)


def annotation_paths(root, desc: DatasetDescription) -> dict[str, Path]:
    """The train and test annotation files of a dataset directory."""
    root = Path(root)
    return {"train": root / desc.train_annotations, "test": root / desc.test_annotations}


def image_path(name: str, desc: DatasetDescription) -> Path:
    return Path(desc.root) / desc.image_dir / name


SPLITS = ("train", "test")


def read_split(desc: DatasetDescription, split: str) -> list[tuple[str, np.ndarray]]:
    """The ``(image name, joints (J, 2))`` pairs of a split, by the description's reader."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if desc.reader is not None:
        return desc.reader(desc, split)
    return read_annotations(annotation_paths(desc.root, desc)[split], desc)
