"""The accuracy report (the pipeline's accuracy steps, models/*/pyaccuracy.py): every test image
through the cascade (batched), the mean-pose baseline, Loss / PCP / PDJ per stage, a per-joint
table and a PDJ-curve PNG; the report's JSON file, its writer and its reader."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from caffe.plot import line_chart
from caffe.atomic_file import atomic_write

from . import datasets, stage_data
from .cli import command
from .dataset import DatasetDescription, image_path, read_split, torso_diameter
from .metrics import PDJ_FRACTIONS, euclidean_loss, pcp, pdj
from .options import positive_int

REPORT_FRACTION = 0.2  # the PDJ threshold of the per-joint table


def mean_pose(desc: DatasetDescription) -> np.ndarray:
    """The mean-pose baseline's pose: the mean stage-1 target (offsets from the image centre,
    (J, 2)) of the training set as stage 1's Data layer sees it, i.e. of the stage-1 training list
    (the training images and their mirrors, without the held-out validation images)."""
    path = stage_data.list_path(1, "train", desc)
    if not path.exists():
        raise ValueError(f"{path}: no stage-1 training list, of which the mean pose is the mean: "
                         "make it first (the pipeline's stage1 step, get_stage.py --stage 1)")
    _, targets = stage_data.read_list(path)
    if targets.shape[1:] != (2 * desc.num_joints,):
        raise ValueError(f"{path}: {targets.shape[1:]} values a line; the {desc.name} description's "
                         f"stage-1 targets are {2 * desc.num_joints} (x, y of {desc.num_joints} joints)")
    return targets.mean(axis=0).reshape(desc.num_joints, 2)


def mean_pose_baseline(desc: DatasetDescription, images) -> np.ndarray:
    """The mean-pose baseline's prediction for test images (N, J, 2): `mean_pose` about the frame's
    centre, the same for every image, in each image's own pixels (`stage_data.frames_of`)."""
    pose = stage_data.stage1_joints(mean_pose(desc), desc.size, stage_data.target_units(desc))
    return np.stack([frame.from_frame(pose) for _, frame in stage_data.frames_of(images, desc)])


def scores(pred, truth, desc: DatasetDescription) -> dict:
    """Loss, PCP (overall, per limb), PDJ (per fraction; per joint at each fraction), mean error."""
    p = pdj(pred, truth, torso_diameter(truth, desc))
    c = pcp(pred, truth, desc.limbs)
    return {
        "loss": euclidean_loss(pred, truth),
        "pcp": float(c.overall),
        "pcp_per_limb": {f"{desc.joint_names[a]}-{desc.joint_names[b]}": float(r)
                         for (a, b), r in zip(desc.limbs, c.per_item)},
        "pdj": {f"{f:.2f}": float(r) for f, r in zip(PDJ_FRACTIONS, p.overall)},
        "pdj_per_joint": {f"{f:.2f}": dict(zip(desc.joint_names, map(float, row)))
                          for f, row in zip(PDJ_FRACTIONS, p.per_item)},
        "mean_error_px": dict(zip(desc.joint_names,
                                  map(float, np.linalg.norm(pred - truth, axis=-1).mean(axis=0)))),
    }


def image_errors(pred, truth, desc: DatasetDescription, images) -> np.ndarray:
    """Each image's mean joint error in torso diameters (N,), the diameters' floor measured in the frame."""
    _, pred, truth = stage_data.in_frame(desc, images, pred, truth)
    diam = stage_data.floored_diameter(torso_diameter(truth, desc), desc.size)
    return np.linalg.norm(pred - truth, axis=-1).mean(axis=1) / diam


