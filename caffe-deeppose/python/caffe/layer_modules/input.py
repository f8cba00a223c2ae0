"""Layers without bottoms: Input (the net's input blobs, shaped as declared; the net fills them) and
Parameter (a learned blob as a top)."""
import torch

from ..registry import register_layer
from .base import LayerModule


@register_layer("Input")
class Input(LayerModule):
    num_bottoms = 0
    min_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        shapes = [tuple(int(d) for d in s.dim) for s in param.input_param.shape]
        if len(shapes) not in (1, len(param.top)):
            raise ValueError(f"input_param gives {len(shapes)} shapes for {len(param.top)} tops "
                             "(give one shape for all, or one per top)")
        self.shapes = shapes * len(param.top) if len(shapes) == 1 else shapes

    def top_shapes(self, bottom_shapes):
        return list(self.shapes)

    def forward(self):
        raise RuntimeError("Input tops are the net's input blobs; the net never calls forward on them")


@register_layer("Parameter")
class Parameter(LayerModule):
    """A learned blob of `parameter_param.shape` (zeros until set or loaded: Caffe has no filler for
    it) given as the top; the top's gradient is the blob's."""

    num_bottoms = 0
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.shape = tuple(int(d) for d in param.parameter_param.shape.dim)
        if any(d < 0 for d in self.shape):
            raise ValueError(f"parameter_param.shape {self.shape} has a negative dim")

    def setup(self, bottom_shapes):
        self.add_blob(torch.zeros(self.shape))

    def top_shapes(self, bottom_shapes):
        return [self.shape]

    def forward(self):
        return (self.blobs[0],)
