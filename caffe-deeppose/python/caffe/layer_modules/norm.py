"""Normalisation layers: LRN, BatchNorm (Caffe's running-sum statistics) and MVN."""
import torch
import torch.nn.functional as F

from ..accel import active, native
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule

_LRN = caffe_pb2.LRNParameter


@register_layer("LRN")
class LRN(LayerModule):
    """ACROSS_CHANNELS: x (k + alpha / n sum over n channels of x^2)^-beta, zero channels past the ends.
    WITHIN_CHANNEL: x (1 + alpha / n^2 sum over the n x n neighbourhood of x^2)^-beta, zero padding
    counted in the n^2 (Caffe builds it from AVE pooling with pad (n - 1) / 2; k is not used)."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.lrn_param
        if p.local_size % 2 == 0:
            raise ValueError(f"lrn_param.local_size must be odd, got {p.local_size}")
        if p.norm_region not in (_LRN.ACROSS_CHANNELS, _LRN.WITHIN_CHANNEL):
            raise ValueError(f"unknown lrn_param.norm_region {p.norm_region}")
        self.size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        self.across = p.norm_region == _LRN.ACROSS_CHANNELS
        self.native = self.across and active("native_lrn", self)  # asked once: torch.compile traces forward

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise ValueError(f"LRN needs a 4-d (num, channels, height, width) input, got {shape}")
        return [shape]

    def forward(self, x):
        self.top_shapes([x.shape])
        if self.across:
            if self.native and _native_lrn(x):
                if torch.is_grad_enabled() and x.requires_grad:
                    return (_NativeLRN.apply(x, self.size, self.alpha, self.beta, self.k),)
                top = lrn_across_channels_top if _traced(x) else native.lrn_forward
                return (top(x, self.size, self.alpha, self.beta, self.k),)
            sliced = torch.compiler.is_compiling() and not torch.is_grad_enabled()
            return (_AcrossChannelsLRN.apply(x, self.size, self.alpha, self.beta, self.k, sliced),)
        mean_square = F.avg_pool2d(x * x, self.size, 1, self.size // 2)
        return (x * (mean_square * self.alpha + 1).pow(-self.beta),)


def _channel_window_sum(t, n, sliced):
    """Sum over the n channels centred on each channel (zeros past the ends). As Caffe's running
    sum computes it: differences of a cumulative sum along the channels (two passes); `sliced`
    (a compiled forward without gradients): as n shifted slices, which the compiler fuses into
    one pass (with gradients, the compiled backward recomputed the slices' operands in each of
    them: slower than the running sum, measured by bench/bench_train_ab.py)."""
    h, c = n // 2, t.shape[1]
    if sliced:
        padded = F.pad(t, (0, 0, 0, 0, h, h))
        return sum(padded[:, i:i + c] for i in range(n))
    # the running sum of t with h + 1 zero channels before and h after, written in place (zeroing
    # only the h + 1 leading channels, not the whole padded blob as F.pad does before its copy)
    cs = t.new_empty((t.shape[0], c + n) + tuple(t.shape[2:]))
    cs[:, :h + 1] = 0
    torch.cumsum(t, 1, out=cs[:, h + 1:h + 1 + c])
    cs[:, h + 1 + c:] = cs[:, h + c:h + c + 1]
    return cs[:, n:] - cs[:, :c]


def _lrn_scale(x, n, alpha, beta, k, sliced):
    """(scale, scale^-beta) of the across-channels LRN of `x`: scale = k + alpha / n * window_sum(x^2)."""
    scale = _channel_window_sum(x * x, n, sliced).mul_(alpha / n).add_(k)
    return scale, scale.pow(-beta)


class _AcrossChannelsLRN(torch.autograd.Function):
    """scale = k + alpha / n * window_sum(x^2); top = x * scale^-beta; Caffe's backward:
    bottom_diff = top_diff * scale^-beta - 2 alpha beta / n * x * window_sum(top_diff * top / scale).
    Far fewer passes over the (large) blob than autograd through a pooling formulation. Keeps only
    the bottom and the top (the blobs): the backward computes scale and scale^-beta again from the
    bottom, as the forward did (the same bits), where keeping them held two more blobs' worth."""

    @staticmethod
    def forward(ctx, x, n, alpha, beta, k, sliced):
        scale, p = _lrn_scale(x, n, alpha, beta, k, sliced)
        y = x * p
        ctx.save_for_backward(x, y)
        ctx.params = n, alpha, beta, k, sliced
        ctx.n, ctx.coeff = n, 2 * alpha * beta / n
        return y

    @staticmethod
    def backward(ctx, top_diff):
        x, y = ctx.saved_tensors
        scale, p = _lrn_scale(x, *ctx.params)
        window = _channel_window_sum(torch.mul(top_diff, y).div_(scale), ctx.n, False)
        return torch.addcmul(top_diff * p, x, window, value=-ctx.coeff), None, None, None, None, None


