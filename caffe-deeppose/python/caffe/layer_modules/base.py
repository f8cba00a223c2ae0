"""The base of every layer: a plain `torch.nn.Module` configured once from its LayerParameter."""
import math

import torch

from ..accel import caffe_engine


def canonical_axis(axis, ndim, what="axis"):
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end; out of range is an error."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for a {ndim}-axis blob")
    return axis % ndim


def check_index_range(index, size, what):
    """Every value of the float tensor `index` lies in [0, size) (Caffe's index checks); the error names
    the first bad value. Skipped for shape inference (meta tensors hold no values)."""
    if index.is_meta:
        return
    bad = (index < 0) | (index >= size)
    if bool(bad.any()):
        raise ValueError(f"{what} {float(index[bad][0]):g} is out of range [0, {size})")


def check_label_count(scores, label, axis):
    """One label (shape `label`) per position of the scores (shape `scores`) outside the class axis."""
    predictions = math.prod(scores[:axis]) * math.prod(scores[axis + 1:])
    if math.prod(label) != predictions:
        raise ValueError(f"{math.prod(label)} labels for {predictions} predictions (the label count "
                         f"must be the score count without axis {axis})")


class LayerModule(torch.nn.Module):
    """A Caffe layer.

    `__init__(param, phase)` reads everything the layer needs from its LayerParameter into plain
    attributes; `setup(bottom_shapes)` creates the layer's blobs (Caffe's LayerSetUp);
    `top_shapes(bottom_shapes)` gives the tops' shapes and refuses bottoms that do not fit
    (Caffe's Reshape); `forward(*bottoms)` returns the tuple of tops and never touches protobuf,
    so a built net can be traced, compiled and exported. Class attributes describe the layer to
    the net.
    """

    num_bottoms = None  # exact number of bottoms, or None (then min_bottoms applies)
    min_bottoms = 0
    num_tops = None  # exact number of tops, or None (then min_tops applies)
    min_tops = 0
    loss_layer = False  # top 0 carries loss_weight 1 unless the prototxt says otherwise
    no_grad_bottoms = ()  # bottoms Caffe never back-propagates to (labels, indices; may be set per instance)
    host_source = False  # produces its tops from host data (Data layers), not from bottoms
    replaying = False  # set while the net recomputes a forward it did (caffe/accel/train_chains.py): no side effects

    def __init__(self, param, phase):
        super().__init__()
        self.name = param.name
        self.phase = phase
        self.caffe_engine = caffe_engine(param)  # `engine: CAFFE`: no acceleration for this layer (caffe.accel)
        self.blobs = torch.nn.ParameterList()

    def setup(self, bottom_shapes):
        """Create the layer's blobs for bottoms of these shapes (called once by the net)."""

    def add_blob(self, tensor, learnable=True):
        """Append a blob (a parameter); `learnable=False` for statistics updated in forward."""
        self.blobs.append(torch.nn.Parameter(tensor, requires_grad=learnable))

    def top_shapes(self, bottom_shapes):
        """Shapes of the tops for bottoms of these shapes (Caffe's Reshape), refusing bottoms that do
        not fit. The built-in layers compute them from the shapes; this fallback, for a layer
        registered without its own, runs `forward` on PyTorch's meta device, whose first use
        imports torch._dynamo (seconds)."""
        from torch.func import functional_call
        state = {n: torch.empty_like(t, device="meta") for n, t in
                 list(self.named_parameters(remove_duplicate=False)) + list(self.named_buffers())}
        bottoms = tuple(torch.empty(s, device="meta") for s in bottom_shapes)
        with torch.no_grad():
            tops = functional_call(self, state, bottoms)
        return [tuple(t.shape) for t in tops]

    def extra_repr(self):
        return f"name={self.name!r}"
