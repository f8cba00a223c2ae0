"""Convolution and Deconvolution over 1, 2 or 3 spatial axes (Caffe's BaseConvolutionLayer rules), and
Im2col, the patch matrix a convolution multiplies (any number of spatial axes)."""
import math

import torch
import torch.nn.functional as F

from .. import fillers
from ..accel import active
from ..registry import register_layer
from .base import LayerModule, canonical_axis

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _per_axis(p, name, n, default, short=None):
    """One value per spatial axis from the repeated field `name` or from `short_h`/`short_w`, as Caffe
    reads them (the repeated form gives one value for all axes or one per axis)."""
    values, short = list(getattr(p, name)), short or name
    if p.HasField(short + "_h") or p.HasField(short + "_w"):
        if n != 2:
            raise ValueError(f"{short}_h & {short}_w can only be used for 2-d convolution ({n} spatial axes)")
        if values:
            raise ValueError(f"give either {name} or {short}_h/{short}_w, not both")
        return (getattr(p, short + "_h"), getattr(p, short + "_w"))
    if not values:
        if default is None:
            raise ValueError(f"convolution_param.{name} is required")
        return (default,) * n
    if len(values) not in (1, n):
        raise ValueError(f"{name} must be given once or once per spatial axis ({len(values)} values for "
                         f"{n} spatial axes)")
    return tuple(values) * n if len(values) == 1 else tuple(values)


def _geometry(p, n):
    """(kernel, stride, pad, dilation) per spatial axis from a ConvolutionParameter, for n axes."""
    kernel = _per_axis(p, "kernel_size", n, None, "kernel")
    stride = _per_axis(p, "stride", n, 1)
    pad = _per_axis(p, "pad", n, 0)
    dilation = list(p.dilation)
    if len(dilation) not in (0, 1, n):
        raise ValueError(f"dilation must be given once or once per spatial axis ({len(dilation)} values "
                         f"for {n} spatial axes)")
    dilation = tuple(dilation) * n if len(dilation) == 1 else tuple(dilation) or (1,) * n
    if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise ValueError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be positive")
    return kernel, stride, pad, dilation


