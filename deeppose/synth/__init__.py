"""Synthetic depth images of posed people rendered by a small Kinect v2 model, annotated with the
joints a description names (those of the body model: head, neck, spine_mid, shoulders, elbows,
wrists, hips, knees, ankles).

Sample ``index`` of a data set with seed ``seed`` depends only on ``(seed, index)``, so any
part of a set can be made alone, or in parallel, and is byte-identical to the whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from caffe import filelock

from ..dataset import DatasetDescription, annotation_paths, write_annotations
from .kinect import camera, measure, to_gray8, to_mm16
from .scene import Scene, sample_scene

RAW_DIR = "depth_raw"  # next to the description's image directory
_STAGING = ".tmp-synthetic-"  # the folder in the output directory where a set is rendered


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # uint8 (rows, cols): near bright, far dark, 0 = no reading
    depth: np.ndarray  # float32 metres as measured (noise, dropouts), 0 = no reading
    true_depth: np.ndarray  # float32 metres before the sensor model, inf = nothing hit
    labels: np.ndarray  # int8: body part (>= 0, see body.PARTS) or background (scene.NONE...)
    joints: np.ndarray  # (J, 2) pixel coordinates in the description's joint order
    scene: Scene


def render_sample(desc: DatasetDescription, seed: int, index: int, size=None) -> Sample:
    """Sample ``index`` of the set made with ``seed``, at ``size`` (cols, rows; default desc.size)."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, camera(tuple(size or desc.size)))
    true_depth, labels = scene.render()
    depth = measure(true_depth, rng)
    return Sample(to_gray8(depth), depth, true_depth, labels, scene.joints2d(desc.joint_names), scene)


def _write_sample(index, out_dir, seed, size, raw16, desc):
    sample = render_sample(desc, seed, index, size)
    name = desc.image_name(index)
    outputs = [(out_dir / desc.image_dir / name, sample.image)]
    if raw16:
        outputs.append((out_dir / Path(desc.image_dir).parent / RAW_DIR / name, to_mm16(sample.depth)))
    for path, image in outputs:
        if not cv2.imwrite(str(path), image):
            raise OSError(f"cannot write {path}")
    return name, sample.joints


class DatasetExistsError(ValueError):
    """The output directory already holds a data set (its message says what and how to replace it)."""


def existing_dataset(out_dir, desc: DatasetDescription) -> list[str]:
    """What of a data set `out_dir` holds: annotation files, and image folders that are not empty."""
    out_dir = Path(out_dir)
    found = [p.name for p in annotation_paths(out_dir, desc).values() if p.exists()]
    for folder in (Path(desc.image_dir), Path(desc.image_dir).parent / RAW_DIR):
        if (out_dir / folder).is_dir():
            n = sum(1 for _ in (out_dir / folder).iterdir())
            if n:
                found.append(f"{n} files in {folder}")
    return found


def make_dataset(desc: DatasetDescription, out_dir, n_train: int, n_test: int, seed: int, size=None,
                 raw16: bool = False, workers: int = 1, force: bool = False) -> dict[str, Path]:
    """Write a set in the description's layout (text annotations): images ``0 .. n_train + n_test - 1`` (training first) and the
    train/test annotation files; with raw16 also 16-bit millimetre depth PNGs. Returns the
    annotation paths.

    A directory that holds a data set (`existing_dataset`) is refused unless `force` (which
    replaces the annotation files and the images of the same names). The images are rendered
    into a temporary folder in `out_dir` and moved into place once all are made, the annotation
    files last (atomically), under `out_dir`'s lock: an interrupted run leaves no part of a set."""
    if n_train < 1 or n_test < 1:
        raise ValueError(f"the numbers of training and test images must be 1 or more, got {n_train} and {n_test}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with filelock.hold(out_dir, "data set"):
        found = existing_dataset(out_dir, desc)
        if found and not force:
            raise DatasetExistsError(
                f"{out_dir} already holds a data set ({', '.join(found)}); refusing to overwrite it: "
                "pass --force to replace it (annotation files and images of the same names), "
                "or write to another --out")
        for orphan in out_dir.glob(_STAGING + "*"):  # left by an interrupted run
            shutil.rmtree(orphan, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=out_dir))
        try:
            items = _render_all(staging, n_train + n_test, seed, size, raw16, desc, workers, out_dir)
            for folder in [Path(desc.image_dir)] + ([Path(desc.image_dir).parent / RAW_DIR] if raw16 else []):
                (out_dir / folder).mkdir(parents=True, exist_ok=True)
                for image in (staging / folder).iterdir():
                    os.replace(image, out_dir / folder / image.name)
            paths = annotation_paths(out_dir, desc)
            write_annotations(paths["train"], items[:n_train])
            write_annotations(paths["test"], items[n_train:])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return paths


def _render_all(staging: Path, n: int, seed, size, raw16, desc, workers, out_dir) -> list:
    (staging / desc.image_dir).mkdir(parents=True)
    if raw16:
        (staging / Path(desc.image_dir).parent / RAW_DIR).mkdir(parents=True)
    write = partial(_write_sample, out_dir=staging, seed=seed, size=size, raw16=raw16, desc=desc)
    progress = partial(tqdm, total=n, desc=f"rendering {out_dir}", unit="img")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(progress(pool.map(write, range(n), chunksize=32)))
    return list(progress(map(write, range(n))))
