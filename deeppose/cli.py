"""Entry points of the seed's model scripts (models/deeppose*/pytest.py, pyoutput.py): one image's
joints with a skeleton PNG; the cascade's predictions on the stage-1 lists."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from caffe.filelock import LockedError

from . import datasets, preprocess, steps
from .draw import draw_skeleton, save_png
from .options import one_of, positive_int


def command(main):
    """A user-facing entry point: a bad input (missing or unreadable file, malformed line, net or
    weights that do not fit, an output another process is writing) ends the command with one line
    naming it, exit status 1."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (OSError, ValueError, LockedError) as e:
            sys.exit(f"error: {e}")

    return run


@command
def predict_main(argv, n_models: int) -> None:
    """models/*/pytest.py: print the joints of one image after each stage, write the skeleton PNG."""
    p = argparse.ArgumentParser(description="Predict the joints of one image and draw them")
    p.add_argument("models", nargs=n_models, metavar="MODEL", help="stage-1 weights, then refiner weights")
    p.add_argument("image")
    p.add_argument("--out", help="PNG to write (default out/<image name>_stage<S>.png)")
    p.add_argument("--show", action="store_true", help="also show it in a window (needs a display)")
    datasets.add_argument(p)
    args = p.parse_args(argv)
    desc = datasets.selected(args.dataset)
    image = preprocess.load_image(args.image, desc)
    from .cascade import Cascade  # torch: imported by the commands that run a net, not by `command`'s users

    preds = Cascade(desc, args.models[0], args.models[1:]).predict([image])
    panels = []
    for s, joints in enumerate(preds, 1):
        print(f"stage {s} joints (x, y):")
        for name, (x, y) in zip(desc.joint_names, joints[0]):
            print(f"  {name:16} {x:8.2f} {y:8.2f}")
        panel = draw_skeleton(image, joints[0], desc)
        cv2.putText(panel, f"stage {s}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    out = Path(args.out or f"out/{Path(args.image).stem}_stage{len(preds)}.png")
    save_png(out, np.hstack(panels))
    print(f"wrote {out}")
    if args.show:
        show(out, np.hstack(panels))


def show(title, image) -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("--show: no display; see the PNG instead")
        return
    try:
        cv2.imshow(str(title), image)
        cv2.waitKey(0)
    except cv2.error:
        print("--show: this OpenCV has no window support (headless); see the PNG instead")


@command
def output_main(argv) -> None:
    """models/deeppose/pyoutput.py: the cascade's predictions on stage-1 lists, in the seed's
    output.txt format, as <dataset root>/stage<S>/output_<split>.txt (S = number of models)."""
    p = argparse.ArgumentParser(description=output_main.__doc__)
    p.add_argument("models", nargs="+", metavar="MODEL", help="stage-1 weights, then refiner weights")
    p.add_argument("--split", action="append", type=one_of("train", "val", "test"), metavar="{train,val,test}",
                   help="stage-1 list(s) to predict (default: val; repeatable)")
    p.add_argument("--batch", type=positive_int, default=32, help="images per forward pass (default %(default)s)")
    datasets.add_argument(p)
    args = p.parse_args(argv)
    steps.write_predictions(datasets.selected(args.dataset), args.models, args.split or ["val"], args.batch)
