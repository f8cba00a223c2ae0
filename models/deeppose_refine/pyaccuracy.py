#!/usr/bin/env python3
"""Loss, PCP, PDJ of stage 1 and the refined cascade on the whole test set:
python models/deeppose_refine/pyaccuracy.py MODEL1 MODEL2 [--json]"""
import sys

from deeppose.evaluate import main

if __name__ == "__main__":
    main(sys.argv[1:], n_models=2, default_plot="models/deeppose_refine/pdj_curve.png")
