"""Pose metrics of the seed's `pyaccuracy.py`, vectorised: PDJ, PCP and the Euclidean loss.

Joints are arrays (N, J, 2) in pixels. Thresholds are inclusive (``<=``) and never divide, so a
zero torso diameter or a zero-length limb is no error: it detects only exact hits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PDJ_FRACTIONS = np.round(np.arange(1, 16) * 0.05, 2)  # 0.05, 0.10, ..., 0.75 of the torso diameter


class Score(NamedTuple):
    overall: np.ndarray | float  # rate over all items (PDJ: one per threshold)
    per_item: np.ndarray  # rate per joint (PDJ: thresholds x joints) or per limb (PCP)


def _distances(pred, gt) -> np.ndarray:
    pred, gt = np.asarray(pred, float), np.asarray(gt, float)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"expected two (N, J, 2) arrays, got {pred.shape} and {gt.shape}")
    return np.linalg.norm(pred - gt, axis=-1)


def pdj(pred, gt, diam, fractions=PDJ_FRACTIONS) -> Score:
    """Percentage of detected joints: a joint is detected when ||pred - gt|| <= fraction * diam.

    diam (N,) is each image's torso diameter. Returns rates per fraction (F,) and per fraction
    and joint (F, J).
    """
    dist = _distances(pred, gt)
    thresholds = np.asarray(fractions, float)[:, None, None] * np.asarray(diam, float)[None, :, None]
    hit = dist[None] <= thresholds
    return Score(hit.mean(axis=(1, 2)), hit.mean(axis=1))


def pcp(pred, gt, limbs) -> Score:
    """Percentage of correct parts: a limb (a, b) is correct when both predicted ends lie within
    half the true limb length of their true positions. Returns the overall rate and one per limb."""
    dist = _distances(pred, gt)
    a, b = np.asarray(limbs).T
    half = 0.5 * np.linalg.norm(np.asarray(gt, float)[:, a] - np.asarray(gt, float)[:, b], axis=-1)
    correct = (dist[:, a] <= half) & (dist[:, b] <= half)
    return Score(float(correct.mean()), correct.mean(axis=0))


def euclidean_loss(pred, gt) -> float:
    """The seed's reported loss: squared error summed, divided by 2 x the number of coordinates
    (the patched Caffe `EuclideanLoss` normalisation)."""
    diff = np.asarray(pred, float) - np.asarray(gt, float)
    return float((diff * diff).sum() / (2 * diff.size))
