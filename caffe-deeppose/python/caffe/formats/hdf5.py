"""HDF5 files in Caffe's layouts (h5py): datasets read as Caffe's hdf5_load_nd_dataset does, files
written whole in memory and then atomically (a killed writer never leaves a half file).

- weights (`Net::ToHDF5`): group `data/<layer>` for every layer, datasets `0`, `1`, ... for the
  blobs the layer owns (a shared blob is stored by its owner only), float32 in the blob's shape;
  with diffs, group `diff/<layer>` holds every blob's diff.
- solver state (`SnapshotSolverStateToHDF5`): `iter` and `current_step` int32 (1,), `learned_net`
  a null-terminated string, group `history` with datasets `0`, `1`, ... in the solver's order.
"""
import io
import os

import numpy as np
import torch

from .. import glog
from ..atomic_file import atomic_write
from ..lazy_modules import h5py


class HDF5Error(ValueError):
    """An HDF5 file that cannot be used; the message names the file and the dataset."""


def is_hdf5(path):
    """Whether `path` is an HDF5 file (Caffe's H5Fis_hdf5 test of the weights file)."""
    try:
        return h5py.is_hdf5(os.fspath(path))
    except OSError:
        return False


def open_file(path):
    """An h5py File opened read-only; a clear error naming the file if it cannot be."""
    path = os.fspath(path)
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise HDF5Error(f"{path}: cannot open as an HDF5 file: {e}") from None


def load_dataset(group, name, path, min_dim=1):
    """Dataset `name` of `group` as float32, as Caffe reads it (float and integer classes only)."""
    where = f"{path}: dataset {name!r}"
    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        raise HDF5Error(f"{where}: not found (Failed to find HDF5 dataset {name})"
                        + (f"; the file has {', '.join(sorted(group))}" if len(group) else ""))
    if item.dtype.kind not in "fiu":
        raise HDF5Error(f"{where}: unsupported datatype {item.dtype} (Caffe reads float and integer datasets)")
    if item.ndim < min_dim:
        raise HDF5Error(f"{where}: has {item.ndim} axes, at least {min_dim} needed")
    return np.asarray(item[()], dtype=np.float32)


def write_file(path, fill):
    """Create the HDF5 file `path` atomically: `fill(h5py.File)` writes its content in memory."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    atomic_write(path, buf.getvalue())


def write_float(group, name, array):
    """A float32 dataset in the array's shape (H5LTmake_dataset_float)."""
    group.create_dataset(name, data=np.ascontiguousarray(array, np.float32))


def write_int(group, name, value):
    """An int32 (1,) dataset (Caffe's hdf5_save_int)."""
    group.create_dataset(name, data=np.array([value], np.int32))


def write_string(group, name, text):
    """A scalar null-terminated fixed-length string (Caffe's hdf5_save_string, H5LTmake_dataset_string)."""
    data = text.encode() + b"\0"
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(data))
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    dataset = h5py.h5d.create(group.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data, dtype=f"S{len(data)}"), mtype=tid)


def read_string(group, name, path):
    value = group[name][()]
    if not isinstance(value, bytes):
        raise HDF5Error(f"{path}: dataset {name!r} is not a string")
    return value.split(b"\0", 1)[0].decode()


def read_int(group, name, path):
    item = group.get(name)
    if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "iu" or item.size != 1:
        raise HDF5Error(f"{path}: dataset {name!r} must be one integer")
    return int(item[()].reshape(-1)[0])


# -- weights ------------------------------------------------------------------------------------
def _owned(net):
    """Per layer, for each blob: (the param tensor, whether this layer owns it)."""
    seen, out = set(), []
    for layer in net.module.layers:  # (a Python layer's pycaffe view is the user's object)
        row = []
        for p in layer.blobs:
            row.append((p, id(p) not in seen))
            seen.add(id(p))
        out.append(row)
    return out


