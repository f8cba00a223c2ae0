#!/usr/bin/env python3
"""Plot the training loss of a `caffe train` log ("Iteration N ..., loss = L" lines) as a PNG:
python models/deeppose/draw_loss.py [LOG] [--out PNG]"""
import argparse
import re

from caffe.plot import line_chart

LINE = re.compile(r"Iteration (\d+).*?, loss = ([-+0-9.eEnaif]+)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("log", nargs="?", default="models/deeppose/deeppose.log")
    p.add_argument("--out", help="PNG (default: the log's name with _loss.png)")
    args = p.parse_args(argv)
    with open(args.log, encoding="utf-8", errors="replace") as f:
        points = [(int(m[1]), float(m[2])) for m in map(LINE.search, f) if m]
    if not points:
        p.error(f"{args.log}: no 'Iteration N ..., loss = L' lines")
    out = args.out or args.log.rsplit(".", 1)[0] + "_loss.png"
    its, losses = zip(*points)
    line_chart({"train loss": (its, losses)}, out, args.log, "iteration", "loss")
    print(f"{len(points)} points -> {out}")


if __name__ == "__main__":
    main()
