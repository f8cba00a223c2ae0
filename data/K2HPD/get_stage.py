#!/usr/bin/env python3
"""Training data of DeepPose stage S (run from the repository root).

--stage 1: mirror the training images (<name>m.png next to each), hold out a validation part,
           write data/K2HPD/stage1/{train,val,test}.txt (joint offsets from the image centre).
--stage S >= 2: crops around stage S-1 estimates and their targets in data/K2HPD/stageS/
           (needs data/K2HPD/stage<S-1>/output_val.txt from models/deeppose*/pyoutput.py;
           --displacements predictions also needs output_train.txt).
"""

import argparse

from deeppose.cli import command
from deeppose.pipeline import input_size, make_refine_data, make_stage1_lists


@command
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", type=int, required=True, help="cascade stage, 1 or more")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="stage 1: part of the training images held out (default %(default)s)")
    p.add_argument("--displacements", choices=("simulated", "predictions"), default="simulated",
                   help="stage >= 2: sample the held-out error distribution per joint (default, the "
                        "paper) or use the previous stage's predictions on the training images (the seed)")
    p.add_argument("--per-image", type=int, default=1,
                   help="stage >= 2: joints cropped per training image (default %(default)s, as the seed)")
    p.add_argument("--seed", type=int, default=10086)
    args = p.parse_args(argv)
    if args.stage < 1:
        p.error("--stage must be 1 or more")
    if args.stage == 1:
        make_stage1_lists(val_fraction=args.val_fraction, seed=args.seed)
    else:
        from deeppose.cascade import REFINE  # imports torch: only the refiner stages need it

        rows, cols = input_size(REFINE.deploy)
        if rows != cols:
            p.error(f"{REFINE.deploy}: the refiner input must be square, got {rows}x{cols}")
        make_refine_data(args.stage, rows, args.displacements, args.per_image, seed=args.seed)


if __name__ == "__main__":
    main()
