"""A stage's data: its lists and the files beside them (crops, predictions, the records of the
target units and of the frames), its targets; the stage number s is a parameter.

Stage 1 regresses every joint from the whole image: the target of a joint is its offset from the
image centre. The training set is doubled by horizontal mirrors (left/right joints swapped by the
dataset description). Every stage works in the description's frame (its size): an image of another
size is listed as its letterboxed copy (`preprocess.letterbox`, written under <root>/stage1/framed/,
its mirror beside it), joints mapped into the copy; the frames record (`frames`) maps the copies
back to their images.

Stage s >= 2 refines one joint from a crop of side ``alpha x torso diameter`` centred on the
stage s-1 estimate; the target is the true joint's offset from the crop centre.

The targets' units are the run's choice, recorded with its stage-1 lists (`target_units`), so that
every reader inverts them: ``box`` (the paper's normalisation: the offset divided by the box size,
the image's (width, height) at stage 1, the crop side at a refiner, so +-0.5 is the box border) or
``pixels`` (the seed's: the image's pixels at stage 1, 1/crop_px of the crop side at a refiner, so
+-crop_px/2 is the crop border; crop_px is the refiner's input side). The estimates the refiner
trains on are either simulated (the paper: displacements sampled per joint from a normal fitted
to the stage s-1 errors on held-out images, `DisplacementModel`) or the stage s-1 predictions on
the training images themselves (the seed's way, which look better than test-time errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from caffe.formats import image_list
from caffe.atomic_file import atomic_write

from .dataset import DatasetDescription, flip_joints, torso_diameter
from .preprocess import Frame

MIRROR_SUFFIX = "m"  # <name>m.png: the mirrored copy written next to a training image
MIN_DIAMETER_FRACTION = 1 / 16  # torso diameter floor, as a fraction of the image's longer side
TARGET_UNITS = ("box", "pixels")  # see the module's docstring; lists made without a record are "pixels"
UNITS_FILE = "targets.json"  # the record of the units, in the stage-1 directory
FRAMES_FILE = "frames.json"  # the record of the letterboxed copies, in the stage-1 directory
FRAMED_DIR = "framed"  # the letterboxed copies, in the stage-1 directory


# -- stage 1 -----------------------------------------------------------------------------------
def image_centre(size) -> np.ndarray:
    """Centre (x, y) of an image of size (cols, rows), in continuous pixel coordinates."""
    return np.asarray(size, float) / 2


def _is_box(units: str) -> bool:
    if units not in TARGET_UNITS:
        raise ValueError(f"target units must be one of {', '.join(TARGET_UNITS)}, not {units!r}")
    return units == "box"


def _unit(units: str, size) -> np.ndarray | float:
    """The length one stage-1 target unit stands for: the image's size for "box", 1 pixel else."""
    return np.asarray(size, float) if _is_box(units) else 1.0


def stage1_targets(joints, size, units: str = "pixels") -> np.ndarray:
    """Joints (..., J, 2) -> stage-1 targets: offsets from the image centre, in `units`."""
    return (np.asarray(joints, float) - image_centre(size)) / _unit(units, size)


def stage1_joints(targets, size, units: str = "pixels") -> np.ndarray:
    """Stage-1 outputs (..., 2J) or (..., J, 2) in `units` -> absolute joints (..., J, 2)."""
    t = np.asarray(targets, float)
    if t.shape[-1] != 2:
        t = t.reshape(t.shape[:-1] + (-1, 2))
    return t * _unit(units, size) + image_centre(size)


def mirror_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + MIRROR_SUFFIX + path.suffix)


