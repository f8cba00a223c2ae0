"""`type: "Python"`: a layer written by the user in Python, as pycaffe's `caffe.Layer`.

`python_param { module layer param_str }` names a class deriving from `caffe.Layer`; it is
imported from `sys.path` (PYTHONPATH), to which the working directory is appended (BVLC's
`caffe` binary finds it only on PYTHONPATH), and called like Caffe's PythonLayer does:
`param_str` and `phase` are set, then `setup(bottom, top)` and `reshape(bottom, top)` once, and
`reshape` + `forward(bottom, top)` at every forward, `backward(top, propagate_down, bottom)` at
every backward, on Blob objects holding host (numpy) arrays. On a GPU the bottoms are copied to
the host and the tops back. The backward is a `torch.autograd.Function`, so gradients flow
through the layer into the rest of the net. `self.blobs.add_blob(*shape)` makes learnable blobs:
saved with the weights and updated by the solvers like any layer's. Anything the user's code
raises becomes a `PythonLayerError` naming the layer, module and class, with the traceback.
"""
import importlib
import os
import sys
import traceback

import torch

from .. import common
from ..blob import Blob, ParamBlob
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule


class PythonLayerError(RuntimeError):
    """A Python layer that cannot be imported, or whose code failed; names layer, module and class."""


class BlobVec(list):
    """A Python layer's `self.blobs`: ParamBlobs, grown by `add_blob(*shape)` (pycaffe's BlobVec)."""

    def __init__(self, module):
        super().__init__()
        self._module = module

    def add_blob(self, *shape):
        """Append a learnable blob of this shape, filled with zeros."""
        shape = tuple(int(d) for d in (shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list))
                                       else shape))
        self._module.add_blob(torch.zeros(shape))
        self.append(ParamBlob(self._module, len(self)))


