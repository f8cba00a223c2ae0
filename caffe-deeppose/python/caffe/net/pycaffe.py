"""pycaffe's Python side of `caffe.Net` (what BVLC's python/caffe/pycaffe.py adds to the C++ Net):
blobs and layers by name and index, hooks, forward and backward with keyword arrays, in batches."""
import collections

import numpy as np

from ..layer_modules.array_data import set_input_arrays


class PycaffeNet:
    """The pycaffe methods of `caffe.Net`, on its engine (`_forward_range`, `_backward`, blobs, wiring)."""

    @property
    def inputs(self):
        return list(self._input_names)

    @property
    def outputs(self):
        return list(self._output_names)

    @property
    def _inputs(self):
        """Indices of the input blobs in `_blobs` (pycaffe)."""
        return [self._blob_names.index(n) for n in self._input_names]

    @property
    def _outputs(self):
        """Indices of the output blobs in `_blobs` (pycaffe)."""
        return [self._blob_names.index(n) for n in self._output_names]

    @property
    def _blob_names(self):
        return list(self.blobs)

    @property
    def _blobs(self):
        return list(self.blobs.values())

    @property
    def _blob_loss_weights(self):
        return list(self.blob_loss_weights.values())

    def _top_ids(self, i):
        """Indices in `_blobs` of layer i's tops (pycaffe)."""
        return [self._blob_names.index(n) for n in self.module.wiring[i].tops]

    def _bottom_ids(self, i):
        """Indices in `_blobs` of layer i's bottoms (pycaffe)."""
        return [self._blob_names.index(n) for n in self.module.wiring[i].bottoms]

    @property
    def layer_dict(self):
        """Layers by name, in net order (pycaffe)."""
        return collections.OrderedDict(zip(self._layer_names, self.layers))

    @property
    def blob_loss_weights(self):
        return collections.OrderedDict((n, self._loss_weights.get(n, 0.0)) for n in self.blobs)

    def layer_index(self, name):
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise KeyError(f"net {self.name!r} has no layer {name!r}") from None

    # -- hooks ------------------------------------------------------------------------------------
    def before_forward(self, fn):
        """Call `fn(i)` before layer i computes its forward (pycaffe)."""
        self._hooks["before_forward"].append(fn)

    def after_forward(self, fn):
        """Call `fn(i)` after layer i computed its forward (pycaffe)."""
        self._hooks["after_forward"].append(fn)

    def before_backward(self, fn):
        """Call `fn(i)` before layer i computes its backward (pycaffe)."""
        self._hooks["before_backward"].append(fn)

    def after_backward(self, fn):
        """Call `fn(i)` after layer i computed its backward; its bottom and param diffs are set (pycaffe)."""
        self._hooks["after_backward"].append(fn)

    # -- computing --------------------------------------------------------------------------------
    def _forward(self, start, end):
        """Forward layers start..end by index (pycaffe's `_forward`); returns the loss."""
        return self._forward_range(start, end)

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Set the input blobs given as keyword arrays, run layers start..end, return the outputs
        (or the tops of `end`) and the extra `blobs` asked for, as numpy arrays."""
        for name, value in kwargs.items():
            if name not in self.blobs:
                raise KeyError(f"forward: net {self.name!r} has no blob {name!r}")
            value = np.asarray(value)
            if value.shape[0] != self.blobs[name].shape[0]:
                raise ValueError(f"forward: input {name!r} has batch {value.shape[0]}, the blob holds "
                                 f"{self.blobs[name].shape[0]}; reshape the blob first")
            self.blobs[name].data[...] = value
        start_i = self.layer_index(start) if start is not None else 0
        end_i = self.layer_index(end) if end is not None else len(self._layer_names) - 1
        self._forward_range(start_i, end_i)
        names = self.top_names[self._layer_names[end_i]] if end is not None else self._output_names
        names = list(names) + [b for b in (blobs or []) if b not in names]
        return {name: self.blobs[name].data for name in names}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Back-propagate from the output diffs (set from keyword arrays first) over layers
        start..end (names; default the whole net); returns the diffs of the inputs (or of the
        bottoms of `end`) and of the extra blobs named in `diffs`."""
        for name, value in kwargs.items():
            if name not in self._output_names:
                raise KeyError(f"backward: {name!r} is not an output of net {self.name!r}")
            self.blobs[name].diff[...] = value
        start_i = self.layer_index(start) if start is not None else None
        end_i = self.layer_index(end) if end is not None else None
        self._backward(start_i, end_i)
        names = self.bottom_names[end] if end is not None else self._input_names
        names = list(names) + [b for b in (diffs or []) if b not in names]
        return {name: self.blobs[name].diff for name in names}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward + backward in batches (pycaffe): keyword arrays for the inputs (forward) and
        the outputs (their diffs); returns ({blob: data}, {blob: diff}) over all items."""
        fwd = {k: v for k, v in kwargs.items() if k in self._input_names}
        bwd = {k: v for k, v in kwargs.items() if k in self._output_names}
        extra = set(kwargs) - set(fwd) - set(bwd)
        if extra:
            raise KeyError(f"forward_backward_all: {sorted(extra)} are neither inputs nor outputs of net {self.name!r}")
        outs, outs_diff = collections.defaultdict(list), collections.defaultdict(list)
        total = len(next(iter(kwargs.values()))) if kwargs else None
        batches_f, batches_b = list(self._batches(fwd)), list(self._batches(bwd))
        for i in range(max(len(batches_f), len(batches_b), 1)):
            f = batches_f[i] if i < len(batches_f) else {}
            b = batches_b[i] if i < len(batches_b) else {}
            for name, value in self.forward(blobs=blobs, **f).items():
                outs[name].extend(np.array(value, copy=True))
            for name, value in self.backward(diffs=diffs, **b).items():
                outs_diff[name].extend(np.array(value, copy=True))
        keep = slice(None) if total is None else slice(0, total)
        return ({k: np.asarray(v)[keep] for k, v in outs.items()},
                {k: np.asarray(v)[keep] for k, v in outs_diff.items()})

    def _batches(self, arrays):
        """Split keyword arrays into batches of the blobs' batch size, padding the last with zeros
        (like pycaffe; the caller drops the padding)."""
        if not arrays:
            return
        total = len(next(iter(arrays.values())))
        batch = self.blobs[next(iter(arrays))].shape[0]
        for first in range(0, total, batch):
            chunk = {}
            for name, value in arrays.items():
                part = np.asarray(value[first:first + batch])
                if len(part) < batch:
                    part = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
                chunk[name] = part
            yield chunk

    def set_input_arrays(self, data, labels):
        """Feed a MemoryData first layer with numpy arrays (pycaffe)."""
        set_input_arrays(self, data, labels)

    def forward_all(self, blobs=None, **kwargs):
        """Forward every item of the keyword input arrays in batches of the net's batch size."""
        outs = collections.defaultdict(list)
        if not kwargs:
            return {k: np.asarray(v).copy() for k, v in self.forward(blobs=blobs).items()}
        total = len(next(iter(kwargs.values())))
        for chunk in self._batches(kwargs):
            for name, value in self.forward(blobs=blobs, **chunk).items():
                outs[name].extend(np.array(value, copy=True))
        return {name: np.asarray(v)[:total] for name, v in outs.items()}  # drop the padding

