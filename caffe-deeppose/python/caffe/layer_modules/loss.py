"""Loss layers: a scalar top (shape ()) weighted by loss_weight (1 by default)."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..formats import protoio
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule, canonical_axis, check_index_range, check_label_count

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

    def top_shapes(self, bottom_shapes):
        a, b = (tuple(s) for s in bottom_shapes)
        if math.prod(a) != math.prod(b):
            raise ValueError(f"EuclideanLoss bottoms differ in size: {a} vs {b}")
        return [()]

    def forward(self, a, b):
        self.top_shapes([a.shape, b.shape])
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

    def top_shapes(self, bottom_shapes):
        x = tuple(bottom_shapes[0])
        check_label_count(x, bottom_shapes[1], canonical_axis(self.axis, len(x), "softmax_param.axis"))
        return [()] + [x] * self.with_prob

    def forward(self, x, label):
        self.top_shapes([x.shape, label.shape])
        axis = canonical_axis(self.axis, x.dim(), "softmax_param.axis")
        outer, classes = math.prod(x.shape[:axis]), x.shape[axis]
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

    def top_shapes(self, bottom_shapes):
        x, target = (tuple(s) for s in bottom_shapes)
        if math.prod(x) != math.prod(target):
            raise ValueError(f"bottoms differ in count: {x} vs {target}")
        return [()]

    def forward(self, x, target):
        self.top_shapes([x.shape, target.shape])
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


_LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: probabilities are clamped to it before the log


def _legacy_num(shape):
    """Caffe's num/channels/height/width view of a shape of at most 4 axes."""
    if len(shape) > 4:
        raise ValueError(f"a blob of at most 4 axes is needed here, got shape {tuple(shape)}")
    return tuple(shape) + (1,) * (4 - len(shape))


def _check_batch(x, label):
    """LossLayer's rule: the bottoms (shapes) have the same first dimension."""
    if tuple(x[:1]) != tuple(label[:1]):
        raise ValueError(f"the data and label should have the same first dimension: {tuple(x)} vs "
                         f"{tuple(label)}")


class _LogClamped(torch.autograd.Function):
    """-log(max(p, 1e-20)) with Caffe's gradient -1 / max(p, 1e-20) (also where it was clamped)."""

    @staticmethod
    def forward(ctx, p):
        clamped = p.clamp(min=_LOG_THRESHOLD)
        ctx.save_for_backward(clamped)
        return -torch.log(clamped)

    @staticmethod
    def backward(ctx, grad):
        (clamped,) = ctx.saved_tensors
        return -grad / clamped


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLoss(LayerModule):
    """-sum_n log(max(p[n, label_n], 1e-20)) / N over probabilities p (N, dim) with one label per item
    (bottom 1: N x 1 x 1 x 1); the gradient is -1 / (N max(p, 1e-20)) at the labels, 0 elsewhere."""

    num_bottoms = 2
    num_tops = 1
    loss_layer = True
    no_grad_bottoms = (1,)

    def top_shapes(self, bottom_shapes):
        p, label = bottom_shapes
        _check_batch(p, label)
        if _legacy_num(label)[1:] != (1, 1, 1):
            raise ValueError(f"the label bottom must be N x 1 x 1 x 1, got shape {tuple(label)}")
        return [()]

    def forward(self, p, label):
        self.top_shapes([p.shape, label.shape])
        num = p.shape[0]
        p = p.reshape(num, -1)
        check_index_range(label, p.shape[1], f"layer {self.name!r}: label")
        picked = p.gather(1, label.reshape(num, 1).to(torch.int64))
        return (_LogClamped.apply(picked).sum() / num,)


