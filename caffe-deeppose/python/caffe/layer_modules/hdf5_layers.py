"""HDF5Data (batches of rows from HDF5 files named in a list file) and HDF5Output (a batch of
data and labels written to an HDF5 file), with Caffe's semantics."""
import os

import numpy as np
import torch

from .. import glog
from ..formats import hdf5
from ..libc_rand import rand, random_shuffle
from ..registry import register_layer
from .base import LayerModule


def read_source(source, where):
    """The HDF5 file names of a list file: whitespace-separated, relative to the current directory."""
    try:
        with open(source) as f:
            names = f.read().split()
    except OSError as e:
        raise ValueError(f"{where}: hdf5_data_param.source {source}: cannot read the list of HDF5 files: "
                         f"{e.strerror}") from None
    if not names:
        raise ValueError(f"{where}: hdf5_data_param.source {source}: Must have at least 1 HDF5 filename listed")
    return names


@register_layer("HDF5Data")
class HDF5Data(LayerModule):
    """Caffe's HDF5Data: each top is the dataset of its name, read as float32; batches take rows in
    order (a permutation of them with `shuffle`), file after file in the list's order, cycling.

    With `shuffle`, the file order is shuffled at set-up and at each wrap, and each file's rows
    when it is loaded and again when its last row is passed, all with std::random_shuffle on
    glibc's rand() (caffe.libc_rand), as Caffe does. The files' row shapes must equal the first's.
    """

    num_bottoms = 0
    min_tops = 1
    host_source = True

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.hdf5_data_param
        self.where = f"layer {param.name!r} (HDF5Data)"
        if param.HasField("transform_param"):
            raise ValueError("HDF5Data does not transform data (remove transform_param)")
        if p.batch_size <= 0:
            raise ValueError("hdf5_data_param.batch_size must be positive")
        glog.info("hdf5_data_layer.cpp:80", f"Loading list of HDF5 filenames from: {p.source}")
        self.files = read_source(p.source, self.where)
        glog.info("hdf5_data_layer.cpp:94", f"Number of HDF5 files: {len(self.files)}")
        self.batch_size, self.shuffle, self.tops = int(p.batch_size), p.shuffle, list(param.top)
        self.file_order = list(range(len(self.files)))
        if self.shuffle:
            random_shuffle(self.file_order)
        self.current_file, self.row_shapes = 0, None
        self._load(self.files[self.file_order[0]])
        self.row_shapes = [a.shape[1:] for a in self.arrays]
        self.current_row = 0
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def _load(self, path):
        """Read every top's dataset of one file; reset (and with shuffle, shuffle) the row order."""
        with hdf5.open_file(path) as f:
            arrays = [hdf5.load_dataset(f, name, path) for name in self.tops]
        rows = arrays[0].shape[0]
        for name, a in zip(self.tops, arrays):
            if a.shape[0] != rows:
                raise ValueError(f"{self.where}: {path}: dataset {name!r} has {a.shape[0]} rows, dataset "
                                 f"{self.tops[0]!r} has {rows} (every top's dataset needs the same)")
        if self.row_shapes is not None:
            for name, a, shape in zip(self.tops, arrays, self.row_shapes):
                if a.shape[1:] != shape:
                    raise ValueError(f"{self.where}: {path}: dataset {name!r} has rows of shape {a.shape[1:]}, "
                                     f"the first file's are {shape}")
        if rows == 0:
            raise ValueError(f"{self.where}: {path}: the datasets have no rows")
        self.arrays = arrays
        self.row_order = list(range(rows))
        if self.shuffle:
            random_shuffle(self.row_order)

    def _next(self):
        """Caffe's Next(): the next row, the next file after the last row, shuffles at the wraps."""
        self.current_row += 1
        if self.current_row == len(self.row_order):
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    if self.shuffle:
                        random_shuffle(self.file_order)
                self._load(self.files[self.file_order[self.current_file]])
            self.current_row = 0
            if self.shuffle:
                random_shuffle(self.row_order)

    def top_shapes(self, bottom_shapes):
        return [(self.batch_size,) + shape for shape in self.row_shapes]

    def read_position(self):
        """What the next batch depends on (caffe.solvers.resume_state): file, row, orders, rand()'s state."""
        return {"file": self.current_file, "row": self.current_row, "file_order": list(self.file_order),
                "row_order": list(self.row_order), "rand": rand.state if self.shuffle else None}

    def seek(self, position):
        """Continue where `read_position()` gave `position` (the same list of files)."""
        self.file_order = list(position["file_order"])
        self.current_file = position["file"]
        self._load(self.files[self.file_order[self.current_file]])
        if len(position["row_order"]) != len(self.row_order):
            raise ValueError(f"{self.where}: {self.files[self.file_order[self.current_file]]} has "
                             f"{len(self.row_order)} rows, the snapshot read {len(position['row_order'])}")
        self.row_order, self.current_row = list(position["row_order"]), position["row"]
        if position["rand"] is not None:
            rand.state = position["rand"]

    def forward(self):
        batch = [np.empty((self.batch_size,) + shape, np.float32) for shape in self.row_shapes]
        for i in range(self.batch_size):
            row = self.row_order[self.current_row]
            for out, array in zip(batch, self.arrays):
                out[i] = array[row]
            self._next()
        device = self._anchor.device
        return tuple(torch.from_numpy(b).to(device) for b in batch)


@register_layer("HDF5Output")
class HDF5Output(LayerModule):
    """Caffe's HDF5Output: the forward writes bottoms 0 and 1 as float32 datasets `data` and
    `label` of `hdf5_output_param.file_name`, in their legacy 4-axis shapes (N, C, H, W), padded
    with 1s). The file is written whole and atomically. Caffe can write it only once per net
    (a second forward stops it with the datasets existing); here a second forward is an error that
    leaves the file intact."""

    num_bottoms = 2
    num_tops = 0
    no_grad_bottoms = (0, 1)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.file_name = param.hdf5_output_param.file_name
        folder = os.path.dirname(os.path.abspath(self.file_name))
        if not self.file_name or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ValueError(f"hdf5_output_param.file_name {self.file_name!r}: Failed to open HDF5 file "
                             "(its directory must exist and be writable)")
        self.written = False

    def top_shapes(self, bottom_shapes):
        for i, shape in enumerate(bottom_shapes):
            if len(shape) > 4:
                raise ValueError(f"bottom {i} has {len(shape)} axes; HDF5Output writes legacy blobs of at most 4")
        if bottom_shapes[0][:1] != bottom_shapes[1][:1]:
            raise ValueError(f"data and label must have the same batch size, got {tuple(bottom_shapes[0])} and "
                             f"{tuple(bottom_shapes[1])}")
        return []

    def forward(self, data, label):
        if self.written:
            raise RuntimeError(f"HDF5Output layer {self.name!r}: {self.file_name} was written by the previous "
                               "forward; Caffe writes it once per net (its second forward fails on the existing "
                               "datasets). Build a new net to write another batch.")
        arrays = [t.detach().cpu().numpy() for t in (data, label)]
        arrays = [a.reshape(a.shape + (1,) * (4 - a.ndim)) for a in arrays]
        glog.info("hdf5_output_layer.cpp:32", f"Saving HDF5 file {self.file_name}")

        def fill(f):
            hdf5.write_float(f, "data", arrays[0])
            hdf5.write_float(f, "label", arrays[1])

        hdf5.write_file(self.file_name, fill)
        self.written = True
        glog.info("hdf5_output_layer.cpp:37", f"Successfully saved {arrays[0].shape[0]} rows")
        return ()
