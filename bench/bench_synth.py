#!/usr/bin/env python3
"""Images per CPU second of the synthetic depth renderer (one thread), per stage and image size.

CPU time of this process is measured (not wall time), so other load on the machine barely
changes the numbers.

Columns: scene = sampling the person and the room; render = ray casting (true depth + labels);
sensor = noise and dropouts; png = 8-bit encoding; total = all of it (what make_dataset does per
image, less the file write).
"""

import argparse
import time

import cv2
import numpy as np

from deeppose.datasets import K2HPD
from deeppose.synth.kinect import SENSOR_SIZE, camera, measure, to_gray8
from deeppose.synth.scene import sample_scene


def bench(size, n, seed=0):
    cam = camera(size)
    times = np.zeros(4)
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        t0 = time.process_time()
        scene = sample_scene(rng, cam)
        t1 = time.process_time()
        depth, _ = scene.render()
        t2 = time.process_time()
        image = to_gray8(measure(depth, rng))
        t3 = time.process_time()
        cv2.imencode(".png", image)
        times += np.diff([t0, t1, t2, t3, time.process_time()])
    return n / times, n / times.sum()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=500, help="images per size (default %(default)s)")
    args = p.parse_args()
    cv2.setNumThreads(1)
    print(f"{'size':>9} {'scene':>8} {'render':>8} {'sensor':>8} {'png':>8} {'total':>8}   images per CPU second")
    for size in (K2HPD.size, SENSOR_SIZE):
        stages, total = bench(size, args.n)
        print(f"{size[0]:>4}x{size[1]:<4} " + " ".join(f"{v:8.0f}" for v in stages) + f" {total:8.0f}")


if __name__ == "__main__":
    main()
