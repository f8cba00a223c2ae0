"""`python -m deeppose.datasets [--dataset NAME|FILE.py]`: the chosen dataset's paths as shell
assignments for deeppose_train.sh: DATASET_NAME, DATA (its directory), ANNOTATIONS (its annotation files, an
array), TEXT_ANNOTATIONS (1 when it reads text annotations, which the synthetic generator writes)."""

import argparse
import shlex

from ..cli import command
from ..dataset import annotation_paths
from . import add_argument, selected


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m deeppose.datasets", description=__doc__)
    add_argument(p)
    desc = selected(p.parse_args(argv).dataset)
    files = sorted({str(f) for f in annotation_paths(desc.root, desc).values()})
    print(f"DATASET_NAME={shlex.quote(desc.name)}")
    print(f"DATA={shlex.quote(desc.root)}")
    print(f"ANNOTATIONS=({' '.join(map(shlex.quote, files))})")
    print(f"TEXT_ANNOTATIONS={int(desc.reader is None)}")


if __name__ == "__main__":
    main()
