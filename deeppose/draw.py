"""Skeleton drawings saved as PNG files (no display needed): limbs and joints over an image.

The person's right side is drawn red, the left side blue, the centre line green (BGR colours);
sides come from the description's (right, left) flip pairs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from caffe.atomic_file import atomic_write

from .dataset import DatasetDescription

RIGHT, LEFT, CENTRE = (40, 40, 230), (230, 120, 30), (40, 200, 40)
_SHIFT = 4  # fixed-point bits of cv2 drawing coordinates (sub-pixel positions)


def joint_colours(desc: DatasetDescription) -> list[tuple[int, int, int]]:
    colours = [CENTRE] * desc.num_joints
    for right, left in desc.flip_pairs:
        colours[right], colours[left] = RIGHT, LEFT
    return colours


def _point(xy) -> tuple[int, int]:
    """Continuous pixel coordinates (pixel i covers [i, i + 1)) -> cv2 fixed-point pixel centres."""
    return tuple(int(round((v - 0.5) * (1 << _SHIFT))) for v in xy)


def draw_skeleton(image: np.ndarray, joints, desc: DatasetDescription,
                  thickness: int = 1, radius: int = 2) -> np.ndarray:
    """A BGR copy of image (grey or BGR) with the limbs and joints (J, 2) drawn."""
    drawn = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    joints = np.asarray(joints, float)
    colours = joint_colours(desc)
    for a, b in desc.limbs:
        colour = colours[a] if colours[a] == colours[b] else CENTRE
        cv2.line(drawn, _point(joints[a]), _point(joints[b]), colour, thickness, cv2.LINE_AA, _SHIFT)
    for xy, colour in zip(joints, colours):
        cv2.circle(drawn, _point(xy), radius << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)
    return drawn


def save_png(path, image: np.ndarray) -> Path:
    """Write `image` as a PNG file, atomically (a killed run leaves no half image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write(path, data.tobytes())
    return path


def contact_sheet(images, joints_list, path, desc: DatasetDescription, cols: int = 4) -> np.ndarray:
    """Tile same-sized images with their skeletons into a grid of `cols` columns, save it as PNG."""
    tiles = [draw_skeleton(im, j, desc) for im, j in zip(images, joints_list, strict=True)]
    if not tiles:
        raise ValueError("no images for a contact sheet")
    shape = tiles[0].shape
    if any(t.shape != shape for t in tiles):
        raise ValueError(f"contact sheet images differ in size: {sorted({t.shape for t in tiles})}")
    tiles += [np.zeros(shape, np.uint8)] * (-len(tiles) % cols)
    sheet = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    save_png(path, sheet)
    return sheet
