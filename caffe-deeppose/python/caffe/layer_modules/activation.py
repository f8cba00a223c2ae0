"""Element-wise (neuron) layers: one bottom, one top of the same shape, usable in place."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import fillers
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule


class Neuron(LayerModule):
    """One bottom, one top of its shape."""

    num_bottoms = 1
    num_tops = 1

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])]


@register_layer("ReLU")
class ReLU(Neuron):
    """max(x, 0) + negative_slope * min(x, 0); the gradient at exactly 0 is negative_slope."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.negative_slope = param.relu_param.negative_slope

    def forward(self, x):
        return (F.leaky_relu(x, self.negative_slope) if self.negative_slope else torch.relu(x),)


@register_layer("PReLU")
class PReLU(Neuron):
    """ReLU with a learned slope per channel (axis 1), or one shared slope (a 0-axis blob);
    the slopes start at 0.25 unless `filler` says otherwise."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.prelu_param
        self.channel_shared = p.channel_shared
        self._filler = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(type="constant",
                                                                                        value=0.25)

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise ValueError(f"PReLU needs a bottom with at least 2 axes, got {tuple(shape)}")
        self.add_blob(fillers.fill(self._filler, () if self.channel_shared else (shape[1],)))

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if not self.channel_shared and (len(shape) < 2 or shape[1] != self.blobs[0].shape[0]):
            raise ValueError(f"PReLU has {self.blobs[0].shape[0]} slopes (one per channel), the bottom has shape "
                             f"{shape}")
        return [shape]

    def forward(self, x):
        slope = self.blobs[0]
        if not self.channel_shared:
            slope = slope.reshape((1, -1) + (1,) * (x.dim() - 2))
        return (torch.where(x > 0, x, x * slope),)


@register_layer("Sigmoid")
class Sigmoid(Neuron):
    def forward(self, x):
        return (torch.sigmoid(x),)


@register_layer("TanH")
class TanH(Neuron):
    def forward(self, x):
        return (torch.tanh(x),)


@register_layer("ELU")
class ELU(Neuron):
    """x if x > 0, else alpha * (exp(x) - 1); the gradient at 0 is alpha."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.alpha = param.elu_param.alpha

    def forward(self, x):
        return (F.elu(x, self.alpha),)


@register_layer("AbsVal")
class AbsVal(Neuron):
    """|x|; the gradient at 0 is 0."""

    def forward(self, x):
        return (torch.abs(x),)


@register_layer("BNLL")
class BNLL(Neuron):
    """log(1 + exp(x)), computed stably."""

    def forward(self, x):
        return (F.softplus(x),)


@register_layer("Swish")
class Swish(Neuron):
    """x * sigmoid(beta * x)."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.beta = param.swish_param.beta

    def forward(self, x):
        return (x * torch.sigmoid(self.beta * x),)


@register_layer("Power")
class Power(Neuron):
    """(shift + scale * x) ^ power."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.power_param
        self.power, self.scale, self.shift = p.power, p.scale, p.shift

    def forward(self, x):
        if self.power * self.scale == 0:  # a constant; Caffe's gradient is 0
            return (torch.full_like(x, 1.0 if self.power == 0 else self.shift ** self.power),)
        base = self.shift + self.scale * x
        return (base if self.power == 1 else torch.pow(base, self.power),)


def _log_base(base, layer):
    """ln(base) for Exp/Log, where base -1 means e."""
    if base == -1:
        return 1.0
    if base <= 0:
        raise ValueError(f"{layer} base must be positive (or -1 for e), got {base}")
    return math.log(base)


@register_layer("Exp")
class Exp(Neuron):
    """base ^ (shift + scale * x), base -1 meaning e."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.exp_param
        log_base = _log_base(p.base, "exp_param")
        self.inner_scale = log_base * p.scale
        self.outer_scale = math.exp(log_base * p.shift)

    def forward(self, x):
        return (self.outer_scale * torch.exp(self.inner_scale * x),)


@register_layer("Log")
class Log(Neuron):
    """log_base(shift + scale * x), base -1 meaning e."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.log_param
        self.base_scale = 1.0 / _log_base(p.base, "log_param")
        self.scale, self.shift = p.scale, p.shift

    def forward(self, x):
        return (torch.log(self.shift + self.scale * x) * self.base_scale,)


@register_layer("Threshold")
class Threshold(Neuron):
    """1 where x > threshold (compared in float32), else 0. No gradient (Caffe has no backward)."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.threshold = float(np.float32(param.threshold_param.threshold))

    def forward(self, x):
        return ((x > self.threshold).to(x.dtype),)


@register_layer("Dropout")
class Dropout(Neuron):
    """TRAIN: keeps each value with probability 1 - ratio and scales it by 1 / (1 - ratio);
    TEST: the identity."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.ratio = param.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            raise ValueError(f"dropout_param.dropout_ratio must be in [0, 1), got {self.ratio}")
        self.train_phase = phase == caffe_pb2.TRAIN

    def forward(self, x):
        if not self.train_phase:
            return (x.view_as(x),)
        keep = torch.bernoulli(torch.full_like(x, 1.0 - self.ratio))
        return (x * keep * (1.0 / (1.0 - self.ratio)),)


@register_layer("Clip")
class Clip(Neuron):
    """max(min, min(x, max)) with `clip_param` min and max (both required; compared in float32; if
    min > max every value becomes min). The gradient passes where min <= x <= max, ends included."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.clip_param
        missing = [f for f in ("min", "max") if not p.HasField(f)]
        if missing:
            raise ValueError(f"clip_param.{' and '.join(missing)} is required")
        self.min, self.max = float(np.float32(p.min)), float(np.float32(p.max))

    def forward(self, x):
        return (x.clamp(max=self.max).clamp(min=self.min),)
