"""Loss layers: a scalar top (shape ()) weighted by loss_weight (1 by default)."""
import torch

from ..proto import caffe_pb2
from ..registry import register_layer
from .base import Layer

_Norm = caffe_pb2.LossParameter


@register_layer("EuclideanLoss")
class EuclideanLoss(Layer):
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
