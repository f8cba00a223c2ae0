#!/usr/bin/env python3
"""Baseline: the mean training pose predicted for every test image (the accuracy report's "mean
pose" column, `deeppose.evaluate.mean_pose`: the mean of the stage-1 training list, the training set
as stage 1's Data layer sees it, mirrors included, held-out images not); prints Loss, PCP and PDJ."""

import argparse

import numpy as np

from deeppose import datasets
from deeppose.cli import command
from deeppose.dataset import image_path, read_split
from deeppose.evaluate import REPORT_FRACTION, mean_pose_baseline, scores


@command
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    datasets.add_argument(p)
    args = p.parse_args(argv)
    desc = datasets.selected(args.dataset)

    items = read_split(desc, "test")
    truth = np.stack([j for _, j in items])
    s = scores(mean_pose_baseline(desc, [image_path(n, desc) for n, _ in items]), truth, desc)
    key = f"{REPORT_FRACTION:.2f}"
    print(f"mean training pose of {desc.name}, tested on {len(truth)} images")
    print(f"Loss {s['loss']:.2f}  PCP {s['pcp']:.3f}")
    print("PDJ " + "  ".join(f"{f}:{r:.3f}" for f, r in s["pdj"].items()))
    print(f"per joint PDJ@{key}: " + "  ".join(f"{j} {r:.2f}" for j, r in s["pdj_per_joint"][key].items()))


if __name__ == "__main__":
    main()