class Layer:
    """pycaffe's base class of Python layers: override `setup`, `reshape`, `forward` and
    `backward`; `self.param_str`, `self.phase` and `self.blobs` are set by the net."""

    type = "Python"

    def __init__(self, param=None):
        self.param_str = ""
        self.phase = caffe_pb2.TRAIN

    def setup(self, bottom, top):
        """Read `self.param_str`, check the bottoms, create `self.blobs` (once)."""

    def reshape(self, bottom, top):
        """Give the tops their shapes for these bottoms (`top[i].reshape(...)`)."""

    def forward(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(bottom, top)")

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward(top, propagate_down, bottom)")


def _host_blob(tensor):
    blob = Blob(tuple(tensor.shape))
    blob.set_data(tensor.detach().to("cpu", torch.float32))
    return blob


class _Bridge(torch.autograd.Function):
    """Autograd around the user's forward/backward; the layer's params are inputs so that the
    backward runs (and fills their diffs) even when no bottom needs a gradient."""

    @staticmethod
    def forward(ctx, layer, n_bottoms, *tensors):
        bottom = [_host_blob(t) for t in tensors[:n_bottoms]]
        tops = layer.run_forward(bottom)
        ctx.layer, ctx.bottom, ctx.device = layer, bottom, layer.device()
        return tuple(t.detach().to(ctx.device) for t in tops)  # new tensor objects for autograd to own

    @staticmethod
    def backward(ctx, *grads):
        n = len(ctx.bottom)
        propagate_down = [bool(ctx.needs_input_grad[2 + i]) for i in range(n)]
        diffs = ctx.layer.run_backward(grads, propagate_down, ctx.bottom)
        out = [d.to(ctx.device) if pd else None for d, pd in zip(diffs, propagate_down)]
        return (None, None, *out) + (None,) * (len(ctx.needs_input_grad) - 2 - n)


@register_layer("Python")
class PythonLayer(LayerModule):
    """The engine side of a user's `caffe.Layer` (kept as `self.user`)."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        pp = param.python_param
        self.module_name, self.class_name = pp.module, pp.layer
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # follows .to(device)
        if phase == caffe_pb2.TRAIN and common.solver_count() > 1 and not common._state["multiprocess"]:
            raise self._error("Python layers do not support multi-GPU training in one process "
                              "(Caffe: \"PythonLayer does not support CLI Multi-GPU, use train.py\")")
        cls = self._import()
        self.user = self._call(cls, "the constructor", param)
        self.user.param_str = pp.param_str
        self.user.phase = int(phase)
        self.user.blobs = BlobVec(self)
        self._tops = [Blob(()) for _ in param.top]

    # -- errors and calls into user code -----------------------------------------------------
    def _what(self):
        return f"Python layer {self.name!r} (module {self.module_name!r}, class {self.class_name!r})"

    def _error(self, message):
        return PythonLayerError(f"{self._what()}: {message}")

    def _call(self, fn, what, *args):
        try:
            return fn(*args)
        except Exception as e:
            raise self._error(f"{what} raised {type(e).__name__}: {e}\n{traceback.format_exc()}") from e

    def _import(self):
        if not self.module_name or not self.class_name:
            raise self._error("python_param needs both `module` and `layer`")
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:  # stays, for what the module imports later
            sys.path.append(cwd)
        try:
            module = importlib.import_module(self.module_name)
        except Exception as e:
            raise self._error(f"cannot import module {self.module_name!r} ({type(e).__name__}: {e}); it is looked "
                              f"for on sys.path (PYTHONPATH) and in the working directory {cwd}\n"
                              f"{traceback.format_exc()}") from e
        cls = getattr(module, self.class_name, None)
        if cls is None:
            raise self._error(f"module {self.module_name!r} ({getattr(module, '__file__', '?')}) has no "
                              f"attribute {self.class_name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise self._error(f"{self.module_name}.{self.class_name} is not a class deriving from caffe.Layer")
        return cls

    def _sync_params(self):
        """Params written through host mirrors (GPU) go back to the device."""
        for blob in self.user.blobs:
            blob._data.synced()
            blob._diff.synced()

    def _user(self, method, *args):
        self._call(getattr(self.user, method), f"{method}()", *args)
        self._sync_params()

    # -- LayerModule -------------------------------------------------------------------------
    def device(self):
        return self._anchor.device

    def setup(self, bottom_shapes):
        self._user("setup", [Blob(s) for s in bottom_shapes], self._tops)

    def top_shapes(self, bottom_shapes):
        self._user("reshape", [Blob(s) for s in bottom_shapes], self._tops)
        return [t.shape for t in self._tops]

    def run_forward(self, bottom):
        """reshape + forward on host blobs (Caffe's Layer::Forward); the top tensors."""
        shapes = [b.shape for b in bottom]
        self._user("reshape", bottom, self._tops)
        self._user("forward", bottom, self._tops)
        if [b.shape for b in bottom] != shapes:
            raise self._error(f"forward() reshaped its bottoms from {shapes} to {[b.shape for b in bottom]}")
        return [t.data_tensor() for t in self._tops]

    def run_backward(self, grads, propagate_down, bottom):
        """The user's backward with the top diffs set from `grads`; the bottom diff tensors."""
        shapes = [b.shape for b in bottom]
        for top, g in zip(self._tops, grads):
            if g is None:
                top.diff[...] = 0
            elif tuple(g.shape) != top.shape:
                raise self._error(f"top shape {top.shape} changed since forward (the gradient has {tuple(g.shape)})")
            else:
                top.diff[...] = g.detach().cpu().numpy()
        for b in bottom:
            b.diff[...] = 0
        self._user("backward", self._tops, propagate_down, bottom)
        if [b.shape for b in bottom] != shapes:
            raise self._error(f"backward() reshaped its bottoms from {shapes} to {[b.shape for b in bottom]}")
        return [b.diff_tensor() for b in bottom]

    def forward(self, *bottoms):
        if not self._tops:
            self.run_forward([_host_blob(t) for t in bottoms])
            return ()
        return _Bridge.apply(self, len(bottoms), *bottoms, *self.blobs)

    def extra_repr(self):
        return f"name={self.name!r}, module={self.module_name!r}, layer={self.class_name!r}"
