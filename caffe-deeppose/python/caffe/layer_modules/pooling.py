"""Pooling over (N, C, H, W): MAX (with its optional mask top), AVE and STOCHASTIC, by Caffe's rules;
SPP, a pyramid of such poolings.

Output size (CEIL, the default): ceil((in + 2 pad - k) / stride) + 1, minus 1 if the last window
would start in the padding (only when there is padding); FLOOR rounds down. AVE divides by the window
clipped to [-pad, in + pad); MAX windows see only real cells and the first maximum (row-major) wins.
torch's pooling follows the same rules whenever its output size equals Caffe's and pad <= k / 2;
otherwise (no padding with stride > kernel, or large padding) an exact path pads explicitly.
"""
import math

import torch
import torch.nn.functional as F

from ..accel import active, native
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule

_P = caffe_pb2.PoolingParameter
_FLT_MAX = float(torch.finfo(torch.float32).max)


class _GradientInLayout(torch.autograd.Function):
    """The identity, its gradient passed on in `memory_format`: torch's pooling backward runs in the
    layout of the top's gradient, and with a bottom of another layout copies the bottom's gradient
    (the large blob) to it and back."""

    @staticmethod
    def forward(ctx, t, memory_format):
        ctx.memory_format = memory_format
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.memory_format), None


class _NativeMaxPool(torch.autograd.Function):
    """MAX pooling of an NCHW blob through the C kernels (caffe.accel.native); keeps the int32 mask."""

    @staticmethod
    def forward(ctx, x, kernel, stride, pad, out):
        top, mask = native.max_pool(x, kernel, stride, pad, out)
        ctx.save_for_backward(mask)
        ctx.shape = x.shape
        return top

    @staticmethod
    def backward(ctx, top_diff):
        (mask,) = ctx.saved_tensors
        return native.max_pool_backward(top_diff, mask, ctx.shape), None, None, None, None


def _channels_last(x):
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _hw(p, name, short):
    """(h, w) from the scalar field `name` or from both `short_h` and `short_w`."""
    has_h, has_w = p.HasField(short + "_h"), p.HasField(short + "_w")
    if has_h or has_w:
        if p.HasField(name) or not (has_h and has_w):
            raise ValueError(f"pooling_param: give {name}, or both {short}_h and {short}_w")
        return getattr(p, short + "_h"), getattr(p, short + "_w")
    return getattr(p, name), getattr(p, name)


