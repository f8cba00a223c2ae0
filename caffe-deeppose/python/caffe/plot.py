"""Line charts as PNG files with OpenCV only (no plotting library needed): training curves
(`plot_training_log`), PDJ curves and loss curves of the application."""

from __future__ import annotations

import os

import numpy as np

from .atomic_file import atomic_write
from .lazy_modules import cv2

COLOURS = [(90, 90, 90), (200, 110, 30), (40, 40, 220), (40, 170, 40), (160, 40, 160), (20, 160, 200)]


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    step = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(step)) if step > 0 else 1
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=mag)
    return np.arange(np.ceil(lo / step) * step, hi + 1e-9 * step, step)


def line_chart(series: dict[str, tuple], path, title: str = "", xlabel: str = "", ylabel: str = "",
               ylim: tuple[float, float] | None = None, size=(640, 440)) -> np.ndarray:
    """Draw named (x, y) series on one pair of axes, with a legend; save as PNG, return the image."""
    w, h = size
    left, right, top, bottom = 64, 16, 36, 48
    img = np.full((h, w, 3), 255, np.uint8)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    if not len(xs):
        raise ValueError("line_chart: no data")
    x0, x1 = xs.min(), xs.max() if xs.max() > xs.min() else xs.min() + 1
    y0, y1 = ylim or (ys.min(), ys.max() if ys.max() > ys.min() else ys.min() + 1)

    def px(x, y):
        u = left + (np.asarray(x, float) - x0) / (x1 - x0) * (w - left - right)
        v = h - bottom - (np.asarray(y, float) - y0) / (y1 - y0) * (h - top - bottom)
        return np.stack([u, v], -1).round().astype(np.int32)

    for t in _ticks(y0, y1):
        (u, v), = px([x0], [t])
        cv2.line(img, (left, v), (w - right, v), (225, 225, 225), 1)
        cv2.putText(img, f"{t:g}", (4, v + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for t in _ticks(x0, x1):
        (u, v), = px([t], [y0])
        cv2.putText(img, f"{t:g}", (u - 10, h - bottom + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    cv2.putText(img, title, (left, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 4 * len(xlabel), h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, top - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, (x, y)) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        cv2.polylines(img, [px(x, y)], False, colour, 2, cv2.LINE_AA)
        ly = top + 18 + 18 * i
        cv2.line(img, (left + 10, ly - 4), (left + 34, ly - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(img, name, (left + 40, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"could not encode the chart for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, png.tobytes())
    return img
