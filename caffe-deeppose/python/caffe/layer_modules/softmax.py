"""Softmax along an axis, and the layers that read class scores: ArgMax, Accuracy."""
import math

import torch

from ..registry import register_layer
from .base import LayerModule, canonical_axis, check_label_count


@register_layer("Softmax")
class Softmax(LayerModule):
    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.axis = param.softmax_param.axis

    def top_shapes(self, bottom_shapes):
        canonical_axis(self.axis, len(bottom_shapes[0]), "softmax_param.axis")
        return [tuple(bottom_shapes[0])]

    def forward(self, x):
        return (torch.softmax(x, canonical_axis(self.axis, x.dim(), "softmax_param.axis")),)


def sort_descending(x, dim):
    """Values and indices along `dim`, largest first; equal values put the larger index first
    (Caffe's std::greater on (value, index) pairs)."""
    n = x.shape[dim]
    values, flipped = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
    return values, n - 1 - flipped


@register_layer("ArgMax")
class ArgMax(LayerModule):
    """The indices (as floats) of the top_k largest values along `axis`, or over each item's
    C*H*W values when no axis is given. With `axis`, out_max_val outputs the values instead of
    the indices; without, the top is (N, 2, top_k, 1...): indices, then values. No gradient."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.argmax_param
        self.top_k, self.out_max_val = p.top_k, p.out_max_val
        self.axis = p.axis if p.HasField("axis") else None
        if self.top_k < 1:
            raise ValueError("argmax_param.top_k must be at least 1")

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if self.axis is None:
            values = math.prod(shape[1:])
            if self.top_k > values:
                raise ValueError(f"argmax_param.top_k {self.top_k} exceeds the {values} values per item")
            return [(shape[0], 1 + self.out_max_val, self.top_k) + (1,) * (len(shape) - 3)]
        axis = canonical_axis(self.axis, len(shape), "argmax_param.axis")
        if self.top_k > shape[axis]:
            raise ValueError(f"argmax_param.top_k {self.top_k} exceeds axis {axis}'s size {shape[axis]}")
        return [shape[:axis] + (self.top_k,) + shape[axis + 1:]]

    def forward(self, x):
        self.top_shapes([x.shape])
        if self.axis is None:
            flat = x.reshape(x.shape[0], -1)
            values, indices = sort_descending(flat, 1)
            parts = [indices[:, :self.top_k].to(x.dtype)]
            if self.out_max_val:
                parts.append(values[:, :self.top_k])
            top = torch.stack(parts, 1)  # (N, 1 or 2, top_k)
            return (top.reshape(top.shape + (1,) * (x.dim() - 3)),)
        axis = canonical_axis(self.axis, x.dim(), "argmax_param.axis")
        values, indices = sort_descending(x, axis)
        top = values if self.out_max_val else indices.to(x.dtype)
        return (top.narrow(axis, 0, self.top_k),)


@register_layer("Accuracy")
class Accuracy(LayerModule):
    """The fraction of (non-ignored) labels whose score is among the top_k: a label counts as
    correct when fewer than top_k other classes score at least as high. Optional top 1: the
    accuracy per class (0 for a class with no sample). No gradient."""

    num_bottoms = 2
    min_tops = 1
    no_grad_bottoms = (0, 1)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.accuracy_param
        if len(param.top) > 2:
            raise ValueError(f"takes 1 or 2 tops, the prototxt gives {len(param.top)}")
        self.top_k, self.axis = p.top_k, p.axis
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.per_class = len(param.top) == 2

    def top_shapes(self, bottom_shapes):
        scores, label = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        axis = canonical_axis(self.axis, len(scores), "accuracy_param.axis")
        check_label_count(scores, label, axis)
        if self.top_k > scores[axis]:
            raise ValueError(f"accuracy_param.top_k {self.top_k} exceeds the {scores[axis]} classes")
        return [()] + [(scores[axis],)] * self.per_class

    def forward(self, scores, label):
        self.top_shapes([scores.shape, label.shape])
        axis = canonical_axis(self.axis, scores.dim(), "accuracy_param.axis")
        classes = scores.shape[axis]
        scores = scores.movedim(axis, -1).reshape(-1, classes)
        label = label.reshape(-1).to(torch.int64)  # truncates like Caffe's static_cast<int>
        valid = torch.ones_like(label, dtype=torch.bool) if self.ignore_label is None else label != self.ignore_label
        label = torch.where(valid, label, 0)
        true_score = scores.gather(1, label[:, None])
        better = (scores >= true_score).sum(1) - 1  # the true class counts itself
        correct = (better < self.top_k) & valid
        count = valid.sum().to(scores.dtype)
        accuracy = correct.sum().to(scores.dtype) / count.clamp(min=1)
        if not self.per_class:
            return (accuracy,)
        zeros = scores.new_zeros(classes)
        totals = zeros.scatter_add(0, label, valid.to(scores.dtype))
        hits = zeros.scatter_add(0, label, correct.to(scores.dtype))
        return accuracy, torch.where(totals > 0, hits / totals.clamp(min=1), zeros)
