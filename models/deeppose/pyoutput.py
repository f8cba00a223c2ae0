#!/usr/bin/env python3
"""Predictions of the cascade (MODEL [REFINER...]) on the stage-1 lists, for the next stage's data:
python models/deeppose/pyoutput.py MODEL [--split val] [--split train]"""
import sys

from deeppose.cli import output_main

if __name__ == "__main__":
    output_main(sys.argv[1:])
