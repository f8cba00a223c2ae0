"""A small Kinect v2 depth-sensor model: intrinsics, range, noise, dropouts, image encodings."""

from __future__ import annotations

from statistics import NormalDist

import cv2
import numpy as np

from ..dataset import depth_to_grey
from .render import Camera

SENSOR_SIZE = (512, 424)  # the depth camera's native (cols, rows)
FOCAL = 365.0  # native fx = fy in pixels (Kinect v2 depth camera: ~365)
DEPTH_RANGE = (0.5, 8.0)  # metres measured; outside it the sensor reports 0
NOISE_PER_M2 = 1.5e-3  # axial noise sigma = NOISE_PER_M2 * z^2 (metres)
EDGE_JUMP = (0.03, 0.04)  # a neighbour farther by more than a + b * z is a depth discontinuity


def camera(size: tuple[int, int]) -> Camera:
    """The sensor's intrinsics scaled to an output size (cols, rows); principal point centred."""
    w, h = size
    return Camera(w, h, FOCAL * w / SENSOR_SIZE[0], FOCAL * h / SENSOR_SIZE[1], w / 2, h / 2)


# 256 equiprobable standard-normal quantiles: one random byte a pixel makes Gaussian noise
_NORMAL = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _edges(z: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood spans a depth discontinuity (no hit counts as far away)."""
    z = np.where(np.isfinite(z), z, np.float32(2 * DEPTH_RANGE[1]))
    lo = cv2.erode(z, _CROSS)
    return cv2.dilate(z, _CROSS) - lo > EDGE_JUMP[0] + EDGE_JUMP[1] * lo


def _random_bytes(rng: np.random.Generator, shape) -> np.ndarray:
    return np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)


def measure(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the sensor reports for the true depth z (inf = nothing hit): float32 metres, 0 = none.

    Adds noise with sigma growing as z^2, drops pixels out of range, a random fraction of the
    pixels along depth discontinuities, a few small holes and sparse single-pixel dropouts.
    Random draws are bytes: probabilities are resolved in steps of 1/256.
    """
    near, far = DEPTH_RANGE
    noise = cv2.LUT(_random_bytes(rng, z.shape), _NORMAL)
    u = _random_bytes(rng, z.shape)
    p_edge, p_speckle = rng.integers(round(0.3 * 256), round(0.8 * 256)), rng.integers(0, 2)  # /256
    missing = ~((z >= near) & (z <= far)) | (_edges(z) & (u < p_edge)) | (u >= 256 - p_speckle)
    holes = np.zeros(z.shape, np.uint8)
    for _ in range(rng.poisson(2)):
        centre = (int(rng.integers(0, z.shape[1])), int(rng.integers(0, z.shape[0])))
        axes = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        cv2.ellipse(holes, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    missing |= holes.astype(bool)
    with np.errstate(invalid="ignore"):
        out = z + np.float32(NOISE_PER_M2) * z * z * noise
    out[missing] = 0
    return out


def to_gray8(depth: np.ndarray) -> np.ndarray:
    """8-bit image of a measured depth: DEPTH_RANGE maps to 255 (near) .. 1 (far), 0 = no reading."""
    return depth_to_grey(depth, *DEPTH_RANGE)


def to_mm16(depth: np.ndarray) -> np.ndarray:
    """16-bit depth in millimetres, 0 = no reading."""
    return np.rint(np.clip(depth, 0, None) * 1000).astype(np.uint16)