def _native_lrn(x):
    """Whether the across-channels LRN of `x` can run in the C kernels (caffe.accel.native), if built."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4


@torch.library.custom_op("caffe::lrn_across_channels_top", mutates_args=())
def lrn_across_channels_top(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """The top of Caffe's across-channels LRN by the C kernel, in x's layout."""
    return native.lrn_forward(x, size, alpha, beta, k)


@lrn_across_channels_top.register_fake
def _(x, size, alpha, beta, k):
    return torch.empty_like(x, memory_format=native.memory_format(x))


@torch.library.custom_op("caffe::lrn_across_channels_backward", mutates_args=())
def lrn_across_channels_backward(top_diff: torch.Tensor, x: torch.Tensor, size: int, alpha: float, beta: float,
                                 k: float) -> torch.Tensor:
    """Caffe's LRN backward (bottom diff, in x's layout) from the forward's bottom (an opaque op
    for torch.compile; eager code calls the kernel directly: calling a custom op imports
    torch._dynamo)."""
    return native.lrn_backward(top_diff, x, size, alpha, beta, k)


@lrn_across_channels_backward.register_fake
def _(top_diff, x, size, alpha, beta, k):
    return torch.empty_like(x, memory_format=native.memory_format(x))


def _traced(t):
    """Whether `t` is being traced by the compiler (the kernels then go in as custom ops)."""
    return torch.compiler.is_compiling() or type(t) is not torch.Tensor


class _NativeLRN(torch.autograd.Function):
    """The across-channels LRN through the C kernels; keeps only the bottom."""

    @staticmethod
    def forward(ctx, x, n, alpha, beta, k):
        ctx.save_for_backward(x)
        ctx.params = n, alpha, beta, k
        return (lrn_across_channels_top if _traced(x) else native.lrn_forward)(x, n, alpha, beta, k)

    @staticmethod
    def backward(ctx, top_diff):
        (x,) = ctx.saved_tensors
        backward = lrn_across_channels_backward if _traced(top_diff) else native.lrn_backward
        return backward(top_diff, x, *ctx.params), None, None, None, None


@register_layer("BatchNorm")
class BatchNorm(LayerModule):
    """Blobs: running mean sum, running variance sum, scale factor (not learnable).

    TRAIN (unless use_global_stats): normalise with the batch mean and biased variance and add to
    the blobs b0 = maf b0 + mean, b1 = maf b1 + m / (m - 1) var, b2 = maf b2 + 1 (m = count / C).
    Global stats: mean = b0 / b2, var = b1 / b2 (both 0 when b2 == 0). No scale/shift (use Scale).
    """

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.batch_norm_param
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else phase == caffe_pb2.TEST
        self.moving_average_fraction, self.eps = p.moving_average_fraction, p.eps
        if any(spec.lr_mult != 0 for spec in param.param[:3]):
            raise ValueError("BatchNorm statistics cannot be learned: every param must have lr_mult 0")

    def setup(self, bottom_shapes):
        channels = bottom_shapes[0][1] if len(bottom_shapes[0]) > 1 else 1
        for shape in ((channels,), (channels,), (1,)):
            self.add_blob(torch.zeros(shape), learnable=False)

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        channels = shape[1] if len(shape) > 1 else 1
        if channels != self.blobs[0].shape[0]:
            raise ValueError(f"BatchNorm: input has {channels} channels, the blobs hold {self.blobs[0].shape[0]}")
        return [shape]

    def forward(self, x):
        shape = x.shape
        self.top_shapes([shape])
        if x.dim() == 1:
            x = x.unsqueeze(1)
        mean_sum, var_sum, factor = self.blobs
        if self.use_global_stats:
            y = F.batch_norm(x, *self._global_stats(), training=False, eps=self.eps)
            return (y.reshape(shape),)
        m = x.numel() // x.shape[1]
        if m > 1:  # torch's running stats with momentum 1 are exactly the batch mean and m/(m-1) var
            mean, unbiased_var = torch.zeros_like(mean_sum), torch.zeros_like(var_sum)
            y = F.batch_norm(x, mean, unbiased_var, training=True, momentum=1.0, eps=self.eps)
        else:  # one value per channel: it is its own mean, the variance is 0 and the output 0
            mean, unbiased_var = x.detach().reshape(-1), torch.zeros_like(var_sum)
            y = x - x
        if not self.replaying:
            self.count_statistics(mean, unbiased_var)
        return (y.reshape(shape),)

    def count_statistics(self, mean, unbiased_var):
        """Add a batch's mean and unbiased variance to the running sums (b0, b1, b2)."""
        mean_sum, var_sum, factor = self.blobs
        with torch.no_grad():
            maf = self.moving_average_fraction
            factor.mul_(maf).add_(1)
            mean_sum.mul_(maf).add_(mean)
            var_sum.mul_(maf).add_(unbiased_var)

    def _global_stats(self):
        """The stored mean and variance: the sums over the scale factor (0 while it is 0)."""
        mean_sum, var_sum, factor = self.blobs
        scale = torch.where(factor == 0, 0.0, 1.0 / factor)
        return mean_sum * scale, var_sum * scale

    def channel_affine(self, ndim, channels):
        """(a, c), top = a x + c per channel (axis 1) of an `ndim`-axis bottom with `channels`
        channels, or None where the layer is not that map (batch statistics)."""
        if not self.use_global_stats or ndim < 2:
            return None
        mean, var = self._global_stats()
        a = torch.rsqrt(var + self.eps)
        return a, -mean * a


