"""Scale and Bias: multiply / add a blob (or bottom 1) broadcast over bottom 0 from `axis` on."""
import torch

from .. import fillers
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule


def _operand_shape(shape, axis, num_axes, what):
    """The learned blob's shape: bottom 0's axes axis .. axis + num_axes (-1: to the end)."""
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"{what}: axis {axis} is out of range for a {len(shape)}-axis bottom")
    axis %= len(shape)
    if num_axes < -1:
        raise ValueError(f"{what}: num_axes must be non-negative, or -1 to extend to the end of bottom 0")
    if num_axes >= 0 and axis + num_axes > len(shape):
        raise ValueError(f"{what}: the blob's {num_axes} axes from axis {axis} extend past bottom 0's shape "
                         f"{tuple(shape)}")
    return tuple(shape[axis:] if num_axes == -1 else shape[axis:axis + num_axes])


def _check_operand(operand, x, axis, what):
    """The operand's shape is x's from `axis` on (a 0-axis operand fits any x)."""
    if len(operand) and tuple(x[axis % len(x):axis % len(x) + len(operand)]) != tuple(operand):
        raise ValueError(f"{what}: shape {tuple(operand)} does not match bottom 0's axes from {axis % len(x)}: "
                         f"{tuple(x)}")


def _broadcast(operand, x, axis, what):
    """`operand` viewed to broadcast over x, its first axis at x's `axis` (a scalar broadcasts anywhere)."""
    _check_operand(operand.shape, x.shape, axis, what)
    if operand.dim() == 0:
        return operand
    axis %= x.dim()
    return operand.reshape(operand.shape + (1,) * (x.dim() - axis - operand.dim()))


class _Broadcasting(LayerModule):
    """One or two bottoms: with one, the operand is the layer's first blob; with two, bottom 1."""

    min_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        if len(param.bottom) > 2:
            raise ValueError(f"{self.type_name} takes 1 or 2 bottoms, the prototxt gives {len(param.bottom)}")
        self.two_bottoms = len(param.bottom) == 2

    def top_shapes(self, bottom_shapes):
        x = tuple(bottom_shapes[0])
        for operand, what in self._operands(bottom_shapes):
            _check_operand(operand, x, self.axis, what)
        return [x]


@register_layer("Scale")
class Scale(_Broadcasting):
    """top = x * scale (+ bias with bias_term); the scale filler defaults to constant 1."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.scale_param
        self.axis, self.num_axes, self.bias_term = p.axis, p.num_axes, p.bias_term
        if p.HasField("filler"):
            self._filler = p.filler
        else:
            self._filler = caffe_pb2.FillerParameter(type="constant", value=1)
        self._bias_filler = p.bias_filler

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if not self.two_bottoms:
            self.add_blob(fillers.fill(self._filler, _operand_shape(shape, self.axis, self.num_axes, "Scale")))
        if self.bias_term:  # Caffe's inner Bias layer: bottom 1's number of axes in the two-bottom form
            num_axes = len(bottom_shapes[1]) if self.two_bottoms else self.num_axes
            self.add_blob(fillers.fill(self._bias_filler, _operand_shape(shape, self.axis, num_axes, "Scale bias")))
        del self._filler, self._bias_filler

    def _operands(self, bottom_shapes):
        """(shape, name) of what multiplies and what adds."""
        scale = bottom_shapes[1] if self.two_bottoms else self.blobs[0].shape
        return [(scale, "Scale")] + ([(self.blobs[-1].shape, "Scale bias")] if self.bias_term else [])

    def forward(self, x, scale=None):
        scale = _broadcast(self.blobs[0] if scale is None else scale, x, self.axis, "Scale")
        if not self.bias_term:
            return (x * scale,)
        return (torch.addcmul(_broadcast(self.blobs[-1], x, self.axis, "Scale bias"), x, scale),)

    def channel_affine(self, ndim, channels):
        """(a, c), top = a x + c per channel (axis 1) of an `ndim`-axis bottom with `channels`
        channels, or None where the layer is not that map (two bottoms, another axis)."""
        scale = self.blobs[0]
        if self.two_bottoms or not (scale.dim() == 0 or (tuple(scale.shape) == (channels,) and self.axis % ndim == 1)):
            return None
        a = scale.expand(channels)
        return a, (self.blobs[-1].expand(channels) if self.bias_term else torch.zeros_like(a))


@register_layer("Bias")
class Bias(_Broadcasting):
    """top = x + bias; the filler defaults to constant 0."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.bias_param
        self.axis, self.num_axes, self._filler = p.axis, p.num_axes, p.filler

    def setup(self, bottom_shapes):
        if not self.two_bottoms:
            self.add_blob(fillers.fill(self._filler, _operand_shape(bottom_shapes[0], self.axis, self.num_axes,
                                                                    "Bias")))
        del self._filler

    def _operands(self, bottom_shapes):
        return [(bottom_shapes[1] if self.two_bottoms else self.blobs[0].shape, "Bias")]

    def forward(self, x, bias=None):
        return (x + _broadcast(self.blobs[0] if bias is None else bias, x, self.axis, "Bias"),)
