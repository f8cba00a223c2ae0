#!/usr/bin/env python3
"""Predict one image with the stage-1 model: python models/deeppose/pytest.py MODEL IMAGE [--out PNG] [--show]"""
import sys

from deeppose.cli import predict_main

if __name__ == "__main__":
    predict_main(sys.argv[1:], n_models=1)
