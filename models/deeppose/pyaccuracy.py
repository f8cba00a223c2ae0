#!/usr/bin/env python3
"""Loss, PCP, PDJ of the stage-1 model on the whole test set: python models/deeppose/pyaccuracy.py MODEL [--json]"""
import sys

from deeppose.evaluate import main

if __name__ == "__main__":
    main(sys.argv[1:], n_models=1, default_plot="models/deeppose/pdj_curve.png")
