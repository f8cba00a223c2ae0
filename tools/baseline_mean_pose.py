#!/usr/bin/env python3
"""Baseline: predict the mean training pose (absolute pixels) for every test image; print PDJ/PCP."""

import argparse

import numpy as np

from deeppose import datasets
from deeppose.cli import command
from deeppose.dataset import read_split, torso_diameter
from deeppose.metrics import PDJ_FRACTIONS, euclidean_loss, pcp, pdj


@command
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    datasets.add_argument(p)
    args = p.parse_args(argv)
    desc = datasets.selected(args.dataset)

    train = np.stack([j for _, j in read_split(desc, "train")])
    gt = np.stack([j for _, j in read_split(desc, "test")])
    pred = np.broadcast_to(train.mean(axis=0), gt.shape)
    pdj_score = pdj(pred, gt, torso_diameter(gt, desc))
    pcp_score = pcp(pred, gt, desc.limbs)
    print(f"mean training pose of {len(train)} images, tested on {len(gt)}")
    print(f"Loss {euclidean_loss(pred, gt):.2f}  PCP {pcp_score.overall:.3f}")
    print("PDJ " + "  ".join(f"{f:.2f}:{r:.3f}" for f, r in zip(PDJ_FRACTIONS, pdj_score.overall)))
    print("per joint PDJ@0.2: " + "  ".join(
        f"{name} {r:.2f}" for name, r in zip(desc.joint_names, pdj_score.per_item[list(PDJ_FRACTIONS).index(0.2)])))


if __name__ == "__main__":
    main()
