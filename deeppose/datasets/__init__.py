"""The datasets, one description (and annotation reader) each, and the choice of a run's dataset
and seed.

Every command takes `--dataset NAME|path/to/description.py`; without it, the dataset is the one
``globalvar.py`` (in the working directory, the repository root) names in `DATASET`. A
description file is Python that defines `DATASET`, a `deeppose.dataset.DatasetDescription`.
The commands that draw random numbers take `--seed N`; without it, the seed is globalvar.py's
`SEED`.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from ..dataset import DatasetDescription
from . import flic, k2hpd, lsp

# each module of this package is a description file: its DATASET is the description
NAMED = {m.DATASET.name: m.DATASET for m in (k2hpd, lsp, flic)}
GLOBALVAR = "globalvar.py"


def __getattr__(name: str) -> DatasetDescription:
    """`deeppose.datasets.<NAME>`: the named description (for the tests and tools that name one)."""
    if name in NAMED:
        return NAMED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(spec: str) -> DatasetDescription:
    """A named description (`NAMED`) or the `DATASET` of a description file (a path ending .py)."""
    if spec in NAMED:
        return NAMED[spec]
    if not spec.endswith(".py"):
        raise ValueError(f"unknown dataset {spec!r}: name one of {', '.join(NAMED)} or give a "
                         "description file (path/to/description.py)")
    return _description_in(spec)


def _description_in(path) -> DatasetDescription:
    if not Path(path).is_file():
        raise OSError(f"cannot read dataset description {path}: no such file")
    value = runpy.run_path(str(path)).get("DATASET")
    if isinstance(value, str):
        return load(value)
    if not isinstance(value, DatasetDescription):
        raise ValueError(f"{path}: DATASET must be a DatasetDescription or a dataset name, "
                         f"not {type(value).__name__}")
    return value


def _globalvar(what: str) -> dict:
    if not Path(GLOBALVAR).is_file():
        raise OSError(f"no {what} chosen: no --{what} and no {GLOBALVAR} in {Path.cwd()} "
                      "(run from the repository root)")
    return runpy.run_path(GLOBALVAR)


def selected(spec: str | None = None) -> DatasetDescription:
    """The run's dataset: `spec` (a --dataset value) or else globalvar.py's `DATASET`."""
    if spec:
        return load(spec)
    _globalvar("dataset")
    return _description_in(GLOBALVAR)


def selected_seed(seed: int | None = None) -> int:
    """The run's seed: `seed` (a --seed value) or else globalvar.py's `SEED`."""
    if seed is not None:
        return seed
    value = _globalvar("seed").get("SEED")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{GLOBALVAR}: SEED must be a whole number, not {value!r}")
    return value


def add_argument(parser) -> None:
    """The --dataset option of a command."""
    parser.add_argument("--dataset", metavar="NAME|FILE.py",
                        help=f"dataset: {', '.join(NAMED)} or a description file (default: "
                             f"DATASET of {GLOBALVAR})")


def add_seed_argument(parser, default: int | None = None) -> None:
    """The --seed option of a command (resolve it with `selected_seed`)."""
    parser.add_argument("--seed", type=int, default=default,
                        help=f"the run's seed, from which every random draw is derived (default: SEED of {GLOBALVAR})")
