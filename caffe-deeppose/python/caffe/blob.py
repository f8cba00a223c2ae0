"""pycaffe's Blob: `.data` and `.diff` numpy arrays that alias the engine's storage.

On the CPU the arrays are views of the torch tensors, so `blob.data[...] = x` writes straight
into the net. On a GPU they are host mirrors kept in step the way Caffe's SyncedMemory does it:
reading copies device -> host, and a mirror handed out is copied back before the next use.
"""
import numpy as np
import torch


class _Mirror:
    """One side of a blob (data or diff): a device tensor and, on GPU, its host mirror."""

    __slots__ = ("tensor", "host", "host_ahead")

    def __init__(self, tensor=None):
        self.tensor = tensor
        self.host = None
        self.host_ahead = False

    def set(self, tensor):
        self.tensor = tensor
        self.host_ahead = False

    def array(self):
        t = self.tensor.detach()
        if t.device.type == "cpu":
            return t.numpy()
        if self.host is None or self.host.shape != tuple(t.shape):
            self.host = np.empty(tuple(t.shape), np.float32)
        if not self.host_ahead:
            self.host[...] = t.cpu().numpy()
        self.host_ahead = True  # the caller may write into it
        return self.host

    def synced(self):
        """The device tensor, updated from the host mirror if that was handed out."""
        if self.host_ahead:
            with torch.no_grad():
                self.tensor.copy_(torch.from_numpy(self.host))
            self.host_ahead = False
        return self.tensor


class Blob:
    """A named array of the net with its gradient (diff)."""

    def __init__(self, shape=(), device="cpu"):
        self._device = torch.device(device)
        self._shape = tuple(int(d) for d in shape)
        self._data = _Mirror()
        self._diff = _Mirror()

    # -- pycaffe surface -------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def _legacy(self, axis):
        """Caffe's LegacyShape: axes past the blob's last count as 1 (a (6, 2) blob has num 6)."""
        if len(self._shape) > 4:
            raise ValueError(f"num/channels/height/width of a {len(self._shape)}-axis blob: use .shape")
        return self._shape[axis] if axis < len(self._shape) else 1

    @property
    def data(self):
        return self._side(self._data).array()

    @data.setter
    def data(self, value):
        self.data[...] = value

    @property
    def diff(self):
        return self._side(self._diff).array()

    @diff.setter
    def diff(self, value):
        self.diff[...] = value

    def reshape(self, *shape):
        """Give the blob a new shape (pycaffe: `net.blobs['data'].reshape(1, 3, 227, 227)`)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape = tuple(int(d) for d in shape)
        if shape != self._shape:
            self._shape = shape
            self._data.set(None)
            self._diff.set(None)

    # -- engine side -----------------------------------------------------------------------
    def _side(self, side):
        if side.tensor is None or tuple(side.tensor.shape) != self._shape:
            side.set(torch.zeros(self._shape, device=self._device))
        return side

    def data_tensor(self):
        return self._side(self._data).synced()

    def diff_tensor(self):
        return self._side(self._diff).synced()

    def set_data(self, tensor):
        self._shape = tuple(tensor.shape)
        self._data.set(tensor)

    def set_diff(self, tensor):
        self._diff.set(tensor)

    def release(self):
        """Drop the data tensor (the net is about to compute a new one); the shape stays."""
        self._data.set(None)

    def __repr__(self):
        return f"<Blob shape={self._shape}>"


def defer_diff(param, value):
    """Let the param's diff read as the tensor `value` (an update a solver did not copy into
    the diff) without copying it now: `settle_diff` copies it when the diff is read or
    accumulated into; `drop_deferred_diff` forgets it when the diff is cleared."""
    if param.grad is not None:  # its memory is reused by the next backward (take_spare_diff)
        param.caffe_spare_diff = param.grad
    param.grad = None
    param.caffe_deferred_diff = value


def take_spare_diff(param):
    """The tensor of the param's last diff, given up by `defer_diff`, for a backward to compute
    the next diff into (reusing memory saves the page faults of a fresh 151 MB gradient); or
    None."""
    spare = param.__dict__.pop("caffe_spare_diff", None)
    if spare is not None and spare.shape == param.shape and spare.dtype == param.dtype and spare.is_contiguous():
        return spare
    return None


def settle_diff(param):
    value = param.__dict__.pop("caffe_deferred_diff", None)
    if value is not None:
        param.grad = value.clone()


def drop_deferred_diff(param):
    param.__dict__.pop("caffe_deferred_diff", None)


class ParamBlob(Blob):
    """A layer's parameter blob: `.data` is the torch Parameter, `.diff` its `.grad`."""

    def __init__(self, layer, index):
        self._layer = layer
        self._index = index
        self._data = _Mirror()
        self._diff = _Mirror()

    @property
    def param(self):
        return self._layer.blobs[self._index]

    @property
    def _shape(self):
        return tuple(self.param.shape)

    def _side(self, side):
        p = self.param
        if side is self._data:
            if side.tensor is not p:
                side.set(p)
        else:
            settle_diff(p)
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if side.tensor is not p.grad:
                side.set(p.grad)
        return side

    def reshape(self, *shape):
        raise TypeError("a parameter blob's shape is fixed by its layer")
