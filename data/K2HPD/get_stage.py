#!/usr/bin/env python3
"""Training data of DeepPose stage S (run from the repository root).

--stage 1: mirror the training images (<name>m.png next to each), hold out a validation part,
           write <root>/stage1/{train,val,test}.txt (joint offsets from the image centre, in the
           --targets units recorded in <root>/stage1/targets.json, which the later stages follow);
           an image not of the description's size is listed as its letterboxed copy in
           <root>/stage1/framed/ (recorded in <root>/stage1/frames.json).
--stage S >= 2: crops around stage S-1 estimates and their targets: <root>/stageS/train.txt
           (training images) and val.txt (the held-out images, around the real predictions)
           (needs <root>/stage<S-1>/output_val.txt from models/deeppose*/pyoutput.py;
           --displacements predictions also needs output_train.txt).
<root> is the dataset's directory (data/K2HPD for K2HPD). First the stage's nets are fitted to
the dataset's joints (nets.stage_nets: run-local copies where the committed ones do not fit).
"""

import argparse

from deeppose import datasets, nets, stage_data
from deeppose.cli import command
from deeppose.options import fraction, one_of, positive_int
from deeppose.steps import DISPLACEMENTS, make_refine_data, make_stage1_lists


@command
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", type=positive_int, required=True, help="cascade stage, 1 or more")
    p.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="stage 1: part of the training images held out (default %(default)s)")
    p.add_argument("--displacements", type=one_of(*DISPLACEMENTS), default="simulated",
                   metavar="{" + ",".join(DISPLACEMENTS) + "}",
                   help="stage >= 2: sample the held-out error distribution per joint (default, the "
                        "paper) or use the previous stage's predictions on the training images (the seed)")
    p.add_argument("--per-image", type=positive_int, default=1,
                   help="stage >= 2: joints cropped per training image (default %(default)s, as the seed)")
    p.add_argument("--targets", choices=stage_data.TARGET_UNITS, default="pixels",
                   help="stage 1: the stages' target units, recorded with the lists: pixels (default, the seed's "
                        "offsets in pixels) or box (the paper's: offsets / the image's size; a refiner's / the crop side)")
    datasets.add_seed_argument(p)
    datasets.add_argument(p)
    args = p.parse_args(argv)
    desc, seed = datasets.selected(args.dataset), datasets.selected_seed(args.seed)
    _, refine = nets.stage_nets(desc)
    if args.stage == 1:
        make_stage1_lists(desc, seed, val_fraction=args.val_fraction, units=args.targets)
    else:
        crop_px, _ = nets.input_size(refine.deploy)
        make_refine_data(desc, args.stage, crop_px, seed, args.displacements, args.per_image)


if __name__ == "__main__":
    main()
