"""The file-level steps of the DeepPose pipeline (deeppose_train.sh calls them through the thin
scripts in data/<dataset>/ and models/): stage lists, stage-s crops, prediction outputs, run-local
solvers. Paths are relative to the repository root, where the seed runs everything; every step takes
the run's dataset description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import text_format

from caffe import protoio
from caffe.proto import caffe_pb2

from . import preprocess, stages
from .dataset import DatasetDescription, annotation_paths, read_split, torso_diameter


def image_path(name: str, desc: DatasetDescription) -> Path:
    return Path(desc.root) / desc.image_dir / name


def log(message: str) -> None:
    print(message, flush=True)


# -- stage 1 -----------------------------------------------------------------------------------
def make_stage1_lists(desc: DatasetDescription, val_fraction: float = 0.1, seed: int = 10086) -> dict:
    """Write stage1/{train,val,test}.txt: training images and their mirrors (minus a held-out
    validation part, unmirrored, whose stage-1 errors the refiner's simulation is fitted on) and the
    test images, each line ``<image> <offsets of the joints from the image centre>``, shuffled."""
    rng = np.random.default_rng(seed)
    paths = annotation_paths(desc.root, desc)
    train, test = read_split(desc, "train"), read_split(desc, "test")
    for split, items in (("train", train), ("test", test)):
        if not items:
            raise ValueError(f"{paths[split]}: no annotation lines (the {split} set is empty)")
    order = rng.permutation(len(train))
    n_val = int(round(val_fraction * len(train)))
    val_items, train_items = [train[i] for i in order[:n_val]], [train[i] for i in order[n_val:]]
    rows = {"train": [], "val": [], "test": []}
    for name, joints in train_items:
        path = image_path(name, desc)
        mirrored, mjoints = stages.mirror_sample(path, joints, desc)
        rows["train"] += [(path, stages.stage1_targets(joints, desc.size)),
                          (mirrored, stages.stage1_targets(mjoints, desc.size))]
    rows["val"] = [(image_path(n, desc), stages.stage1_targets(j, desc.size)) for n, j in val_items]
    for name, _ in val_items + test:  # listed as they are: the LMDB tool must be able to read them
        stages.read_training_image(image_path(name, desc), desc)
    rows["test"] = [(image_path(n, desc), stages.stage1_targets(j, desc.size)) for n, j in test]
    lists = {}
    for split, items in rows.items():
        items = [items[i] for i in rng.permutation(len(items))]
        lists[split] = stages.write_list(stages.list_path(1, split, desc), items)
        log(f"stage 1 {split}: {len(items)} images -> {lists[split]}")
    return lists


def read_stage1_list(path, desc: DatasetDescription) -> tuple[list[str], np.ndarray]:
    """A stage-1 list's images and absolute joints (N, J, 2)."""
    names, targets = stages.read_list(path)
    return names, stages.stage1_joints(targets, desc.size)


# -- predictions of stages 1..s ----------------------------------------------------------------
def write_outputs(path, names, truth, pred) -> Path:
    """Seed format: ``<image> <2J true coordinates> <2J predicted coordinates>`` (absolute pixels)."""
    rows = [(n, np.concatenate([t.ravel(), p.ravel()])) for n, t, p in zip(names, truth, pred)]
    return stages.write_list(path, rows)


def read_outputs(path, desc: DatasetDescription):
    """(names, truth (N, J, 2), predictions (N, J, 2)) of an output file."""
    names, values = stages.read_list(path)
    j = desc.num_joints
    if values.shape[1:] != (4 * j,):
        raise ValueError(f"{path}: expected {4 * j} values a line (truth and prediction of {j} joints)")
    return names, values[:, :2 * j].reshape(-1, j, 2), values[:, 2 * j:].reshape(-1, j, 2)


# -- stage s >= 2 ------------------------------------------------------------------------------
def _write_crops(desc: DatasetDescription, directory: Path, names, joints, centres, sides, joint_idx, crop_px: int):
    """Crops of side sides[i] around centres (N, K, 2) of image i, PNG at crop_px x crop_px; list rows."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, truth, cs, side, idx in zip(names, joints, centres, sides, joint_idx):
        image = preprocess.load_image(name, desc)
        for c, j in zip(cs, idx):
            path = directory / f"{Path(name).stem}_{j:02d}.png"
            if not cv2.imwrite(str(path), preprocess.crop(image, c, side, crop_px)):
                raise OSError(f"cannot write {path}")
            rows.append((path, stages.refine_targets(truth[j], c, side, crop_px)))
    return rows


def make_refine_data(desc: DatasetDescription, stage: int, crop_px: int, displacements: str = "simulated",
                     per_image: int = 1, seed: int = 10086) -> dict:
    """Write stage<s>/{train,val}.txt and their crops for refiner stage s >= 2.

    Training crops: `per_image` joints of every stage-1 training image, centred on a simulated
    stage s-1 estimate (displacement sampled from the normal fitted per joint on the held-out
    predictions, `displacements="simulated"`) or on the stage s-1 prediction on that training image
    (`"predictions"`, the seed's way); side alpha x the true torso diameter. Validation crops: every joint
    of the held-out images around the real stage s-1 predictions, side measured on the prediction
    (as at deployment)."""
    if stage < 2:
        raise ValueError(f"refiner stages are 2 and above, got {stage}")
    rng = np.random.default_rng([seed, stage])
    sdir = stages.stage_dir(stage, desc)
    val_names, val_truth, val_pred = read_outputs(stages.output_path(stage - 1, "val", desc), desc)
    model = stages.DisplacementModel.fit(val_pred, val_truth,
                                         stages.floored_diameter(torso_diameter(val_truth, desc), desc.size))
    sdir.mkdir(parents=True, exist_ok=True)
    model.to_json(sdir / "displacements.json")
    if displacements == "simulated":
        names, truth = read_stage1_list(stages.list_path(1, "train", desc), desc)
        diam = stages.floored_diameter(torso_diameter(truth, desc), desc.size)
        idx = stages.choose_joints(rng, len(names), per_image, desc.num_joints)
        centres = stages.simulated_centres(rng, truth, idx, model, diam)
    elif displacements == "predictions":
        names, truth, pred = read_outputs(stages.output_path(stage - 1, "train", desc), desc)
        diam = stages.floored_diameter(torso_diameter(truth, desc), desc.size)
        idx = stages.choose_joints(rng, len(names), per_image, desc.num_joints)
        centres = np.take_along_axis(pred, idx[..., None], axis=1)
    else:
        raise ValueError(f"displacements must be 'simulated' or 'predictions', not {displacements!r}")
    train_rows = _write_crops(desc, stages.crops_dir(stage, "train", desc), names, truth, centres,
                              desc.alpha * diam, idx, crop_px)
    all_joints = np.tile(np.arange(desc.num_joints), (len(val_names), 1))
    val_sides = np.array([stages.crop_side(p, desc.size, desc) for p in val_pred])
    val_rows = _write_crops(desc, stages.crops_dir(stage, "val", desc), val_names, val_truth, val_pred, val_sides,
                            all_joints, crop_px)
    result = {}
    for split, rows in (("train", train_rows), ("val", val_rows)):
        rows = [rows[i] for i in rng.permutation(len(rows))]
        result[split] = stages.write_list(stages.list_path(stage, split, desc), rows)
        log(f"stage {stage} {split}: {len(rows)} crops -> {result[split]}")
    err = np.linalg.norm(model.mean, axis=1).mean()
    log(f"stage {stage - 1} errors on {len(val_names)} held-out images: mean |bias| {err:.3f}, "
        f"mean std {np.sqrt(np.trace(model.cov, axis1=1, axis2=2)).mean():.3f} torso diameters "
        f"({displacements} displacements)")
    return result


# -- solvers -------------------------------------------------------------------------------------
def derive_solver(src, dst, overrides: dict[str, str], train_batch: int | None = None) -> Path:
    """Write a run-local solver: `src` with fields replaced (values in prototxt syntax). With
    `train_batch`, the net is inlined (`net_param`) with the TRAIN Data layers' batch_size changed;
    otherwise it stays a reference to the committed net file."""
    param = protoio.read_prototxt(src, caffe_pb2.SolverParameter)
    for key, value in overrides.items():
        if key not in caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name:
            raise ValueError(f"{src}: SolverParameter has no field {key!r}")
        param.ClearField(key)
        text_format.Merge(f"{key}: {value}", param)
    note = dict(overrides)
    if train_batch:
        if not param.HasField("net"):
            raise ValueError(f"{src}: a batch override needs the solver's `net` file")
        net = protoio.read_prototxt(param.net, caffe_pb2.NetParameter)
        for layer in net.layer:
            if layer.type == "Data" and any(r.phase == caffe_pb2.TRAIN for r in layer.include):
                layer.data_param.batch_size = train_batch
        param.ClearField("net")
        param.net_param.CopyFrom(net)
        note["TRAIN batch_size"] = train_batch
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    protoio.atomic_write(dst, f"# derived from {src} by deeppose_train.sh: {note}\n" + text_format.MessageToString(param))
    return dst


def final_snapshot(solver) -> Path:
    """The weights file a solver writes when it finishes."""
    param = protoio.read_prototxt(solver, caffe_pb2.SolverParameter)
    return Path(f"{param.snapshot_prefix}_iter_{param.max_iter}.caffemodel")


def latest_state(solver) -> Path | None:
    """The newest `.solverstate` an interrupted run of this solver left (iteration below max_iter;
    `caffe train` snapshots when stopped with SIGINT), or None."""
    param = protoio.read_prototxt(solver, caffe_pb2.SolverParameter)
    prefix = Path(param.snapshot_prefix)
    states = []
    for path in prefix.parent.glob(f"{prefix.name}_iter_*.solverstate"):
        n = path.name[len(prefix.name) + len("_iter_"):-len(".solverstate")]
        if n.isdigit() and int(n) < param.max_iter:
            states.append((int(n), path))
    return max(states)[1] if states else None


def read_report(path) -> dict:
    """An accuracy report written by `pyaccuracy.py --out`; an error naming the file if it is
    missing, cut or not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a complete accuracy report ({e})") from None
    if not isinstance(report, dict) or not report.get("stages") or "images" not in report:
        raise ValueError(f"{path}: not a complete accuracy report (no stages)")
    return report


def input_size(deploy) -> tuple[int, int]:
    """(rows, cols) of a deploy prototxt's Input layer."""
    net = protoio.read_prototxt(deploy, caffe_pb2.NetParameter)
    for layer in net.layer:
        if layer.type == "Input":
            return tuple(layer.input_param.shape[0].dim[2:4])
    raise ValueError(f"{deploy}: no Input layer")


def main(argv=None) -> None:
    """Helpers for deeppose_train.sh: `derive-solver SRC DST key=value...`, `final-snapshot SOLVER`,
    `latest-state SOLVER`, `input-size DEPLOY`, `check-report JSON` (exit 1 unless a complete accuracy
    report)."""
    p = argparse.ArgumentParser(prog="python -m deeppose.pipeline", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("derive-solver")
    d.add_argument("src"), d.add_argument("dst"), d.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    d.add_argument("--train-batch", type=int, help="TRAIN Data layers' batch_size (inlines the net)")
    sub.add_parser("final-snapshot").add_argument("solver")
    sub.add_parser("latest-state").add_argument("solver")
    sub.add_parser("input-size").add_argument("deploy")
    sub.add_parser("check-report").add_argument("report")
    args = p.parse_args(argv)
    if args.cmd == "derive-solver":
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            p.error(f"overrides must be KEY=VALUE: {bad}")
        print(derive_solver(args.src, args.dst, dict(o.split("=", 1) for o in args.overrides), args.train_batch))
    elif args.cmd == "final-snapshot":
        print(final_snapshot(args.solver))
    elif args.cmd == "latest-state":
        print(latest_state(args.solver) or "")
    elif args.cmd == "check-report":
        try:
            read_report(args.report)
        except ValueError as e:
            print(e, file=sys.stderr)
            return 1
    else:
        print(*input_size(args.deploy))


if __name__ == "__main__":
    sys.exit(main())
