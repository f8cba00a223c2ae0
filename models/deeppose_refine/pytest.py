#!/usr/bin/env python3
"""Predict one image with stage 1 and the refiner: python models/deeppose_refine/pytest.py MODEL1 MODEL2 IMAGE"""
import sys

from deeppose.cli import predict_main

if __name__ == "__main__":
    predict_main(sys.argv[1:], n_models=2)