def read_training_image(path, desc: DatasetDescription) -> np.ndarray:
    """A dataset image as stored; an error naming it if it is not of the description's bit depth
    (the LMDB tool would read a 16-bit image as value/256)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f"cannot read image {path}")
    bits = 8 * image.dtype.itemsize
    if bits != desc.image_bits:
        raise ValueError(f"{path}: a {bits}-bit image; the {desc.name} description says "
                         f"{desc.image_bits}-bit (depth {desc.depth_range_mm[0]:g}..{desc.depth_range_mm[1]:g} mm "
                         "as grey 255..1), and convert_imageset reads images as 8-bit: convert the data set first")
    return image


def write_image(path, image: np.ndarray) -> None:
    """Write an image (format by its suffix) atomically; a file already holding exactly these
    bytes is kept."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"cannot encode {path}")
    encoded = encoded.tobytes()
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current != encoded:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, encoded)


def framed_path(name: str, desc: DatasetDescription) -> Path:
    """Where the letterboxed copy of the dataset image `name` is written (PNG)."""
    return stage_dir(1, desc) / FRAMED_DIR / Path(name).with_suffix(".png")


def mirror_sample(path, joints, desc: DatasetDescription) -> tuple[Path, np.ndarray]:
    """Write the horizontal mirror of an image next to it and return its path and joints. A
    mirror already there is kept only if it holds exactly these bytes (so it always matches the
    current image); otherwise it is replaced atomically."""
    mirror = mirror_path(path)
    image = read_training_image(path, desc)
    write_image(mirror, cv2.flip(image, 1))
    return mirror, flip_joints(joints, image.shape[1], desc)


# -- stage s >= 2 ------------------------------------------------------------------------------
def floored_diameter(diam, size) -> np.ndarray:
    """Torso diameters with a floor (joints on top of each other give 0): at least
    MIN_DIAMETER_FRACTION of the image's longer side (size = (cols, rows))."""
    return np.maximum(np.asarray(diam, float), MIN_DIAMETER_FRACTION * max(size))


def crop_side(joints, size, desc: DatasetDescription) -> np.ndarray:
    """Stage s >= 2 crop side, alpha x the (floored) torso diameter of joints (..., J, 2)."""
    return desc.alpha * floored_diameter(torso_diameter(joints, desc), size)


def _crop_unit(side, crop_px: int, units: str) -> np.ndarray:
    """The length one refiner target unit stands for: the crop side ("box") or side / crop_px."""
    side = np.asarray(side, float)[..., None]
    return side if _is_box(units) else side / crop_px


def refine_targets(true, centre, side, crop_px: int, units: str = "pixels") -> np.ndarray:
    """True joint positions (..., 2) relative to crop centres, in `units` of the crop."""
    return (np.asarray(true, float) - np.asarray(centre, float)) / _crop_unit(side, crop_px, units)


def apply_refinement(centre, output, side, crop_px: int, units: str = "pixels") -> np.ndarray:
    """Inverse of `refine_targets`: the refined positions from the net's output."""
    return np.asarray(centre, float) + np.asarray(output, float) * _crop_unit(side, crop_px, units)


@dataclass(frozen=True)
class DisplacementModel:
    """Per joint, a 2-D normal of the stage's error (prediction - truth) / torso diameter."""

    mean: np.ndarray  # (J, 2)
    cov: np.ndarray  # (J, 2, 2)

    @classmethod
    def fit(cls, pred, true, diam) -> "DisplacementModel":
        """Fit on predictions and truths (N, J, 2) with their (floored) torso diameters (N,)."""
        d = (np.asarray(pred, float) - np.asarray(true, float)) / np.asarray(diam, float)[:, None, None]
        if len(d) < 2:
            raise ValueError(f"fitting a displacement model needs 2 or more images, got {len(d)}")
        centred = d - d.mean(axis=0)
        cov = np.einsum("nji,njk->jik", centred, centred) / (len(d) - 1)
        return cls(d.mean(axis=0), cov)

    def sample(self, rng: np.random.Generator, joints) -> np.ndarray:
        """One displacement (in torso diameters) for each joint index in `joints` -> (len, 2)."""
        joints = np.asarray(joints, int)
        chol = np.linalg.cholesky(self.cov[joints] + 1e-12 * np.eye(2))
        return self.mean[joints] + np.einsum("nij,nj->ni", chol, rng.standard_normal((len(joints), 2)))

    def to_json(self, path) -> None:
        """Record the model as JSON ({"mean": (J, 2), "cov": (J, 2, 2)} lists), for the user."""
        atomic_write(path, json.dumps({"mean": self.mean.tolist(), "cov": self.cov.tolist()}, indent=1))