def _pooled_size(size, k, pad, stride, ceil, padded):
    """Caffe's output size along one axis (`padded`: the layer has padding on some axis)."""
    span = size + 2 * pad - k
    out = (-(-span // stride) if ceil else span // stride) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_size(size, k, pad, stride, ceil):
    """torch's output size along one axis for the same window (None where torch refuses it)."""
    if 2 * pad > k or size + 2 * pad < k:
        return None
    out = (size + 2 * pad - k + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window_lengths(size, k, pad, stride, out, device):
    """AVE divisor along one axis: each window clipped to [-pad, size + pad)."""
    start = torch.arange(out, device=device) * stride - pad
    return torch.clamp(start + k, max=size + pad) - start


@register_layer("Pooling")
class Pooling(LayerModule):
    num_bottoms = 1
    min_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.pooling_param
        self.method = p.pool
        if self.method not in (_P.MAX, _P.AVE, _P.STOCHASTIC):
            raise ValueError(f"unknown pooling method {self.method}")
        max_tops = 2 if self.method == _P.MAX else 1
        if len(param.top) > max_tops:
            raise ValueError(f"{_P.PoolMethod.Name(self.method)} pooling makes at most {max_tops} top(s) "
                             "(only MAX has the mask top)")
        self.with_mask = len(param.top) == 2
        self.global_pooling = p.global_pooling
        self.ceil = p.round_mode == _P.CEIL
        has_kernel = p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w")
        if self.global_pooling and has_kernel:
            raise ValueError("pooling_param: with global_pooling the kernel size cannot be given")
        if not self.global_pooling and not has_kernel:
            raise ValueError("pooling_param: kernel_size (or kernel_h and kernel_w) is required")
        self.kernel = None if self.global_pooling else _hw(p, "kernel_size", "kernel")
        self.pad = _hw(p, "pad", "pad")
        self.stride = _hw(p, "stride", "stride")
        if self.kernel is not None and min(self.kernel) <= 0:
            raise ValueError(f"pooling_param: kernel {self.kernel} must be positive")
        if min(self.stride) <= 0:
            raise ValueError(f"pooling_param: stride {self.stride} must be positive")
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise ValueError("pooling_param: global_pooling needs pad 0 and stride 1")
        if self.pad != (0, 0):
            if self.method == _P.STOCHASTIC:
                raise ValueError("pooling_param: padding is implemented only for MAX and AVE pooling")
            if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
                raise ValueError(f"pooling_param: pad {self.pad} must be smaller than kernel {self.kernel}")
        self._plans = {}  # (H, W) -> (kernel, output size, whether torch's pooling matches Caffe)
        self._divisors = {}  # (H, W, device, dtype) -> AVE divisor map for the exact path

    def _plan(self, h, w):
        plan = self._plans.get((h, w))
        if plan is None:
            k = (h, w) if self.global_pooling else self.kernel
            padded = self.pad != (0, 0)
            out = tuple(_pooled_size(n, k[i], self.pad[i], self.stride[i], self.ceil, padded)
                        for i, n in enumerate((h, w)))
            if min(out) <= 0:
                raise ValueError(f"pooling window {k} does not fit the {h}x{w} input")
            native = out == tuple(_torch_size(n, k[i], self.pad[i], self.stride[i], self.ceil)
                                  for i, n in enumerate((h, w)))
            plan = self._plans[(h, w)] = (k, out, native)
        return plan

    def _pad_to_windows(self, x, k, out, pad, value):
        """x padded (or cropped) so that `out` windows of `k` with stride and no padding cover it."""
        (h, w), (sh, sw) = x.shape[2:], self.stride
        right_h = (out[0] - 1) * sh + k[0] - h - pad[0]
        right_w = (out[1] - 1) * sw + k[1] - w - pad[1]
        return F.pad(x, (pad[1], right_w, pad[0], right_h), value=value)

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise ValueError(f"Pooling needs a 4-d (num, channels, height, width) input, got {shape}")
        return [shape[:2] + self._plan(shape[2], shape[3])[1]] * (1 + self.with_mask)

    def forward(self, x):
        self.top_shapes([x.shape])
        k, out, torch_fits = self._plan(x.shape[2], x.shape[3])
        if self.method == _P.MAX:
            return self._max(x, k, out, torch_fits)
        if self.method == _P.AVE:
            return (self._ave(x, k, out, torch_fits),)
        return (self._stochastic(x, k, out),)

    def _native(self, x):
        """Whether MAX pooling of `x` runs in the C kernels (an NCHW CPU float32 blob, eager)."""
        return (x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
                and type(x) is torch.Tensor and not torch.compiler.is_compiling() and active("native_pool", self))

    def _max(self, x, k, out, torch_fits):
        if not self.with_mask and self._native(x):
            return (_NativeMaxPool.apply(x, k, self.stride, self.pad, out),)
        if torch_fits:
            if not self.with_mask:
                top = F.max_pool2d(x, k, self.stride, self.pad, ceil_mode=self.ceil)
                if top.requires_grad and _channels_last(x):  # a channels-last bottom (CAFFE_CHANNELS_LAST=1)
                    top = _GradientInLayout.apply(top, torch.channels_last)
                return (top,)
            top, index = F.max_pool2d(x, k, self.stride, self.pad, ceil_mode=self.ceil, return_indices=True)
            return top, index.to(x.dtype)
        # Caffe starts each window at -FLT_MAX and takes strictly greater values: -FLT_MAX padding
        # gives the same value, and a maximum found in the padding is Caffe's "no index" (-1).
        xp = self._pad_to_windows(x, k, out, self.pad, -_FLT_MAX)
        top, index = F.max_pool2d(xp, k, self.stride, return_indices=True)
        if not self.with_mask:
            return (top,)
        (h, w), wp = x.shape[2:], xp.shape[3]
        row, col = index // wp - self.pad[0], index % wp - self.pad[1]
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        return top, torch.where(inside, row * w + col, -1).to(x.dtype)

    def _ave(self, x, k, out, torch_fits):
        if torch_fits:
            return F.avg_pool2d(x, k, self.stride, self.pad, ceil_mode=self.ceil, count_include_pad=True)
        sums = F.avg_pool2d(self._pad_to_windows(x, k, out, self.pad, 0.0), k, self.stride, divisor_override=1)
        return sums / self._divisor_map(x, k, out)

    def _divisor_map(self, x, k, out):
        key = (x.shape[2], x.shape[3], x.device, x.dtype)
        d = self._divisors.get(key)
        if d is None:
            rows, cols = (_window_lengths(x.shape[2 + i], k[i], self.pad[i], self.stride[i], out[i], x.device)
                          for i in (0, 1))
            d = self._divisors[key] = torch.outer(rows, cols).to(x.dtype)
        return d

    def _stochastic(self, x, k, out):
        """TRAIN: one cell per window, drawn with probability value / window sum (Caffe's GPU kernel);
        TEST: the probability-weighted average sum(x^2) / sum(x), 0 where the sum is not positive."""
        xp = self._pad_to_windows(x, k, out, (0, 0), 0.0)
        if self.phase == caffe_pb2.TEST:
            sums = F.avg_pool2d(xp, k, self.stride, divisor_override=1)
            squares = F.avg_pool2d(xp * xp, k, self.stride, divisor_override=1)
            positive = sums > 0
            return torch.where(positive, squares / torch.where(positive, sums, 1.0), 0.0)
        windows = xp.unfold(2, k[0], self.stride[0]).unfold(3, k[1], self.stride[1]).flatten(4)
        cumsum = windows.cumsum(-1)
        threshold = torch.rand(cumsum.shape[:-1] + (1,), device=x.device, dtype=x.dtype) * cumsum[..., -1:]
        pick = (cumsum >= threshold).to(torch.uint8).argmax(-1, keepdim=True)  # the first cell reaching it
        return windows.gather(-1, pick).squeeze(-1)


@register_layer("SPP")
class SPP(LayerModule):
    """Spatial pyramid pooling. Level l < pyramid_height pools into 2^l x 2^l bins: per axis kernel =
    stride = ceil(size / 2^l), pad = (kernel 2^l - size + 1) // 2, by Pooling's rules (so a size whose
    pad would reach the kernel is refused, as in Caffe). The levels are flattened and joined along
    axis 1: top (N, C * sum of the bins); with pyramid_height 1 the top is the one level's (N, C, 1, 1)."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.spp_param
        if p.pyramid_height < 1:
            raise ValueError("spp_param.pyramid_height must be at least 1")
        self.pyramid_height, self.method = p.pyramid_height, p.pool
        self._levels = {}  # (H, W) -> one Pooling per level

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) != 4 or min(shape[2:]) <= 0:
            raise ValueError(f"SPP needs a 4-d (num, channels, height, width) input with a non-empty plane, "
                             f"got {tuple(shape)}")
        self._pyramid(shape[2], shape[3])

    def _pyramid(self, h, w):
        levels = self._levels.get((h, w))
        if levels is None:
            levels = self._levels[(h, w)] = [self._level(i, h, w) for i in range(self.pyramid_height)]
        return levels

    def _level(self, i, h, w):
        bins = 2 ** i
        layer = caffe_pb2.LayerParameter(name=f"{self.name} level {i}", type="Pooling", top=["level"])
        p = layer.pooling_param
        p.pool = self.method  # SPPParameter.PoolMethod numbers PoolingParameter's MAX, AVE, STOCHASTIC
        p.kernel_h, p.kernel_w = -(-h // bins), -(-w // bins)
        p.stride_h, p.stride_w = p.kernel_h, p.kernel_w
        p.pad_h, p.pad_w = (p.kernel_h * bins - h + 1) // 2, (p.kernel_w * bins - w + 1) // 2
        try:
            return Pooling(layer, self.phase)
        except ValueError as e:
            raise ValueError(f"pyramid level {i} of a {h}x{w} input: {e}") from None

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise ValueError(f"SPP needs a 4-d (num, channels, height, width) input, got {shape}")
        levels = [level.top_shapes([shape])[0] for level in self._pyramid(shape[2], shape[3])]
        if self.pyramid_height == 1:
            return levels
        return [(shape[0], sum(math.prod(s[1:]) for s in levels))]

    def forward(self, x):
        self.top_shapes([x.shape])
        levels = self._pyramid(x.shape[2], x.shape[3])
        if self.pyramid_height == 1:
            return levels[0](x)
        return (torch.cat([level(x)[0].flatten(1) for level in levels], 1),)
