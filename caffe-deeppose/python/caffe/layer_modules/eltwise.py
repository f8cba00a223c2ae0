"""Eltwise: the element-wise SUM (with coefficients), PROD or MAX of bottoms of one shape."""
import torch

from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule
from .shape import check_same_shapes

_Op = caffe_pb2.EltwiseParameter


class _QuotientProd(torch.autograd.Function):
    """The product whose gradient is top / bottom_i * top_diff (stable_prod_grad: false)."""

    @staticmethod
    def forward(ctx, *bottoms):
        top = bottoms[0]
        for b in bottoms[1:]:
            top = top * b
        ctx.save_for_backward(top, *bottoms)
        return top

    @staticmethod
    def backward(ctx, grad):
        top, *bottoms = ctx.saved_tensors
        return tuple(top / b * grad for b in bottoms)


@register_layer("Eltwise")
class Eltwise(LayerModule):
    """SUM: sum of coeff_i * bottom_i. PROD: the product. MAX: the maximum, where bottom 1 beats
    bottom 0 on a tie and a later bottom wins only if strictly greater; its gradient goes to the
    winner only."""

    min_bottoms = 2
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.eltwise_param
        self.op = p.operation
        self.coeffs = list(p.coeff) or [1.0] * len(param.bottom)
        if len(self.coeffs) != len(param.bottom):
            raise ValueError(f"eltwise_param gives {len(p.coeff)} coeff for {len(param.bottom)} bottoms "
                             "(give one per bottom)")
        if p.coeff and self.op != _Op.SUM:
            raise ValueError("eltwise_param.coeff applies to operation SUM only")
        self.stable_prod_grad = p.stable_prod_grad

    def top_shapes(self, bottom_shapes):
        check_same_shapes(bottom_shapes)
        return [tuple(bottom_shapes[0])]

    def forward(self, *bottoms):
        check_same_shapes([b.shape for b in bottoms])
        if self.op == _Op.SUM:
            top = self.coeffs[0] * bottoms[0] if self.coeffs[0] != 1 else bottoms[0]
            for c, b in zip(self.coeffs[1:], bottoms[1:]):
                top = top + (c * b if c != 1 else b)
            return (top,)
        if self.op == _Op.PROD:
            if not self.stable_prod_grad:
                return (_QuotientProd.apply(*bottoms),)
            top = bottoms[0]
            for b in bottoms[1:]:
                top = top * b
            return (top,)
        a, b = bottoms[0], bottoms[1]
        top = torch.where(a > b, a, b)  # torch.where routes each gradient to the chosen bottom
        for b in bottoms[2:]:
            top = torch.where(b > top, b, top)
        return (top,)
