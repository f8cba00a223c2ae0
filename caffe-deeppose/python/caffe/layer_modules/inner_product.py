"""InnerProduct, a fully connected layer over the axes from `axis` on, and Embed, its one-hot twin (a
lookup table)."""
import math

import torch

from .. import fillers
from ..accel import active, onednn
from ..blob import take_spare_diff
from ..registry import register_layer
from .base import LayerModule, canonical_axis, check_index_range

# oneDNN's inner product beats torch's BLAS sgemm from this many rows on weights of this many values
# (no-grad, CPU: fc6 of the DeepPose net at batch 32 in 2/3 of the time; bench/bench_fastpath.py);
# with fewer rows or smaller weights the BLAS call is as fast or faster
ONEDNN_MIN_ROWS, ONEDNN_MIN_WEIGHTS = 16, 1 << 20


def _onednn_linear(x, w):
    """Whether `linear(x, w)` runs as oneDNN's inner product (no gradient wanted, CPU float32)."""
    return (x.dim() == 2 and x.shape[0] >= ONEDNN_MIN_ROWS and w.numel() >= ONEDNN_MIN_WEIGHTS
            and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == w.dtype == torch.float32
            and w.is_contiguous() and active("onednn_linear"))


@register_layer("InnerProduct")
class InnerProduct(LayerModule):
    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.inner_product_param
        if not p.HasField("num_output"):
            raise ValueError("inner_product_param.num_output is required")
        if p.num_output <= 0:
            raise ValueError(f"inner_product_param.num_output must be positive, got {p.num_output}")
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.axis = p.axis
        self.transpose = p.transpose
        self._weight_filler, self._bias_filler = p.weight_filler, p.bias_filler

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        self.axis = canonical_axis(self.axis, len(shape), "inner_product_param.axis")
        k = math.prod(shape[self.axis:])
        wshape = (k, self.num_output) if self.transpose else (self.num_output, k)
        self.add_blob(fillers.fill(self._weight_filler, wshape))
        if self.bias_term:
            self.add_blob(fillers.fill(self._bias_filler, (self.num_output,)))

    def _check(self, shape):
        features = self.blobs[0].shape[0 if self.transpose else 1]
        if len(shape) <= self.axis or math.prod(shape[self.axis:]) != features:
            raise ValueError(f"input of shape {tuple(shape)} has {math.prod(shape[self.axis:])} features per item "
                             f"(from axis {self.axis}), the weights expect {features}")

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self._check(shape)
        return [shape[:self.axis] + (self.num_output,)]

    def forward(self, x):
        self._check(x.shape)
        x = x.flatten(self.axis)
        w = self.blobs[0].t() if self.transpose else self.blobs[0]
        bias = self.blobs[1] if self.bias_term else None
        if _onednn_linear(x, w):
            return (onednn.linear(x, w, bias),)
        if (torch.is_grad_enabled() and not self.transpose and x.dim() == 2 and x.device.type == "cpu"
                and not torch.compiler.is_compiling() and active("reused_diffs")):
            return (_Linear.apply(x, w, bias),)
        return (torch.nn.functional.linear(x, w, bias),)


class _Linear(torch.autograd.Function):
    """x w^T + b (oneDNN's inner product where `_onednn_linear` says it is faster) whose backward
    computes the weight diff into the memory of the previous one (blob.take_spare_diff)."""

    @staticmethod
    def forward(ctx, x, w, bias):
        ctx.save_for_backward(x, w)
        ctx.weight = w
        if _onednn_linear(x, w):  # gradients are off inside forward
            return onednn.linear_eager(x, w, bias)
        return torch.nn.functional.linear(x, w, bias)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = dy.mm(w) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            spare = take_spare_diff(ctx.weight)
            dw = torch.mm(dy.t(), x) if spare is None else torch.mm(dy.t(), x, out=spare)
        db = dy.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


@register_layer("Embed")
class Embed(LayerModule):
    """A lookup table: each bottom value, an integer index in [0, input_dim), selects a row of the
    (input_dim, num_output) weight blob; top shape = bottom shape + (num_output,), plus the bias.
    Indices outside the table or not integers are refused (Caffe's debug checks). No gradient to the
    indices."""

    num_bottoms = 1
    num_tops = 1
    no_grad_bottoms = (0,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.embed_param
        if p.num_output <= 0 or p.input_dim <= 0:
            raise ValueError(f"embed_param.num_output ({p.num_output}) and input_dim ({p.input_dim}) must be "
                             "positive")
        self.num_output, self.input_dim, self.bias_term = p.num_output, p.input_dim, p.bias_term
        self._weight_filler, self._bias_filler = p.weight_filler, p.bias_filler

    def setup(self, bottom_shapes):
        self.add_blob(fillers.fill(self._weight_filler, (self.input_dim, self.num_output)))
        if self.bias_term:
            self.add_blob(fillers.fill(self._bias_filler, (self.num_output,)))

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0]) + (self.num_output,)]

    def forward(self, index):
        check_index_range(index, self.input_dim, f"layer {self.name!r}: Embed index")
        fractional = index != index.trunc()
        if not index.is_meta and bool(fractional.any()):
            raise ValueError(f"layer {self.name!r}: Embed index {float(index[fractional][0]):g} is not an integer")
        top = torch.nn.functional.embedding(index.to(torch.int64), self.blobs[0])
        return (top + self.blobs[1] if self.bias_term else top,)
