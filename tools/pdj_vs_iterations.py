#!/usr/bin/env python3
"""What more training time buys: PDJ@0.2 of stage 1 and of the cascade against training
iterations, from the run's own length up to FACTOR times it (run from the repository root, after
`./deeppose_train.sh` has finished, with the same options).

Both stages continue from the run's final .solverstate (exact resume) to FACTOR x their max_iter
with a snapshot at every multiple of it, into models/<net>/more_time/ (an interrupted run of this
command resumes from the newest of them); point k pairs stage 1 after
k x iter1 iterations with the refiner after k x iter2, tested on the whole test set. The refiner
keeps the run's stage-2 training crops (simulated from the first stage-1 model's errors), so a
longer run that also remade them could do a little better. Point 1 is the run itself. Writes the
scores as JSON and the curve as PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import caffe
from caffe.atomic_file import atomic_write
from caffe.plot import line_chart

from deeppose import driver, solvers
from deeppose.cli import command
from deeppose.evaluate import REPORT_FRACTION, evaluate


def continue_training(stage: driver.Stage, factor: int) -> list[Path]:
    """Train `stage` on from its final snapshot to factor x max_iter; the weights after each multiple."""
    param = caffe.io.read_solver_prototxt(stage.solver)
    iters = param.max_iter
    prefix = Path(param.snapshot_prefix)
    state = Path(f"{prefix}_iter_{iters}.solverstate")
    if not state.exists():
        raise FileNotFoundError(f"{state}: no final snapshot of stage {stage.number}: run ./deeppose_train.sh first")
    longer = prefix.parent.parent / "more_time" / prefix.name
    solver = solvers.derive_solver(stage.solver, longer.parent / Path(stage.solver).name,
                                   {"max_iter": factor * iters, "snapshot": iters, "test_interval": factor * iters,
                                    "snapshot_prefix": str(longer)}, net=None)
    weights = [stage.final] + [Path(f"{longer}_iter_{k * iters}.caffemodel") for k in range(2, factor + 1)]
    if not all(w.exists() for w in weights):
        caffe.set_mode_cpu()
        s = caffe.get_solver(str(solver))
        s.solve(str(solvers.latest_state(solver) or state))  # an interrupted continuation resumes
    return weights


@command
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factor", type=int, default=4, help="train up to FACTOR x the run's iterations (default %(default)s)")
    p.add_argument("--out", default="docs/pdj_vs_iterations.png", help="the curve (PNG, default %(default)s)")
    p.add_argument("--json", default="docs/pdj_vs_iterations.json", help="the scores (default %(default)s)")
    args, rest = p.parse_known_args(argv)
    if args.factor < 2:
        p.error(f"--factor: must be 2 or more, got {args.factor}")
    run = driver.Run(driver.parser().parse_args(rest))
    s1, s2 = run.stages
    w1, w2 = continue_training(s1, args.factor), continue_training(s2, args.factor)
    key = f"{REPORT_FRACTION:.2f}"
    points = []
    for k, (a, b) in enumerate(zip(w1, w2), 1):
        report = evaluate(run.desc, a, [b])["stages"]
        points.append({"factor": k, "iter1": k * run.args.iter1, "iter2": k * run.args.iter2,
                       "stage 1": report["stage 1"]["pdj"][key], "cascade": report["stage 2"]["pdj"][key],
                       "pcp stage 1": report["stage 1"]["pcp"], "pcp cascade": report["stage 2"]["pcp"]})
        print(json.dumps(points[-1]), flush=True)
    atomic_write(args.json, json.dumps(points, indent=1) + "\n")
    x = [pt["factor"] for pt in points]
    line_chart({name: (x, [pt[name] for pt in points]) for name in ("stage 1", "cascade")}, args.out,
               f"PDJ@{key} after k x ({run.args.iter1} + {run.args.iter2}) iterations", "k (x the default run)",
               f"PDJ@{key}", ylim=(0, 1))
    print(f"{args.json}, {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
