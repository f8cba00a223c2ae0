#!/usr/bin/env python3
"""Baseline: predict the mean training pose (absolute pixels) for every test image; print PDJ/PCP."""

import argparse

import numpy as np

from deeppose.dataset import K2HPD, annotation_paths, read_annotations, torso_diameter
from deeppose.metrics import PDJ_FRACTIONS, euclidean_loss, pcp, pdj


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=K2HPD.root, help="data set directory (default %(default)s)")
    args = p.parse_args(argv)

    paths = annotation_paths(args.data, K2HPD)
    train = np.stack([j for _, j in read_annotations(paths["train"], K2HPD)])
    gt = np.stack([j for _, j in read_annotations(paths["test"], K2HPD)])
    pred = np.broadcast_to(train.mean(axis=0), gt.shape)
    pdj_score = pdj(pred, gt, torso_diameter(gt, K2HPD))
    pcp_score = pcp(pred, gt, K2HPD.limbs)
    print(f"mean training pose of {len(train)} images, tested on {len(gt)}")
    print(f"Loss {euclidean_loss(pred, gt):.2f}  PCP {pcp_score.overall:.3f}")
    print("PDJ " + "  ".join(f"{f:.2f}:{r:.3f}" for f, r in zip(PDJ_FRACTIONS, pdj_score.overall)))
    print("per joint PDJ@0.2: " + "  ".join(
        f"{name} {r:.2f}" for name, r in zip(K2HPD.joint_names, pdj_score.per_item[list(PDJ_FRACTIONS).index(0.2)])))


if __name__ == "__main__":
    main()
