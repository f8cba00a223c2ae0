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
                  thickness: int = 1, radius: int = 2, colours=None) -> np.ndarray:
    """A BGR copy of image (grey or BGR) with the limbs and joints (J, 2) drawn (`colours`: one BGR
    colour a joint, default by side)."""
    drawn = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    joints = np.asarray(joints, float)
    colours = colours or joint_colours(desc)
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


TRUTH = (60, 230, 250)  # the truth's skeleton in the results sheet (yellow), drawn under the prediction's
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(image: np.ndarray, text: str, scale: float = 0.5) -> None:
    cv2.putText(image, text, (6, 18), _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (6, 18), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def person_tile(image: np.ndarray, truth, pred, desc: DatasetDescription, tile_px: int, caption: str) -> np.ndarray:
    """The square around the person (truth and prediction, with a margin) enlarged to tile_px, the
    truth's skeleton (yellow) and the prediction's (sides coloured) drawn over it, a caption on top."""
    from .preprocess import crop  # the refiner's crop: the same resampling and zero padding

    points = np.concatenate([np.asarray(truth, float), np.asarray(pred, float)])
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, side = (lo + hi) / 2, max(1.25 * float((hi - lo).max()), 16.0)
    tile = crop(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), centre, side, tile_px)
    to_tile = lambda joints: (np.asarray(joints, float) - (centre - side / 2)) * tile_px / side  # noqa: E731
    drawn = draw_skeleton(tile, to_tile(truth), desc, thickness=3, radius=4, colours=[TRUTH] * desc.num_joints)
    drawn = draw_skeleton(drawn, to_tile(pred), desc, thickness=2, radius=3)
    _label(drawn, caption)
    return drawn


def results_sheet(rows, path, desc: DatasetDescription, title: str, tile_px: int = 220) -> np.ndarray:
    """A grid of images, one row per (label, [(image, truth, [(caption, prediction) per stage])...]):
    each image drawn once per stage (`person_tile`), the row's label on its left and `title` on top;
    saved as PNG."""
    label_px, gap = 100, 3
    columns = max(sum(len(stages) for _, _, stages in items) for _, items in rows)
    lines = []
    for label, items in rows:
        tiles = [person_tile(image, truth, pred, desc, tile_px, caption)
                 for image, truth, stages in items for caption, pred in stages]
        tiles += [np.zeros((tile_px, tile_px, 3), np.uint8)] * (columns - len(tiles))
        head = np.full((tile_px + 2 * gap, label_px, 3), 255, np.uint8)
        cv2.putText(head, label, (8, tile_px // 2), _FONT, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        lines.append(np.hstack([head] + [np.pad(t, ((gap, gap), (gap, 0), (0, 0)), constant_values=255) for t in tiles]))
    body = np.vstack(lines)
    top = np.full((34, body.shape[1], 3), 255, np.uint8)
    cv2.putText(top, title, (8, 23), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([top, body])
    save_png(path, sheet)
    return sheet
