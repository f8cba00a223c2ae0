"""Synthetic K2HPD-like depth images: posed people rendered by a small Kinect v2 model.

Sample ``index`` of a data set with seed ``seed`` depends only on ``(seed, index)``, so any
part of a set can be made alone, or in parallel, and is byte-identical to the whole.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..dataset import K2HPD, DatasetDescription, annotation_paths, write_annotations
from .kinect import camera, measure, to_gray8, to_mm16
from .scene import Scene, sample_scene

RAW_DIR = "depth_raw"  # next to the description's image directory


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # uint8 (rows, cols): near bright, far dark, 0 = no reading
    depth: np.ndarray  # float32 metres as measured (noise, dropouts), 0 = no reading
    true_depth: np.ndarray  # float32 metres before the sensor model, inf = nothing hit
    labels: np.ndarray  # int8: body part (>= 0, see body.PARTS) or background (scene.NONE...)
    joints: np.ndarray  # (J, 2) pixel coordinates in the description's joint order
    scene: Scene


def render_sample(seed: int, index: int, size=None, desc: DatasetDescription = K2HPD) -> Sample:
    """Sample ``index`` of the set made with ``seed``, at ``size`` (cols, rows; default desc.size)."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, camera(tuple(size or desc.size)))
    true_depth, labels = scene.render()
    depth = measure(true_depth, rng)
    return Sample(to_gray8(depth), depth, true_depth, labels, scene.joints2d(desc.joint_names), scene)


def _write_sample(index, out_dir, seed, size, raw16, desc):
    sample = render_sample(seed, index, size, desc)
    name = desc.image_name(index)
    cv2.imwrite(str(out_dir / desc.image_dir / name), sample.image)
    if raw16:
        cv2.imwrite(str(out_dir / Path(desc.image_dir).parent / RAW_DIR / name), to_mm16(sample.depth))
    return name, sample.joints


def make_dataset(out_dir, n_train: int, n_test: int, seed: int, size=None, raw16: bool = False,
                 desc: DatasetDescription = K2HPD, workers: int = 1) -> dict[str, Path]:
    """Write a K2HPD-layout set: images ``0 .. n_train + n_test - 1`` (training first) and the
    train/test annotation files; with raw16 also 16-bit millimetre depth PNGs. Returns the
    annotation paths."""
    out_dir = Path(out_dir)
    (out_dir / desc.image_dir).mkdir(parents=True, exist_ok=True)
    if raw16:
        (out_dir / Path(desc.image_dir).parent / RAW_DIR).mkdir(parents=True, exist_ok=True)
    write = partial(_write_sample, out_dir=out_dir, seed=seed, size=size, raw16=raw16, desc=desc)
    indices = range(n_train + n_test)
    progress = partial(tqdm, total=len(indices), desc=f"rendering {out_dir}", unit="img")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            items = list(progress(pool.map(write, indices, chunksize=32)))
    else:
        items = list(progress(map(write, indices)))
    paths = annotation_paths(out_dir, desc)
    write_annotations(paths["train"], items[:n_train])
    write_annotations(paths["test"], items[n_train:])
    return paths