def save_weights(net, path, write_diff=False):
    """Write the net's blobs as Caffe's Net::ToHDF5 does (`write_diff`: the diffs too)."""
    owned = _owned(net)

    def fill(f):
        data = f.create_group("data")
        diff = f.create_group("diff") if write_diff else None
        for name, view, row in zip(net._layer_names, net.layers, owned):
            layer = data.create_group(name)
            layer_diff = diff.create_group(name) if write_diff else None
            for j, ((p, owns), blob) in enumerate(zip(row, view.blobs)):
                if owns:
                    write_float(layer, str(j), p.detach().cpu().numpy())
                if write_diff:
                    write_float(layer_diff, str(j), blob.diff)

    write_file(path, fill)


def load_weights(net, path):
    """Copy weights from an HDF5 caffemodel by layer name (Net::CopyTrainedLayersFromHDF5): layers
    not in the net are ignored; a blob may be missing only where the net shares it from another
    layer; shapes must match exactly. Returns the names of the layers copied."""
    path = os.fspath(path)
    owned = dict(zip(net._layer_names, _owned(net)))
    copied = set()
    with open_file(path) as f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise HDF5Error(f"{path}: no group 'data' (not an HDF5 caffemodel)")
        for name in data:
            row = owned.get(name)
            if row is None:
                glog.info("net.cpp:812", f"Ignoring source layer {name}")
                continue
            copied.add(name)
            group = data[name]
            if len(group) > len(row):
                raise HDF5Error(f"{path}: layer {name!r} has {len(group)} blobs, the net's layer has {len(row)} "
                                "(Incompatible number of blobs)")
            for j, (p, owns) in enumerate(row):
                if str(j) not in group:
                    if owns:
                        raise HDF5Error(f"{path}: layer {name!r} has no blob {j} (Incompatible number of blobs)")
                    continue
                values = load_dataset(group, str(j), f"{path}: layer {name!r}", min_dim=0)
                if values.shape != tuple(p.shape):
                    raise HDF5Error(f"{path}: cannot copy blob {j} of layer {name!r}: shape mismatch, source "
                                    f"{values.shape}, target {tuple(p.shape)}. To learn this layer from "
                                    "scratch instead, rename it in the prototxt.")
                with torch.no_grad():
                    p.copy_(torch.from_numpy(values))
    return copied


# -- solver state -------------------------------------------------------------------------------
RESUME = "resume_state"  # our extension: caffe.resume_state's bytes (Caffe reads datasets by name only)


def save_solver_state(path, iteration, learned_net, current_step, history, resume=None):
    """Write a .solverstate.h5 (SGDSolver::SnapshotSolverStateToHDF5); `history` are arrays,
    `resume` optional bytes kept in a uint8 dataset `resume_state`."""

    def fill(f):
        write_int(f, "iter", iteration)
        write_string(f, "learned_net", learned_net)
        write_int(f, "current_step", current_step)
        group = f.create_group("history")
        for i, h in enumerate(history):
            write_float(group, str(i), h)
        if resume is not None:
            f.create_dataset(RESUME, data=np.frombuffer(resume, np.uint8))

    write_file(path, fill)


def load_solver_state(path, history_shapes):
    """(iter, learned_net or None, current_step, [history arrays], resume bytes or None) of a
    .solverstate.h5; the history must have one dataset per expected shape, each of exactly that
    shape."""
    path = os.fspath(path)
    with open_file(path) as f:
        iteration = read_int(f, "iter", path)
        learned_net = read_string(f, "learned_net", path) if "learned_net" in f else None
        current_step = read_int(f, "current_step", path)
        group = f.get("history")
        if not isinstance(group, h5py.Group):
            raise HDF5Error(f"{path}: no group 'history' (Error reading history)")
        if len(group) != len(history_shapes):
            raise HDF5Error(f"{path}: {len(group)} history blobs, the solver has {len(history_shapes)} "
                            "(Incorrect length of history blobs)")
        history = []
        for i, shape in enumerate(history_shapes):
            values = load_dataset(group, str(i), f"{path}: history", min_dim=0)
            if values.shape != tuple(shape):
                raise HDF5Error(f"{path}: history blob {i} has shape {values.shape}, the parameter has "
                                f"shape {tuple(shape)}")
            history.append(values)
        resume = f[RESUME][()].tobytes() if RESUME in f else None
    return iteration, learned_net, current_step, history, resume
