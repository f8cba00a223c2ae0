"""Loss layers: a scalar top (shape ()) weighted by loss_weight (1 by default)."""
import math

import torch
import torch.nn.functional as F

from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule, canonical_axis

_Norm = caffe_pb2.LossParameter


@register_layer("EuclideanLoss")
class EuclideanLoss(LayerModule):
    """sum((a - b)^2) / (2 N). N is the batch size (stock Caffe) by default; with
    `loss_param { normalization: FULL }` it is every element of the bottom (the DeepPose patch),
    with NONE it is 1."""

    num_bottoms = 2
    num_tops = 1
    loss_layer = True

    def __init__(self, param, phase):
        super().__init__(param, phase)
        lp = param.loss_param
        self.norm = lp.normalization if lp.HasField("normalization") else _Norm.BATCH_SIZE

    def forward(self, a, b):
        if a.numel() != b.numel():
            raise ValueError(f"EuclideanLoss bottoms differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")
        d = a - b.reshape(a.shape)
        n = {_Norm.FULL: a.numel(), _Norm.NONE: 1}.get(self.norm, a.shape[0])
        return (torch.sum(d * d) / (2 * n),)


def _normalization(lp, default):
    """The loss_param normalization mode: `normalization` if set, else the legacy `normalize`
    (true: VALID, false: BATCH_SIZE), else `default`."""
    if lp.HasField("normalization"):
        return lp.normalization
    if lp.HasField("normalize"):
        return _Norm.VALID if lp.normalize else _Norm.BATCH_SIZE
    return default


def _normalizer(mode, full, batch, valid):
    """Caffe's get_normalizer (at least 1); `valid` is a 0-axis tensor (the non-ignored count)."""
    n = {_Norm.FULL: full, _Norm.BATCH_SIZE: batch, _Norm.NONE: 1}.get(mode)
    return valid.clamp(min=1) if n is None else valid.new_tensor(float(max(1, n)))


class _SoftmaxLoss(torch.autograd.Function):
    """-sum(log(max(prob[label], FLT_MIN))) / normalizer over (outer, classes, inner) scores, with
    Caffe's gradient (prob - onehot) / normalizer at every valid position (also where the log
    was clamped)."""

    @staticmethod
    def forward(ctx, x, label, ignore_label, mode):
        outer, classes, inner = x.shape
        prob = torch.softmax(x, 1)
        label = label.reshape(outer, 1, inner).to(torch.int64)
        valid = torch.ones_like(label, dtype=torch.bool) if ignore_label is None else label != ignore_label
        label = torch.where(valid, label, 0)
        picked = prob.gather(1, label).clamp(min=torch.finfo(x.dtype).tiny)
        count = valid.sum().to(x.dtype)
        norm = _normalizer(mode, outer * inner, outer, count)
        loss = -torch.where(valid, torch.log(picked), 0).sum() / norm
        ctx.save_for_backward(prob, label, valid, norm)
        ctx.mark_non_differentiable(prob)
        return loss, prob

    @staticmethod
    def backward(ctx, grad, _grad_prob):
        prob, label, valid, norm = ctx.saved_tensors
        diff = prob.scatter_add(1, label, -valid.to(prob.dtype)) * valid
        return diff * (grad / norm), None, None, None


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLoss(LayerModule):
    """Softmax along `softmax_param.axis` then the mean negative log-likelihood of the labels
    (one per position outside the axis); normalised by the VALID count unless `loss_param` says
    otherwise. Optional top 1: the probabilities (no gradient flows back from them)."""

    num_bottoms = 2
    min_tops = 1
    loss_layer = True
    no_grad_bottoms = (1,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        if len(param.top) > 2:
            raise ValueError(f"takes 1 or 2 tops, the prototxt gives {len(param.top)}")
        lp = param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.norm = _normalization(lp, _Norm.VALID)
        self.axis = param.softmax_param.axis
        self.with_prob = len(param.top) == 2

    def forward(self, x, label):
        axis = canonical_axis(self.axis, x.dim(), "softmax_param.axis")
        outer, classes = math.prod(x.shape[:axis]), x.shape[axis]
        if label.numel() != x.numel() // classes:
            raise ValueError(f"{label.numel()} labels for {x.numel() // classes} predictions (the label count "
                             f"must be the score count without axis {axis})")
        loss, prob = _SoftmaxLoss.apply(x.reshape(outer, classes, -1), label, self.ignore_label, self.norm)
        return (loss, prob.reshape(x.shape)) if self.with_prob else (loss,)


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LayerModule):
    """Cross-entropy of sigmoid(x) against targets in [0, 1]; normalised by the batch size unless
    `loss_param` says otherwise; targets equal to `ignore_label` are left out."""

    num_bottoms = 2
    num_tops = 1
    loss_layer = True
    no_grad_bottoms = (1,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        lp = param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.norm = _normalization(lp, _Norm.BATCH_SIZE)

    def forward(self, x, target):
        if x.numel() != target.numel():
            raise ValueError(f"bottoms differ in count: {tuple(x.shape)} vs {tuple(target.shape)}")
        target = target.reshape(x.shape)
        losses = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        if self.ignore_label is None:
            valid_count = x.new_tensor(float(x.numel()))
        else:
            valid = target.to(torch.int64) != self.ignore_label
            losses = torch.where(valid, losses, 0)
            valid_count = valid.sum().to(x.dtype)
        norm = _normalizer(self.norm, x.numel(), x.shape[0], valid_count)
        return (losses.sum() / norm,)
