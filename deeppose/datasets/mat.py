"""MATLAB annotation files (scipy.io.loadmat), with errors that name the file."""

from __future__ import annotations

MATLAB_PIXEL_OFFSET = 0.5  # MATLAB's pixel k (1-based) has its centre at k; ours at k - 0.5


def load_variable(path, name: str):
    """Variable `name` of a .mat file, squeezed (structs as record arrays)."""
    from scipy.io import loadmat
    try:
        variables = loadmat(str(path), squeeze_me=True)
    except FileNotFoundError:
        raise OSError(f"cannot read annotation file {path}: no such file") from None
    except (ValueError, TypeError, NotImplementedError) as e:
        raise ValueError(f"{path}: not a readable MATLAB file ({e})") from None
    if name not in variables:
        found = sorted(k for k in variables if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {name!r} (it holds {', '.join(found) or 'none'})")
    return variables[name]
