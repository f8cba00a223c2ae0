"""Data layers fed from memory: MemoryData (numpy arrays from pycaffe's `set_input_arrays`) and
DummyData (blobs filled by a filler)."""
import numpy as np
import torch

from .. import fillers, glog
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule


@register_layer("MemoryData")
class MemoryData(LayerModule):
    """Caffe's MemoryData layer: batches cut in turn from arrays given by `set_input_arrays`
    (not transformed, as Caffe's Reset). Labels come out as (batch, 1, 1, 1), like Caffe's."""

    num_bottoms = 0
    num_tops = 2
    host_source = True

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.memory_data_param
        self.batch_size, self.channels, self.height, self.width = (
            int(p.batch_size), int(p.channels), int(p.height), int(p.width))
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise ValueError("memory_data_param: batch_size, channels, height and width must be specified "
                             "and positive")
        self._transform = param.HasField("transform_param")
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self._data = self._labels = None
        self._pos = 0

    def top_shapes(self, bottom_shapes):
        return [(self.batch_size, self.channels, self.height, self.width), (self.batch_size,)]

    def reset(self, data, labels):
        """Use `data` (N, C, H, W) and `labels` (N,) or (N, 1, 1, 1), N a multiple of the batch
        size; float32 C-contiguous arrays are used without a copy, as pycaffe does."""
        data = np.ascontiguousarray(data, np.float32)
        labels = np.ascontiguousarray(labels, np.float32)
        where = f"set_input_arrays (layer {self.name!r})"
        item = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != item:
            raise ValueError(f"{where}: data must be (N, {', '.join(map(str, item))}), got {data.shape}")
        if labels.shape not in ((len(labels),), (len(labels), 1, 1, 1)):
            raise ValueError(f"{where}: labels must be (N,) or (N, 1, 1, 1), got {labels.shape}")
        if len(data) != len(labels):
            raise ValueError(f"{where}: data and labels must have the same first dimension "
                             f"({len(data)} vs {len(labels)})")
        if len(data) == 0 or len(data) % self.batch_size:
            raise ValueError(f"{where}: the first dimension ({len(data)}) must be a positive multiple of "
                             f"the batch size {self.batch_size}")
        if self._transform:
            glog.warning("memory_data_layer.cpp:89", "MemoryData does not transform array data on Reset()")
        self._data, self._labels, self._pos = data, labels.reshape(-1, 1, 1, 1), 0

    def forward(self):
        if self._data is None:
            raise RuntimeError(f"MemoryData layer {self.name!r} has no data: call net.set_input_arrays first")
        s = slice(self._pos, self._pos + self.batch_size)
        self._pos = (self._pos + self.batch_size) % len(self._data)
        device = self._anchor.device
        return (torch.from_numpy(self._data[s]).to(device), torch.from_numpy(self._labels[s]).to(device))


def set_input_arrays(net, data, labels):
    """pycaffe's `net.set_input_arrays(data, labels)`: feed the net's first layer, a MemoryData."""
    module = net.module.layers[0] if net.layers else None
    if not isinstance(module, MemoryData):
        raise TypeError("set_input_arrays may only be called if the first layer is a MemoryData layer")
    module.reset(data, labels)


@register_layer("DummyData")
class DummyData(LayerModule):
    """Caffe's DummyData: tops of the given shapes filled by `data_filler` (one for all tops, or
    one per top; none: constant 0). Constant tops are filled once, the others at every forward."""

    num_bottoms = 0
    min_tops = 1
    host_source = True

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.dummy_data_param
        n = len(param.top)
        if len(p.data_filler) not in (0, 1, n):
            raise ValueError(f"dummy_data_param: give 0, 1 or {n} data_filler (one per top), got "
                             f"{len(p.data_filler)}")
        legacy = [list(f) for f in (p.num, p.channels, p.height, p.width)]
        if any(legacy):
            if p.shape:
                raise ValueError("dummy_data_param: both shape and the legacy num/channels/height/width are given")
            for name, values in zip(("num", "channels", "height", "width"), legacy):
                if len(values) not in (1, n):
                    raise ValueError(f"dummy_data_param: give {name!r} once or once per top ({n}), got {len(values)}")
            self.shapes = [tuple(int(v[0] if len(v) == 1 else v[i]) for v in legacy) for i in range(n)]
        else:
            if len(p.shape) not in (1, n):
                raise ValueError(f"dummy_data_param: give 'shape' once or once per top ({n}), got {len(p.shape)}")
            self.shapes = [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]
        for i, shape in enumerate(self.shapes):
            if not np.prod(shape, dtype=np.int64):  # Caffe's fillers refuse an empty blob
                raise ValueError(f"dummy_data_param: top {i} has shape {shape}, with no elements")
        default = caffe_pb2.FillerParameter(type="constant", value=0) if not p.data_filler else None
        self.fillers = [default or p.data_filler[0 if len(p.data_filler) == 1 else i] for i in range(n)]
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        for i, (f, shape) in enumerate(zip(self.fillers, self.shapes)):
            if f.type == "constant":
                self.register_buffer(f"_constant_{i}", fillers.fill(f, shape), persistent=False)

    def top_shapes(self, bottom_shapes):
        return list(self.shapes)

    def forward(self):
        device = self._anchor.device
        return tuple(getattr(self, f"_constant_{i}") if f.type == "constant" else fillers.fill(f, s).to(device)
                     for i, (f, s) in enumerate(zip(self.fillers, self.shapes)))