def _conv_sizes(spatial, kernel, stride, pad, dilation):
    """A convolution's output size per spatial axis (rounded down); an error where the padded input
    is smaller than the kernel's extent."""
    out = []
    for i, (n, k, s, p, d) in enumerate(zip(spatial, kernel, stride, pad, dilation)):
        extent = d * (k - 1) + 1
        if n + 2 * p < extent:
            raise ValueError(f"the kernel extent {extent} exceeds the padded size {n + 2 * p} of spatial axis {i}")
        out.append((n + 2 * p - extent) // s + 1)
    return tuple(out)


class _BaseConvolution(LayerModule):
    """Shared set-up; `transposed` selects Deconvolution (weights (C_in, num_output / group, *k))."""

    min_bottoms = 1
    min_tops = 1
    transposed = False

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.convolution_param
        if len(param.top) != len(param.bottom):
            raise ValueError(f"{self.type_name} makes one top per bottom: {len(param.bottom)} bottoms, "
                             f"{len(param.top)} tops")
        if p.num_output <= 0:
            raise ValueError("convolution_param.num_output must be positive")
        self.num_output, self.group, self.bias_term = p.num_output, p.group, p.bias_term
        if self.group <= 0 or self.num_output % self.group:
            raise ValueError(f"num_output {self.num_output} is not a multiple of group {self.group}")
        self._param = p

    def setup(self, bottom_shapes):
        p, shape = self._param, bottom_shapes[0]
        if any(tuple(s) != tuple(shape) for s in bottom_shapes[1:]):
            raise ValueError(f"all bottoms must have the same shape: {[tuple(s) for s in bottom_shapes]}")
        if not -len(shape) <= p.axis < len(shape) or p.axis % len(shape) != 1:
            raise ValueError(f"convolution_param.axis {p.axis} is not supported: only axis 1 "
                             "(channels after the batch axis)")
        n = len(shape) - 2
        if n not in _CONV:
            raise ValueError(f"{n} spatial axes: only 1-d, 2-d and 3-d convolution are supported")
        self.kernel, self.stride, self.pad, self.dilation = _geometry(p, n)
        channels = shape[1]
        if channels % self.group:
            raise ValueError(f"{channels} input channels are not a multiple of group {self.group}")
        out, inp = (channels, self.num_output) if self.transposed else (self.num_output, channels)
        self.add_blob(fillers.fill(p.weight_filler, (out, inp // self.group) + self.kernel))
        if self.bias_term:
            self.add_blob(fillers.fill(p.bias_filler, (self.num_output,)))
        self._op = (_DECONV if self.transposed else _CONV)[n]
        del self._param

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if any(tuple(s) != shape for s in bottom_shapes[1:]):
            raise ValueError(f"all bottoms must have the same shape: {[tuple(s) for s in bottom_shapes]}")
        weight = self.blobs[0].shape
        channels = weight[0] if self.transposed else weight[1] * self.group
        if len(shape) != len(self.kernel) + 2 or shape[1] != channels:
            raise ValueError(f"the layer was set up for bottoms of {channels} channels and {len(self.kernel)} "
                             f"spatial axes, got shape {shape}")
        if self.transposed:
            spatial = tuple(s * (n - 1) + d * (k - 1) + 1 - 2 * p for n, k, s, p, d in
                            zip(shape[2:], self.kernel, self.stride, self.pad, self.dilation))
            if min(spatial) <= 0:
                raise ValueError(f"the output size {spatial} of a bottom of shape {shape} is not positive")
        else:
            spatial = _conv_sizes(shape[2:], self.kernel, self.stride, self.pad, self.dilation)
        return [shape[:1] + (self.num_output,) + spatial] * len(bottom_shapes)

    def forward(self, *bottoms):
        bias = self.blobs[1] if self.bias_term else None
        return tuple(self._op(self._layout(x), self.blobs[0], bias, stride=self.stride, padding=self.pad,
                              dilation=self.dilation, groups=self.group) for x in bottoms)

    def _layout(self, x):
        """On the CPU a 2-d convolution reads its bottom NCHW: oneDNN's channels-last kernels are
        faster but round 2-4x farther from float64 (caffe.accel: `channels_last`, off by default),
        and a channels-last bottom (the compiled inference's convolutions write one, the C kernels
        and pooling keep the layout they are given) would take them. With `channels_last` on
        (CAFFE_CHANNELS_LAST=1) it reads channels-last; the top comes out channels-last and the
        layers after it keep that layout, so only the net's input is converted. Same values up to
        rounding, other strides (blobs read as before)."""
        if x.dim() == 4 and x.device.type == "cpu" and not self.transposed:
            if active("channels_last", self):
                return x.contiguous(memory_format=torch.channels_last)
            return x.contiguous()
        return x


@register_layer("Convolution")
class Convolution(_BaseConvolution):
    """Cross-correlation; the output size rounds down: (in + 2 pad - dilation (k - 1) - 1) // stride + 1."""


@register_layer("Deconvolution")
class Deconvolution(_BaseConvolution):
    """Transposed convolution: output = stride (in - 1) + dilation (k - 1) + 1 - 2 pad."""

    transposed = True


@register_layer("Im2col")
class Im2col(LayerModule):
    """The convolution patches of each item as channels: axis `convolution_param.axis` (the channel
    axis; the axes before it are items, the axes after it spatial) becomes C * prod(kernel), ordered
    channel-major then kernel offsets row-major; each spatial axis becomes the convolution's output
    size (rounded down). Only the geometry fields of convolution_param are read, as in Caffe."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self._param = param.convolution_param

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        self.axis = canonical_axis(self._param.axis, len(shape), "convolution_param.axis")
        n = len(shape) - self.axis - 1
        if n < 1:
            raise ValueError(f"needs at least one spatial axis after the channel axis {self.axis}, "
                             f"the bottom has shape {tuple(shape)}")
        self.kernel, self.stride, self.pad, self.dilation = _geometry(self._param, n)
        del self._param

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != self.axis + 1 + len(self.kernel):
            raise ValueError(f"the layer was set up for {self.axis + 1 + len(self.kernel)}-axis bottoms, got "
                             f"shape {shape}")
        out = _conv_sizes(shape[self.axis + 1:], self.kernel, self.stride, self.pad, self.dilation)
        return [shape[:self.axis] + (shape[self.axis] * math.prod(self.kernel),) + out]

    def forward(self, x):
        lead, channels, spatial = x.shape[:self.axis], x.shape[self.axis], x.shape[self.axis + 1:]
        n = len(spatial)
        out = _conv_sizes(spatial, self.kernel, self.stride, self.pad, self.dilation)
        cols = x.reshape((math.prod(lead), channels) + tuple(spatial))
        cols = F.pad(cols, [p for pad in reversed(self.pad) for p in (pad, pad)])
        for i in range(n):  # windows of each axis, appended as trailing axes
            extent = self.dilation[i] * (self.kernel[i] - 1) + 1
            cols = cols.unfold(2 + i, extent, self.stride[i])[..., ::self.dilation[i]]
        cols = cols.permute((0, 1) + tuple(range(2 + n, 2 + 2 * n)) + tuple(range(2, 2 + n)))
        return (cols.reshape(tuple(lead) + (channels * math.prod(self.kernel),) + out),)