def choose_joints(rng: np.random.Generator, n_images: int, per_image: int, num_joints: int) -> np.ndarray:
    """(n_images, per_image) distinct joint indices per image (the seed kept about one a image)."""
    per_image = min(per_image, num_joints)
    return np.argsort(rng.random((n_images, num_joints)), axis=1)[:, :per_image]


def simulated_centres(rng, true, joint_idx, model: DisplacementModel, diam) -> np.ndarray:
    """Crop centres true + sampled displacement x diameter for the chosen joints (N, K) -> (N, K, 2)."""
    n, k = joint_idx.shape
    delta = model.sample(rng, joint_idx.ravel()).reshape(n, k, 2)
    picked = np.take_along_axis(np.asarray(true, float), joint_idx[..., None], axis=1)
    return picked + delta * np.asarray(diam, float)[:, None, None]


# -- the files of a stage -----------------------------------------------------------------------
# <dataset root>/stage<s>/<split>.txt are a stage's lists. Stage 1: train (training images and their
# mirrors, minus the held-out part), val (the held-out training images), test (the test set). A
# refiner s >= 2: train (crops of the training images) and val (crops of the held-out images around
# the stage s-1 predictions). A stage's TEST-phase Data layer reads stage 1's test list, a refiner's val list.
STAGE1_SPLITS = ("train", "val", "test")
REFINE_SPLITS = ("train", "val")


def stage_dir(stage: int, desc: DatasetDescription) -> Path:
    return Path(desc.root) / f"stage{stage}"


def list_path(stage: int, split: str, desc: DatasetDescription) -> Path:
    """The list of `split` of stage `stage` (see above)."""
    splits = STAGE1_SPLITS if stage == 1 else REFINE_SPLITS
    if split not in splits:
        raise ValueError(f"stage {stage} has the lists {', '.join(splits)}, not {split!r}")
    return stage_dir(stage, desc) / f"{split}.txt"


def crops_dir(stage: int, split: str, desc: DatasetDescription) -> Path:
    """Where the crop images of a refiner's list `split` are written."""
    return list_path(stage, split, desc).with_name(f"crops_{split}")


def output_path(stage: int, split: str, desc: DatasetDescription) -> Path:
    """Predictions of the cascade up to `stage` on a stage-1 list split (the seed's output.txt)."""
    list_path(1, split, desc)  # a stage-1 split
    return stage_dir(stage, desc) / f"output_{split}.txt"


def write_target_units(desc: DatasetDescription, units: str) -> Path:
    """Record the run's target units with its stage-1 lists (written atomically)."""
    _is_box(units)
    path = stage_dir(1, desc) / UNITS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"units": units}) + "\n")
    return path


def target_units(desc: DatasetDescription) -> str:
    """The target units of the dataset's stage lists and the models trained on them: the record
    written with the stage-1 lists, "pixels" (the seed's) where there is none."""
    path = stage_dir(1, desc) / UNITS_FILE
    try:
        units = json.loads(path.read_text(encoding="utf-8"))["units"]
    except FileNotFoundError:
        return "pixels"
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a record of target units ({e}); remake the stage-1 lists") from None
    if units not in TARGET_UNITS:
        raise ValueError(f"{path}: units {units!r}, not one of {', '.join(TARGET_UNITS)}")
    return units