class _MVNFunction(torch.autograd.Function):
    """(x - mean) / (std + eps) over the rows of a 2-d view; backward as mvn_layer.cpp computes it:
    (dy - mean(dy) - y mean(dy y)) / (std + eps), which is not the exact gradient when eps > 0."""

    @staticmethod
    def forward(ctx, x, eps):
        centred = x - x.mean(1, keepdim=True)
        denominator = (centred * centred).mean(1, keepdim=True).sqrt() + eps
        y = centred / denominator
        ctx.save_for_backward(y, denominator)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, denominator = ctx.saved_tensors
        dx = dy - dy.mean(1, keepdim=True) - y * (dy * y).mean(1, keepdim=True)
        return dx / denominator, None


@register_layer("MVN")
class MVN(LayerModule):
    """Mean (and variance) normalisation per (num, channel), or per num with across_channels."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.mvn_param
        self.normalize_variance, self.across_channels, self.eps = p.normalize_variance, p.across_channels, p.eps

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]

    def forward(self, x):
        rows = x.reshape(x.shape[0] if self.across_channels or x.dim() < 2 else x.shape[0] * x.shape[1], -1)
        if self.normalize_variance:
            y = _MVNFunction.apply(rows, self.eps)
        else:
            y = rows - rows.mean(1, keepdim=True)
        return (y.reshape(x.shape),)
