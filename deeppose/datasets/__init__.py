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
import traceback
from pathlib import Path

from ..dataset import DatasetDescription
from ..options import non_negative_int
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
    return _dataset_of(_run_file(path, "the dataset description"), f"the dataset description {path}")


def _dataset_of(namespace: dict, where: str) -> DatasetDescription:
    """The description a file's `DATASET` gives (a description or a dataset's name)."""
    if "DATASET" not in namespace:
        raise ValueError(f"{where}: defines no DATASET (a DatasetDescription or a dataset name)")
    value = namespace["DATASET"]
    if isinstance(value, str):
        return load(value)
    if not isinstance(value, DatasetDescription):
        raise ValueError(f"{where}: DATASET must be a DatasetDescription or a dataset name, "
                         f"not {type(value).__name__}")
    return value


def _run_file(path, what: str) -> dict:
    """The globals of the Python file `path`, run; an error in it (a syntax error, an exception
    while it runs) is a ValueError naming `what` path:line, with the line's text."""
    try:
        return runpy.run_path(str(path))
    except SyntaxError as e:
        line, text, message = e.lineno, e.text, f"{type(e).__name__}: {e.msg}"
    except Exception as e:  # whatever the file raises is its error
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        line, text = (frames[-1].lineno, frames[-1].line) if frames else (None, None)
        message = f"{type(e).__name__}: {e}"
    where = f"{path}:{line}" if line else str(path)
    source = f"\n    {text.strip()}" if text and text.strip() else ""
    raise ValueError(f"{what} {where}: {message}{source}") from None


def _globalvar(what: str) -> dict:
    if not Path(GLOBALVAR).is_file():
        raise OSError(f"no {what} chosen: no --{what} and no {GLOBALVAR} in {Path.cwd()} "
                      "(run from the repository root)")
    return _run_file(GLOBALVAR, "the settings file")


def selected(spec: str | None = None) -> DatasetDescription:
    """The run's dataset: `spec` (a --dataset value) or else globalvar.py's `DATASET`."""
    if spec:
        return load(spec)
    return _dataset_of(_globalvar("dataset"), GLOBALVAR)


def selected_seed(seed: int | None = None) -> int:
    """The run's seed: `seed` (a --seed value) or else globalvar.py's `SEED`."""
    if seed is not None:
        return seed
    value = _globalvar("seed").get("SEED")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{GLOBALVAR}: SEED must be an integer >= 0, not {value!r}")
    return value


def add_argument(parser) -> None:
    """The --dataset option of a command."""
    parser.add_argument("--dataset", metavar="NAME|FILE.py",
                        help=f"dataset: {', '.join(NAMED)} or a description file (default: "
                             f"DATASET of {GLOBALVAR})")


def add_seed_argument(parser, default: int | None = None) -> None:
    """The --seed option of a command (resolve it with `selected_seed`)."""
    parser.add_argument("--seed", type=non_negative_int, default=default,
                        help=f"the run's seed, from which every random draw is derived (default: SEED of {GLOBALVAR})")