def write_results_sheet(path, desc: DatasetDescription, names, truth, preds, per_row: int = 4) -> None:
    """The results sheet: the test images of the best, median and worst last-stage errors
    (`image_errors`), `per_row` of each, drawn once per stage with the truth and that stage's error."""
    from . import draw, preprocess

    errors = [image_errors(p, truth, desc, [image_path(n, desc) for n in names]) for p in preds]
    order = np.argsort(errors[-1], kind="stable")
    mid = max(0, len(order) // 2 - per_row // 2)
    picks = {"best": order[:per_row], "median": order[mid:mid + per_row], "worst": order[::-1][:per_row]}
    rows = [(label, [(preprocess.load_image(image_path(names[i], desc), desc), truth[i],
                      [(f"stage {s}: {e[i]:.2f}", p[i]) for s, (p, e) in enumerate(zip(preds, errors), 1)])
                     for i in idx]) for label, idx in picks.items()]
    draw.results_sheet(rows, path, desc, f"{len(names)} test images of {desc.name}, by the last stage's error "
                       "(the mean joint error in torso diameters): truth yellow; prediction: right red, left blue, "
                       "centre green")


def evaluate(desc: DatasetDescription, stage1_weights, refine_weights=(), batch: int = 32, sheet=None) -> dict:
    """Scores of the baseline and of every stage on the whole test set, in each image's own pixels
    (and the results sheet, a PNG, at `sheet`)."""
    items = read_split(desc, "test")
    if not items:
        raise ValueError(f"{desc.root}: the test set is empty")
    truth = np.stack([j for _, j in items])
    from .cascade import Cascade  # torch: loaded by the commands that run a net

    start = time.time()
    cascade = Cascade(desc, stage1_weights, refine_weights, batch)
    images = [str(image_path(n, desc)) for n, _ in items]
    preds = cascade.predict_files(images)
    seconds = time.time() - start
    if sheet:
        write_results_sheet(sheet, desc, [n for n, _ in items], truth, preds)
    results = {"mean pose": scores(mean_pose_baseline(desc, images), truth, desc)}
    for s, pred in enumerate(preds, 1):
        results[f"stage {s}"] = scores(pred, truth, desc)
    return {"images": len(items), "seconds": seconds, "models": [str(stage1_weights), *map(str, refine_weights)],
            "stages": results}


def print_report(report: dict, desc: DatasetDescription) -> None:
    names = list(report["stages"])
    last = report["stages"][names[-1]]
    print(f"{report['images']} test images ({report['seconds']:.1f} s through the cascade)")
    print(f"Loss: {last['loss']:.6f}")  # the seed's lines, for the last stage
    print(f"PCP: {last['pcp']:.6f}")
    for f, r in last["pdj"].items():
        print(f"PDJ for norm {f} : {r:.6f}")
    print("\n" + f"{'':16}" + "".join(f"{n:>12}" for n in names))
    print(f"{'Loss':16}" + "".join(f"{report['stages'][n]['loss']:12.2f}" for n in names))
    print(f"{'PCP':16}" + "".join(f"{report['stages'][n]['pcp']:12.3f}" for n in names))
    for f in last["pdj"]:
        print(f"{'PDJ@' + f:16}" + "".join(f"{report['stages'][n]['pdj'][f]:12.3f}" for n in names))
    key = f"{REPORT_FRACTION:.2f}"
    print(f"\nper joint: PDJ@{key} / mean error (px)")
    print(f"{'joint':16}" + "".join(f"{n:>16}" for n in names))
    for j in desc.joint_names:
        print(f"{j:16}" + "".join(f"{report['stages'][n]['pdj_per_joint'][key][j]:9.3f} /{report['stages'][n]['mean_error_px'][j]:5.1f}"
                                  for n in names))


def plot_pdj(report: dict, path) -> None:
    series = {name: (PDJ_FRACTIONS, [s["pdj"][f"{f:.2f}"] for f in PDJ_FRACTIONS])
              for name, s in report["stages"].items()}
    line_chart(series, path, f"PDJ on {report['images']} test images", "fraction of torso diameter",
               "PDJ", ylim=(0, 1))


def write_report(path, report: dict) -> None:
    """Write the report as JSON, atomically (the file exists only once complete), without its
    timing (so that a repeated run's report repeats byte for byte)."""
    atomic_write(path, json.dumps({k: v for k, v in report.items() if k != "seconds"}, indent=1) + "\n")


def read_report(path) -> dict:
    """A report `write_report` wrote; an error naming the file if it is missing, cut or not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a complete accuracy report ({e})") from None
    if not isinstance(report, dict) or not report.get("stages") or "images" not in report:
        raise ValueError(f"{path}: not a complete accuracy report (no stages)")
    return report


def accuracy(desc: DatasetDescription, models, plot, out=None, sheet=None, batch: int = 32,
             as_json: bool = False) -> dict:
    """The report of the cascade `models` (stage-1 weights, then refiners'): its PDJ curves drawn
    at `plot` (the results sheet at `sheet`), written to `out` last (`write_report`), then printed
    (as JSON with `as_json`)."""
    report = evaluate(desc, models[0], models[1:], batch=batch, sheet=sheet)
    plot_pdj(report, plot)
    report["plot"] = str(plot)
    if out:
        write_report(out, report)
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report, desc)
        print(f"\nPDJ curves: {plot}" + (f"; results sheet: {sheet}" if sheet else ""))
    return report


@command
def main(argv, n_models: int, default_plot: str) -> None:
    """Entry point of models/*/pyaccuracy.py: `n_models` weight files (stage 1, refiners...)."""
    p = argparse.ArgumentParser(description="Loss, PCP and PDJ of the cascade on the whole test set")
    p.add_argument("models", nargs=n_models, metavar="MODEL", help="stage-1 weights, then refiner weights")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="JSON", help="write the JSON report to this file, atomically and "
                   "last: the file exists only once the report is complete")
    p.add_argument("--plot", default=default_plot, help="PDJ-curve PNG (default %(default)s)")
    p.add_argument("--batch", type=positive_int, default=32, help="images per forward pass (default %(default)s)")
    p.add_argument("--sheet", metavar="PNG", help="also draw the results sheet (the best, median and worst test "
                   "images with the truth and each stage's skeleton) into this PNG")
    datasets.add_argument(p)
    args = p.parse_args(argv)
    accuracy(datasets.selected(args.dataset), args.models, args.plot, args.out, args.sheet, args.batch, args.json)
