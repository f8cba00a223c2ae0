"""Reduction: SUM, ASUM, SUMSQ or MEAN over every axis from `axis` on, times `coeff`."""
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule, canonical_axis

_Op = caffe_pb2.ReductionParameter


@register_layer("Reduction")
class Reduction(LayerModule):
    """Top shape = bottom.shape[:axis] (a 0-axis blob for axis 0); ASUM's gradient at 0 is 0."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.reduction_param
        self.op, self.axis, self.coeff = p.operation, p.axis, p.coeff

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0][:canonical_axis(self.axis, len(bottom_shapes[0]), "reduction_param.axis")])]

    def forward(self, x):
        axis = canonical_axis(self.axis, x.dim(), "reduction_param.axis")
        x = x.reshape(tuple(x.shape[:axis]) + (-1,))
        if self.op == _Op.ASUM:
            x = x.abs()
        elif self.op == _Op.SUMSQ:
            x = x * x
        coeff = self.coeff / x.shape[-1] if self.op == _Op.MEAN else self.coeff
        return (x.sum(-1) * coeff,)
