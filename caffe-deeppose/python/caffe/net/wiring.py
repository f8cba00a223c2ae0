"""How the layers of a net connect through named blobs (Caffe's AppendBottom / AppendTop): the
bottoms a layer reads, the tops it makes or rewrites in place, the loss a top carries, the
anonymous top of a loss layer, the net's outputs; and `NetModule`, the wired layers as a plain
`torch.nn.Module`."""
import torch

from ..blob import Blob
from ..proto import caffe_pb2
from .errors import NetError

AUTOMATIC_TOP = "(automatic)"  # Caffe's name for the top it adds to a loss layer that has none


class Wiring:
    """How one layer connects to the blobs: names, which bottoms are cut from the gradient."""

    __slots__ = ("bottoms", "tops", "detach", "is_input")

    def __init__(self, bottoms, tops, detach, is_input):
        self.bottoms, self.tops, self.detach, self.is_input = bottoms, tops, detach, is_input


class NetModule(torch.nn.Module):
    """The layers of a net and their wiring, as a plain `torch.nn.Module`.

    `forward(*inputs)` takes the net's input tensors (in `input_names` order) and returns the
    output tensors (in `output_names` order); `run` is the same walk over a range of layers,
    on a dict of named tensors.
    """

    def __init__(self, layers, wiring, input_names, output_names):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self.wiring = wiring
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, env, start=0, end=None, before=None, after=None):
        """Compute layers start..end (inclusive) reading and writing blobs in `env` by name;
        `before(i)` is called before layer i, `after(i, bottoms, tops)` with its tensors."""
        end = len(self.layers) - 1 if end is None else end
        for i in range(start, end + 1):
            w = self.wiring[i]
            if before is not None:
                before(i)
            if w.is_input:  # its tops are the net's inputs, already in env
                bottoms, tops = [], ()
            else:
                bottoms = [env[b].detach() if cut else env[b] for b, cut in zip(w.bottoms, w.detach)]
                tops = self.layers[i](*bottoms)
                for name, t in zip(w.tops, tops):
                    env[name] = t
            if after is not None:
                after(i, bottoms, tops)
        return env

    def forward(self, *inputs):
        env = self.run(dict(zip(self.input_names, inputs)))
        return tuple(env[name] for name in self.output_names)


def with_automatic_top(cls, lp, blobs, index):
    """The layer, with Caffe's AutoTopBlobs: an anonymous top added to a loss layer that names none."""
    if not (cls.loss_layer and not lp.top):
        return lp
    lp = caffe_pb2.LayerParameter.FromString(lp.SerializeToString())
    lp.top.append(AUTOMATIC_TOP if AUTOMATIC_TOP not in blobs else f"{AUTOMATIC_TOP}#{index}")
    return lp


def check_bottoms(lp, blobs, place):
    """Every bottom is made by an earlier layer."""
    for b in lp.bottom:
        if b not in blobs:
            raise NetError(f"{place}: bottom {b!r} is not produced by any earlier layer "
                           f"(known blobs: {', '.join(blobs) or 'none'})")


def connect(cls, lp, module, top_shapes, blobs, loss_weights, device, place):
    """The layer's tops made (or reshaped in place) in `blobs`, the loss weights of its tops set in
    `loss_weights` and as their diffs; returns its Wiring."""
    for name, shape in zip(lp.top, top_shapes):
        if name in lp.bottom:  # in place
            blobs[name].reshape(shape)
        else:
            if name in blobs:
                raise NetError(f"{place}: top {name!r} is produced twice (not in place)")
            blobs[name] = Blob(shape, device)
    for i, name in enumerate(lp.top):
        default = 1.0 if (cls.loss_layer and i == 0) else 0.0
        weight = lp.loss_weight[i] if i < len(lp.loss_weight) else default
        if weight:
            loss_weights[name] = weight
            blobs[name].set_diff(torch.full(blobs[name].shape, float(weight), device=device))
    detach = []
    for i in range(len(lp.bottom)):
        pd = lp.propagate_down[i] if i < len(lp.propagate_down) else True
        detach.append(not pd or i in module.no_grad_bottoms)
    return Wiring(list(lp.bottom), list(lp.top), tuple(detach), lp.type == "Input")


def outputs(blobs, wiring):
    """The net's outputs: the blobs not read after their last production (automatic tops left out)."""
    produced_last = {}
    for i, w in enumerate(wiring):
        for t in w.tops:
            produced_last[t] = i
    return [name for name in blobs
            if not name.startswith(AUTOMATIC_TOP)
            and not any(name in w.bottoms for w in wiring[produced_last[name] + 1:])]
