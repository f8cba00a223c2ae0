"""The steps of the DeepPose pipeline, each a function: the driver (deeppose/driver.py) runs them
in order, the seed's scripts in data/<dataset>/ and models/ one at a time. Stage-1 lists, a stage's
databases, training, predictions, a refiner's crops; the data step is `deeppose.synth.make_dataset`,
the accuracy steps `deeppose.evaluate.accuracy`. Paths are relative to the repository root, where
the seed runs everything; every step takes the run's dataset description.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import caffe

from . import nets, preprocess, stage_data
from .dataset import DatasetDescription, annotation_paths, image_path, read_split, torso_diameter

DISPLACEMENTS = ("simulated", "predictions")  # the refiner's training crops: see make_refine_data


def log(message: str) -> None:
    caffe.glog.info("pipeline.py", message)  # the tag its lines had as deeppose/pipeline.py


# -- stage 1 -----------------------------------------------------------------------------------
def make_stage1_lists(desc: DatasetDescription, seed: int, val_fraction: float = 0.1, units: str = "pixels") -> dict:
    """Write stage1/{train,val,test}.txt: training images and their mirrors (minus a held-out
    validation part, unmirrored, whose stage-1 errors the refiner's simulation is fitted on) and the
    test images, each line ``<image> <offsets of the joints from the image centre>`` in `units`
    (recorded beside the lists, `stage_data.target_units`), in the description's frame (an image of
    another size listed as its letterboxed copy, `stage_data.frames`); the split and the lists' order
    come from `seed`."""
    rng = np.random.default_rng(seed)
    paths = annotation_paths(desc.root, desc)
    train, test = read_split(desc, "train"), read_split(desc, "test")
    for split, items in (("train", train), ("test", test)):
        if not items:
            raise ValueError(f"{paths[split]}: no annotation lines (the {split} set is empty)")
    order = rng.permutation(len(train))
    n_val = int(round(val_fraction * len(train)))
    val_items, train_items = [train[i] for i in order[:n_val]], [train[i] for i in order[n_val:]]
    record = {}

    def framed(name, joints):
        """The image the lists name for a dataset image (itself, or its letterboxed copy) and its
        joints there; read as the LMDB tool will read it."""
        path = image_path(name, desc)
        image, frame = preprocess.letterbox(stage_data.read_training_image(path, desc), desc.size)
        if frame.identity:
            return path, joints
        copy = stage_data.framed_path(name, desc)
        other = record.get(str(copy), (path,))[0]
        if other != path:
            raise ValueError(f"{other} and {path} would both be letterboxed into {copy}: rename one")
        stage_data.write_image(copy, image)
        record[str(copy)] = (path, frame)
        return copy, frame.to_frame(joints)

    def targets(joints):
        return stage_data.stage1_targets(joints, desc.size, units)

    rows = {"train": [], "val": [], "test": []}
    for name, joints in train_items:
        path, joints = framed(name, joints)
        mirrored, mjoints = stage_data.mirror_sample(path, joints, desc)
        rows["train"] += [(path, targets(joints)), (mirrored, targets(mjoints))]
    for split, items in (("val", val_items), ("test", test)):
        rows[split] = [(path, targets(joints)) for path, joints in (framed(n, j) for n, j in items)]
    log(f"stage-1 targets in {units} -> {stage_data.write_target_units(desc, units)}")
    if record:
        log(f"{len(record)} images not of the description's size {desc.width}x{desc.height}: letterboxed "
            f"into it -> {stage_data.stage_dir(1, desc) / stage_data.FRAMED_DIR}")
    stage_data.write_frames(desc, record)
    lists = {}
    for split, items in rows.items():
        items = [items[i] for i in rng.permutation(len(items))]
        lists[split] = stage_data.write_list(stage_data.list_path(1, split, desc), items)
        log(f"stage 1 {split}: {len(items)} images -> {lists[split]}")
    return lists


# -- databases and training ------------------------------------------------------------------
def make_databases(desc: DatasetDescription, stage: int, deploy, data: nets.DataFiles, tested: str) -> None:
    """Stage `stage`'s databases (records at the `deploy` net's input size; LMDB or LevelDB, as the
    Data layers' `backend` says) from its train list and the list its TEST Data layer reads
    (`tested`: stage 1's test, a refiner's val), and the training mean: the files `data` names."""
    from caffe.tools import compute_image_mean, convert_imageset

    rows, cols = nets.input_size(deploy)
    for path in (data.train_db, data.test_db, data.mean):
        if Path(path).is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
    for split, db, backend in (("train", data.train_db, data.train_backend), (tested, data.test_db, data.test_backend)):
        _tool(convert_imageset.main_multilabel, [f"-backend={backend.lower()}", f"-resize_height={rows}",
                                                 f"-resize_width={cols}", "",
                                                 str(stage_data.list_path(stage, split, desc)), db])
    _tool(compute_image_mean.main, [f"-backend={data.train_backend.lower()}", data.train_db, data.mean])


def _tool(main, argv) -> None:
    """Run an engine tool's main in this process; an error if it fails."""
    status = main(argv)
    if status:
        raise ValueError(f"{main.__module__.rsplit('.', 1)[-1]} {' '.join(map(repr, argv))} failed (status {status})")