@register_layer("HingeLoss")
class HingeLoss(LayerModule):
    """One-vs-all hinge loss over scores (N, dim) with a label per item: t = max(0, 1 - x) at the label,
    max(0, 1 + x) elsewhere; L1 (the default): sum(t) / N, L2: sum(t^2) / N."""

    num_bottoms = 2
    num_tops = 1
    loss_layer = True
    no_grad_bottoms = (1,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.squared = param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def top_shapes(self, bottom_shapes):
        x, label = bottom_shapes
        _check_batch(x, label)
        if math.prod(label) < x[0]:
            raise ValueError(f"{math.prod(label)} labels for {x[0]} items")
        return [()]

    def forward(self, x, label):
        self.top_shapes([x.shape, label.shape])
        num = x.shape[0]
        x = x.reshape(num, -1)
        label = label.reshape(-1)[:num]
        check_index_range(label, x.shape[1], f"layer {self.name!r}: label")
        sign = 1 - 2 * F.one_hot(label.to(torch.int64), x.shape[1]).to(x.dtype)
        t = torch.relu(1 + sign * x)
        return ((t * t if self.squared else t).sum() / num,)


class _Contrastive(torch.autograd.Function):
    """Caffe's ContrastiveLoss on diff = a - b (N, C): forward and its own backward (the non-legacy
    dissimilar gradient divides by the distance + 1e-4)."""

    @staticmethod
    def forward(ctx, diff, similar, margin, legacy):
        dist_sq = (diff * diff).sum(1)
        if legacy:
            dissimilar = (margin - dist_sq).clamp(min=0)
            scale = torch.where(margin - dist_sq > 0, -1.0, 0.0).to(diff.dtype)
        else:
            dist = dist_sq.sqrt()
            dissimilar = (margin - dist).clamp(min=0) ** 2
            scale = torch.where(margin - dist > 0, -(margin - dist) / (dist + 1e-4), 0.0).to(diff.dtype)
        scale = torch.where(similar, 1.0, scale)
        ctx.save_for_backward(diff, scale)
        return torch.where(similar, dist_sq, dissimilar).sum() / diff.shape[0] / 2

    @staticmethod
    def backward(ctx, grad):
        diff, scale = ctx.saved_tensors
        return diff * (scale * grad / diff.shape[0])[:, None], None, None, None


@register_layer("ContrastiveLoss")
class ContrastiveLoss(LayerModule):
    """Contrastive loss of feature pairs a, b (N x C x 1 x 1) with a similarity y (N x 1 x 1 x 1, read as
    an integer): sum over pairs of d^2 if y, else max(margin - d, 0)^2 (legacy_version: max(margin - d^2,
    0)), divided by 2N, d = ||a - b||. No gradient to y."""

    num_bottoms = 3
    num_tops = 1
    loss_layer = True
    no_grad_bottoms = (2,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.contrastive_loss_param
        self.margin, self.legacy = float(np.float32(p.margin)), p.legacy_version

    def top_shapes(self, bottom_shapes):
        a, b, y = (tuple(s) for s in bottom_shapes)
        _check_batch(a, b)
        sa, sb, sy = _legacy_num(a), _legacy_num(b), _legacy_num(y)
        if sa[1] != sb[1] or sa[2:] != (1, 1) or sb[2:] != (1, 1) or sy[1:] != (1, 1, 1) or sy[0] != sa[0]:
            raise ValueError(f"needs features N x C x 1 x 1 (twice, same C) and a similarity N x 1 x 1 x 1, got "
                             f"{a}, {b}, {y}")
        return [()]

    def forward(self, a, b, y):
        self.top_shapes([a.shape, b.shape, y.shape])
        similar = y.reshape(-1).to(torch.int64) != 0
        diff = (a - b).reshape(a.shape[0], -1)
        return (_Contrastive.apply(diff, similar, self.margin, self.legacy),)


class _Infogain(torch.autograd.Function):
    """-sum_l H[label, l] log(max(prob_l, 1e-20)) / normalizer over (outer, classes, inner) scores, with
    Caffe's gradient (prob sum_l H[label, l] - H[label]) / normalizer at every valid position."""

    @staticmethod
    def forward(ctx, x, label, h, ignore_label, mode):
        outer, classes, inner = x.shape
        prob = torch.softmax(x, 1)
        label = label.reshape(outer, 1, inner).to(torch.int64)
        valid = torch.ones_like(label, dtype=torch.bool) if ignore_label is None else label != ignore_label
        rows = h[torch.where(valid, label, 0).reshape(-1)]  # H[label] per position: (outer inner, classes)
        rows = rows.reshape(outer, inner, classes).transpose(1, 2) * valid
        count = valid.sum().to(x.dtype)
        norm = _normalizer(mode, outer * inner, outer, count)
        loss = -(rows * torch.log(prob.clamp(min=_LOG_THRESHOLD))).sum() / norm
        ctx.save_for_backward(prob, rows, norm)
        ctx.mark_non_differentiable(prob)
        return loss, prob

    @staticmethod
    def backward(ctx, grad, _grad_prob):
        prob, rows, norm = ctx.saved_tensors
        return (prob * rows.sum(1, keepdim=True) - rows) * (grad / norm), None, None, None, None


@register_layer("InfogainLoss")
class InfogainLoss(LayerModule):
    """Softmax along `infogain_loss_param.axis`, then -sum_l H[label, l] log(max(prob_l, 1e-20)) per
    position, normalised by the VALID count unless `loss_param.normalization` says otherwise (the legacy
    `normalize` is refused, as in Caffe). H (classes x classes) is bottom 2, or else read from the
    BlobProto file `infogain_loss_param.source` (relative to the working directory). Optional top 1:
    the probabilities. No gradient to the labels or H."""

    min_bottoms = 2
    min_tops = 1
    loss_layer = True
    no_grad_bottoms = (1, 2)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        if len(param.bottom) > 3 or len(param.top) > 2:
            raise ValueError(f"takes 2 or 3 bottoms and 1 or 2 tops, the prototxt gives {len(param.bottom)} and "
                             f"{len(param.top)}")
        lp, p = param.loss_param, param.infogain_loss_param
        if lp.HasField("normalize"):
            raise ValueError('loss_param.normalize is deprecated for InfogainLoss: use "normalization"')
        self.norm = lp.normalization
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.axis = p.axis
        self.with_prob = len(param.top) == 2
        if len(param.bottom) == 2:
            if not p.HasField("source"):
                raise ValueError("the infogain matrix: give infogain_loss_param.source or a third bottom")
            h = protoio.blobproto_to_array(protoio.read_binary_proto(p.source, caffe_pb2.BlobProto))
            self.register_buffer("h", torch.from_numpy(np.ascontiguousarray(h, np.float32)))
        else:
            self.h = None

    def top_shapes(self, bottom_shapes):
        x, label = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        _check_batch(x, label)
        axis = canonical_axis(self.axis, len(x), "infogain_loss_param.axis")
        check_label_count(x, label, axis)
        h, classes = math.prod(bottom_shapes[2] if len(bottom_shapes) == 3 else self.h.shape), x[axis]
        if h != classes * classes:
            raise ValueError(f"the infogain matrix H has {h} values, {classes} classes need {classes}x{classes}")
        return [()] + [x] * self.with_prob

    def forward(self, x, label, h=None):
        self.top_shapes([x.shape, label.shape] + ([] if h is None else [h.shape]))
        axis = canonical_axis(self.axis, x.dim(), "infogain_loss_param.axis")
        outer, classes = math.prod(x.shape[:axis]), x.shape[axis]
        h = self.h if h is None else h
        valid = label if self.ignore_label is None else torch.where(label == self.ignore_label, 0, label)
        check_index_range(valid, classes, f"layer {self.name!r}: label")
        loss, prob = _Infogain.apply(x.reshape(outer, classes, -1), label, h.reshape(classes, classes),
                                     self.ignore_label, self.norm)
        return (loss, prob.reshape(x.shape)) if self.with_prob else (loss,)
