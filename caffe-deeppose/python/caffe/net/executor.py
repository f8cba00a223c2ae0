"""Who computes a net's forward: the reference executor here (every layer's own forward in
order, plain torch with Caffe's semantics), or the accelerated one of caffe.accel, chosen once
when the net is built by the reference switch.

An executor has `forward(env, start, end, grad, hooked, before, after)`, which computes layers
start..end into the dict of named tensors `env` (`before(i)` and `after(i, bottoms, tops)` as
`NetModule.run` calls them; `grad`: gradients are on, `hooked`: the net has hooks), `replays`,
what of the last forward a layer-by-layer backward must recompute, and `replay(start, end, after)`,
which recomputes it for layers start..end (calling `after` for each layer), once.
"""
from ..accel import reference
from ..accel.executor import Accelerated


class LayerByLayer:
    """The reference executor: `NetModule.run`, layer after layer."""

    replays = ()  # every layer records its own graph: nothing to recompute

    def __init__(self, module):
        self.module = module

    def forward(self, env, start, end, grad, hooked, before, after):
        self.module.run(env, start, end, before, after)

    def replay(self, start, end, after):
        """Nothing to recompute."""


def executor(module):
    """The executor of a NetModule: the reference one with the reference switch on, else caffe.accel's."""
    return LayerByLayer(module) if reference() else Accelerated(module)