def write_frames(desc: DatasetDescription, record: dict) -> Path:
    """Record the letterboxed copies the stage-1 lists name ({copy: (image, Frame)}) beside them
    (written atomically)."""
    path = stage_dir(1, desc) / FRAMES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({copy: {"image": str(image), "scale": f.scale, "offset": list(f.offset)}
                                   for copy, (image, f) in record.items()}, indent=1) + "\n")
    return path


def frames(desc: DatasetDescription) -> dict:
    """{letterboxed copy: (its image, Frame)} of the stage-1 lists; every other image they name
    is its own frame. Empty where there is no record (lists made before it)."""
    path = stage_dir(1, desc) / FRAMES_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {copy: (r["image"], Frame(float(r["scale"]), tuple(map(float, r["offset"]))))
                for copy, r in record.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a record of frames ({e}); remake the stage-1 lists") from None


# -- the frame: dataset images <-> the stage-1 lists' entries ----------------------------------
def frames_of(images, desc: DatasetDescription) -> list[tuple[str, Frame]]:
    """For dataset images (paths as the stage-1 lists' record names them): the image each is
    listed as (its letterboxed copy, or itself) and its frame."""
    by_image = {image: (copy, frame) for copy, (image, frame) in frames(desc).items()}
    return [by_image.get(str(image), (str(image), Frame())) for image in images]


def in_frame(desc: DatasetDescription, images, *joints):
    """Dataset images and joints (N, J, 2) in their own pixels -> the listed images and the joints
    in the frame."""
    framed = frames_of(images, desc)
    return [c for c, _ in framed], *(np.stack([f.to_frame(j) for (_, f), j in zip(framed, js)]) for js in joints)


def in_images(desc: DatasetDescription, listed, *joints):
    """Inverse of `in_frame`: the images of stage-1 list entries and the joints in their own pixels."""
    record = frames(desc)
    framed = [record.get(str(n), (str(n), Frame())) for n in listed]
    return [i for i, _ in framed], *(np.stack([f.from_frame(j) for (_, f), j in zip(framed, js)]) for js in joints)


# -- list files ----------------------------------------------------------------------------------
def write_list(path, rows) -> Path:
    """Write a `convert_imageset_multilabel` list: lines ``<image path> v1 v2 ...`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(" ".join([str(image)] + [f"{v:.6f}" for v in np.asarray(values, float).ravel()]) + "\n"
                               for image, values in rows))
    return path


def read_list(path) -> tuple[list[str], np.ndarray]:
    """A list's image paths and value rows (N, K), read by the reader of convert_imageset_multilabel
    (`caffe.formats.image_list.read_list`: finite values, as many on every line, errors naming the file and
    line); blank lines are skipped."""
    entries = [e for e in image_list.read_list(path, multilabel=True) if e.path]
    return [e.path for e in entries], np.asarray([e.label for e in entries], float)


def read_stage1_list(path, desc: DatasetDescription) -> tuple[list[str], np.ndarray]:
    """A stage-1 list's images and absolute joints (N, J, 2) in the frame."""
    names, targets = read_list(path)
    return names, stage1_joints(targets, desc.size, target_units(desc))


def write_outputs(path, names, truth, pred) -> Path:
    """Seed format: ``<image> <2J true coordinates> <2J predicted coordinates>`` (absolute pixels)."""
    rows = [(n, np.concatenate([t.ravel(), p.ravel()])) for n, t, p in zip(names, truth, pred)]
    return write_list(path, rows)


def read_outputs(path, desc: DatasetDescription):
    """(names, truth (N, J, 2), predictions (N, J, 2)) of an output file."""
    names, values = read_list(path)
    j = desc.num_joints
    if values.shape[1:] != (4 * j,):
        raise ValueError(f"{path}: expected {4 * j} values a line (truth and prediction of {j} joints)")
    return names, values[:, :2 * j].reshape(-1, j, 2), values[:, 2 * j:].reshape(-1, j, 2)