class Stopped(Exception):
    """Training was stopped by a signal (after its snapshot); `status` is the exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def train(solver, state=None, gpus=(), log_path=None) -> None:
    """Train through pycaffe's solver (`solve(state)`: from the .solverstate `state` if given) on
    the CPU or `gpus`; SIGINT and SIGTERM stop it after the iteration with a snapshot (`Stopped`),
    as `caffe train` does. Several GPUs: `caffe train -gpu` (one worker process each; `log_path`,
    the training log, is named if it fails)."""
    if len(gpus) > 1:
        return _train_workers(solver, state, gpus, log_path)
    if gpus:
        caffe.set_device(gpus[0])
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    with caffe.signals.SignalHandler() as signals:
        s = caffe.get_solver(str(solver))
        s.set_action_function(signals.requested)
        s.solve(str(state) if state else None)
        if s.iter < s.param.max_iter:
            if s.last_snapshot_iter != s.iter:
                s.snapshot()
            status = 143 if signals.terminated else 130
            raise Stopped(f"training stopped at iteration {s.iter} by "
                          f"{'SIGTERM' if signals.terminated else 'SIGINT'}; run again to resume from "
                          f"{s.param.snapshot_prefix}_iter_{s.iter}.solverstate", status)


def _train_workers(solver, state, gpus, log_path) -> None:
    argv = ["train", "-solver", str(solver), "-gpu", ",".join(map(str, gpus))]
    argv += ["-snapshot", str(state)] if state else []
    with caffe.signals.SignalHandler():  # the workers act on the signals; this process waits for them
        proc = subprocess.Popen([sys.executable, "-m", "caffe.tools.caffe_main", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stderr.write(line)
        status = proc.wait()
    if status in (130, 143):
        raise Stopped(f"caffe train stopped by a signal (status {status}); run again to resume", status)
    if status:
        raise ValueError(f"caffe {' '.join(argv)} failed with status {status} (see {log_path})")


# -- predictions of stages 1..s ----------------------------------------------------------------
def write_predictions(desc: DatasetDescription, models, splits=("val",), batch: int = 32, files=None) -> list[Path]:
    """The cascade's predictions (`models`: stage-1 weights, then refiners') on stage-1 list
    splits, as `stage_data.output_path(len(models), split)`, of the dataset images in their own
    pixels (`stage_data.in_images`); `files`: the (stage-1, refiner) ModelFiles (default:
    `nets.stage_nets(desc)`)."""
    from .cascade import Cascade  # torch: loaded by the steps that run a net

    stage1, refine = files or nets.stage_nets(desc)
    cascade = Cascade(desc, models[0], models[1:], batch=batch, stage1=stage1, refine=refine)
    paths = []
    for split in splits:
        listed = stage_data.read_stage1_list(stage_data.list_path(1, split, desc), desc)
        names, truth = stage_data.in_images(desc, *listed)
        pred = cascade.predict_files(names)[-1]
        paths.append(stage_data.write_outputs(stage_data.output_path(len(models), split, desc), names, truth, pred))
        err = np.linalg.norm(pred - truth, axis=-1).mean()
        log(f"{split}: {len(names)} images, mean joint error {err:.2f} px -> {paths[-1]}")
    return paths


# -- stage s >= 2 ------------------------------------------------------------------------------
def _write_crops(desc: DatasetDescription, directory: Path, names, joints, centres, sides, joint_idx, crop_px: int):
    """Crops of side sides[i] around centres (N, K, 2) of image i, PNG at crop_px x crop_px; list rows
    (targets in the run's units)."""
    directory.mkdir(parents=True, exist_ok=True)
    units = stage_data.target_units(desc)
    rows = []
    for name, truth, cs, side, idx in tqdm(list(zip(names, joints, centres, sides, joint_idx)), unit="img",
                                           desc=str(directory), disable=None, leave=False):
        image = preprocess.load_image(name, desc)
        for c, j in zip(cs, idx):
            path = directory / f"{Path(name).stem}_{j:02d}.png"
            if not cv2.imwrite(str(path), preprocess.crop(image, c, side, crop_px)):
                raise OSError(f"cannot write {path}")
            rows.append((path, stage_data.refine_targets(truth[j], c, side, crop_px, units)))
    return rows


def make_refine_data(desc: DatasetDescription, stage: int, crop_px: int, seed: int, displacements: str = "simulated",
                     per_image: int = 1) -> dict:
    """Write stage<s>/{train,val}.txt and their crops for refiner stage s >= 2.

    Training crops: `per_image` joints of every stage-1 training image, centred on a simulated
    stage s-1 estimate (displacement sampled from the normal fitted per joint on the held-out
    predictions, `displacements="simulated"`) or on the stage s-1 prediction on that training image
    (`"predictions"`, the seed's way); side alpha x the true torso diameter. Validation crops: every joint
    of the held-out images around the real stage s-1 predictions, side measured on the prediction
    (as at deployment). Crops are cut from the images as listed at stage 1 (in the frame,
    `stage_data.in_frame`), as the cascade cuts them. The joints chosen, the simulated displacements
    and the lists' order come from (`seed`, `stage`)."""
    if stage < 2:
        raise ValueError(f"refiner stages are 2 and above, got {stage}")
    rng = np.random.default_rng([seed, stage])
    sdir = stage_data.stage_dir(stage, desc)

    def predictions(split):  # stage s-1's on a stage-1 split: (images, truth, predictions) in the frame
        return stage_data.in_frame(desc, *stage_data.read_outputs(stage_data.output_path(stage - 1, split, desc), desc))

    val_names, val_truth, val_pred = predictions("val")
    model = stage_data.DisplacementModel.fit(val_pred, val_truth,
                                             stage_data.floored_diameter(torso_diameter(val_truth, desc), desc.size))
    sdir.mkdir(parents=True, exist_ok=True)
    model.to_json(sdir / "displacements.json")
    if displacements == "simulated":
        names, truth = stage_data.read_stage1_list(stage_data.list_path(1, "train", desc), desc)
        diam = stage_data.floored_diameter(torso_diameter(truth, desc), desc.size)
        idx = stage_data.choose_joints(rng, len(names), per_image, desc.num_joints)
        centres = stage_data.simulated_centres(rng, truth, idx, model, diam)
    elif displacements == "predictions":
        names, truth, pred = predictions("train")
        diam = stage_data.floored_diameter(torso_diameter(truth, desc), desc.size)
        idx = stage_data.choose_joints(rng, len(names), per_image, desc.num_joints)
        centres = np.take_along_axis(pred, idx[..., None], axis=1)
    else:
        raise ValueError(f"displacements must be 'simulated' or 'predictions', not {displacements!r}")
    train_rows = _write_crops(desc, stage_data.crops_dir(stage, "train", desc), names, truth, centres,
                              desc.alpha * diam, idx, crop_px)
    all_joints = np.tile(np.arange(desc.num_joints), (len(val_names), 1))
    val_sides = np.array([stage_data.crop_side(p, desc.size, desc) for p in val_pred])
    val_rows = _write_crops(desc, stage_data.crops_dir(stage, "val", desc), val_names, val_truth, val_pred,
                            val_sides, all_joints, crop_px)
    result = {}
    for split, rows in (("train", train_rows), ("val", val_rows)):
        rows = [rows[i] for i in rng.permutation(len(rows))]
        result[split] = stage_data.write_list(stage_data.list_path(stage, split, desc), rows)
        log(f"stage {stage} {split}: {len(rows)} crops -> {result[split]}")
    err = np.linalg.norm(model.mean, axis=1).mean()
    log(f"stage {stage - 1} errors on {len(val_names)} held-out images: mean |bias| {err:.3f}, "
        f"mean std {np.sqrt(np.trace(model.cov, axis1=1, axis2=2)).mean():.3f} torso diameters "
        f"({displacements} displacements)")
    return result
