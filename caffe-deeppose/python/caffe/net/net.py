"""`caffe.Net`: a prototxt turned into a graph of layer modules, with pycaffe's interface.

Built as Caffe's Net::Init builds it, one step a module: the layers of the phase (filtering),
each made and set up (layer_setup), connected through its blobs (wiring), its params shared and
their multipliers read (params); the weights come from files (weights). `NetModule` is the graph
itself, a plain `torch.nn.Module`; `Net` wraps it with Caffe's blobs, params, forward/backward
(the forward by the executor chosen when the net is built) and weight files.
"""
import collections
import os

import torch

from .. import common
from .. import layer_modules as _layer_modules  # noqa: F401  (registers the built-in layers)
from ..accel import active
from ..blob import defer_diff, drop_deferred_diff
from ..formats import hdf5
from ..formats.protoio import parse_prototxt, read_file
from ..formats.upgrade import UpgradeError, net_needs_upgrade, upgrade_net
from ..proto import caffe_pb2
from ..registry import layer_class
from . import backward, filtering, layer_setup, params, weights, wiring
from .errors import NetError
from .executor import executor
from .pycaffe import PycaffeNet

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST
if active("heap"):  # once: mallopt cannot be undone (caffe.accel)
    common.keep_large_blocks_on_heap()


class Net(PycaffeNet):
    """A Caffe net (pycaffe's `caffe.Net`).

    `Net(prototxt, phase)`, `Net(prototxt, weights, phase)`, `Net(prototxt, phase, weights=...)`;
    also `level=` and `stages=` for NetState rules: as in Caffe, the file's own state keeps its
    stages (the given ones are added) but its level is replaced by `level`.
    """

    def __init__(self, network_file, *args, phase=None, weights=None, level=0, stages=()):
        if len(args) == 1:
            phase = args[0]
        elif len(args) == 2:
            weights, phase = args
        elif len(args) > 2:
            raise TypeError("Net(network_file, [weights], phase)")
        if phase not in (TRAIN, TEST):
            raise TypeError("Net needs a phase: caffe.TRAIN or caffe.TEST")
        network_file = os.fspath(network_file)
        text = read_file(network_file)
        param = parse_prototxt(text, caffe_pb2.NetParameter(), network_file)
        lines = [] if any(layer.HasField("layer") for layer in param.layers) else layer_setup.layer_lines(text)
        self._build(param, phase, level, stages, network_file, lines)
        if weights is not None:
            self.copy_from(weights)

    @classmethod
    def from_param(cls, param, phase, source="<NetParameter>", level=None, stages=()):
        """A net from a NetParameter message (a solver's `net_param`, a test's inline net); the
        level is the message's own unless `level` is given."""
        net = cls.__new__(cls)
        net._build(caffe_pb2.NetParameter.FromString(param.SerializeToString()), phase,
                   param.state.level if level is None else level, stages, source, [])
        return net

    def _build(self, param, phase, level, stages, source, layer_lines):
        """Caffe's Net::Init: the layers of `phase`, each set up, wired and its params registered."""
        self._source = source
        self.phase = phase
        self._device = common.device()
        n_explicit_inputs = 1 if param.input and (param.input_shape or param.input_dim) else 0
        if net_needs_upgrade(param):
            try:
                upgrade_net(param, source)
            except UpgradeError as e:
                raise NetError(f"{source}: {e}") from None
        state = filtering.net_state(param, phase, level, stages)
        self._param = param
        self.force_backward = param.force_backward
        self.name = param.name
        lines = [None] * n_explicit_inputs + list(layer_lines)

        self.blobs = collections.OrderedDict()
        self._loss_weights = {}
        self.params = collections.OrderedDict()
        self._layer_params, modules, wires, self._layer_names, self.layers = [], [], [], [], []
        self.bottom_names, self.top_names = collections.OrderedDict(), collections.OrderedDict()
        owners, owned = {}, []
        for index, lp in enumerate(param.layer):
            if not filtering.included(lp, state):
                continue
            line = lines[index] if index < len(lines) and lines[index] else None
            where = f"{source}:{line}" if line else source
            place = f"{where}: layer {lp.name!r} (type {lp.type})"
            cls = layer_class(lp.type, f"{where}: layer {lp.name!r}")
            declared = lp  # what to_proto/save write: the prototxt's layer, without an automatic top
            lp = wiring.with_automatic_top(cls, lp, self.blobs, index)
            layer_setup.check_counts(cls, lp, place)
            wiring.check_bottoms(lp, self.blobs, place)
            module, top_shapes = layer_setup.set_up(cls, lp, phase, [self.blobs[b].shape for b in lp.bottom],
                                                    self._device, where, place)
            wires.append(wiring.connect(cls, lp, module, top_shapes, self.blobs, self._loss_weights,
                                        self._device, place))
            params.share(module, lp, place, owners, owned)
            modules.append(module)
            self._layer_names.append(lp.name)
            self._layer_params.append(declared)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            view = layer_setup.layer_view(module)
            if len(view.blobs):
                self.params[lp.name] = view.blobs
            self.layers.append(view)

        self._learnable, self._param_specs = params.learnable(owned)
        inputs = [name for w in wires if w.is_input for name in w.tops]
        outputs = wiring.outputs(self.blobs, wires)
        self.module = wiring.NetModule(modules, wires, inputs, outputs)
        self._executor = executor(self.module)
        self._input_names, self._output_names = inputs, outputs
        self._needs_backward = bool(self._loss_weights) or self.force_backward
        self._live, self._grad_src, self._records, self._diffs = {}, {}, {}, {}
        self._hooks = {"before_forward": [], "after_forward": [], "before_backward": [], "after_backward": []}

    @property
    def learnable_params(self):
        """The unique trainable torch Parameters, in Caffe's order."""
        return list(self._learnable)

    @property
    def all_params(self):
        """Every parameter tensor once (frozen ones included, shared ones once), in Caffe's
        learnable_params order: the order of a .solverstate's history blobs."""
        return list({id(p): p for layer in self.module.layers for p in layer.blobs}.values())

    @property
    def param_specs(self):
        """(lr_mult, decay_mult) of each learnable param."""
        return list(self._param_specs)

    def _fire(self, kind, i):
        for fn in self._hooks[kind]:
            fn(i)

    # -- computing ---------------------------------------------------------------------------------
    def _forward_range(self, start, end):
        """Forward layers start..end; returns the weighted loss (Caffe's Net::ForwardFromTo).
        With gradients on, every layer's bottom and top tensors are kept for the backward."""
        grad = self._needs_backward and torch.is_grad_enabled()
        self._live, self._grad_src, self._records = {}, {}, {}  # drop the previous graph before the next
        env, grad_src, made, records = {}, {}, set(), {}
        diffs = self._diffs = {}

        def keep_diff(name, t):
            """The blob's diff is its grad source's gradient as the backward passes it (a hook keeps
            the tensor itself: retain_grad would copy every blob's gradient)."""
            if t.requires_grad:
                t.register_hook(lambda g: diffs.__setitem__(name, g))
        for w in self.module.wiring[start:end + 1]:
            if w.is_input:  # the persistent input blobs; with force_backward they are their own grad source
                for name in w.tops:
                    t = self.blobs[name].data_tensor()
                    env[name] = grad_src[name] = t.detach().requires_grad_() if grad and self.force_backward else t
                continue
            for b in w.bottoms:  # blobs made before `start` are read from storage (grad sources too)
                if b not in made and b not in env:
                    t = self.blobs[b].data_tensor()
                    env[b] = grad_src[b] = t.detach().requires_grad_() if grad else t
            made.update(w.tops)
        for name, t in grad_src.items():
            keep_diff(name, t)
        for name in made:  # free the previous pass's activations before computing the new ones
            if name not in env:
                self.blobs[name].release()
        for view in self.layers:  # parameters written through a host mirror (GPU) go back first
            for blob in view.blobs:
                blob._data.synced()

        def after(i, bottoms, tops):
            if grad:
                records[i] = (bottoms, tops)
                for name, t in zip(self.module.wiring[i].tops, tops):
                    # an in-place blob's diff is the gradient of its first version that gets one (in Caffe, a
                    # layer that does not propagate down leaves the diff its top received)
                    if name not in grad_src or (t.requires_grad and not grad_src[name].requires_grad):
                        grad_src[name] = t
                        keep_diff(name, t)
            self._fire("after_forward", i)

        with torch.set_grad_enabled(grad):
            self._executor.forward(env, start, end, grad, any(self._hooks.values()),
                                   lambda i: self._fire("before_forward", i), after)
        for name, t in env.items():
            self.blobs[name].set_data(t.detach())
        self._live, self._grad_src, self._records = env, grad_src, records
        return sum(weight * float(env[name].detach().sum())
                   for name, weight in self._loss_weights.items() if name in made)

    def _backward(self, start=None, end=None):
        """Backward layers start..end (indices, start >= end; default: the whole net), Caffe's
        Net::BackwardFromTo. Bottom diffs are overwritten, param diffs accumulate. Without a
        forward since the net was built, the layers are computed first from the stored blobs."""
        last = len(self._layer_names) - 1
        start, end = (last if start is None else start), (0 if end is None else end)
        hooked = self._hooks["before_backward"] or self._hooks["after_backward"]
        if start == last and end == 0 and not hooked and (self._records or self._executor.replays):
            backward.backward_all(self)
        else:
            backward.backward_layers(self, start, end)

    def forward_backward(self):
        """One forward and backward pass over the whole net; returns the loss (the solvers' step)."""
        loss = self._forward_range(0, len(self._layer_names) - 1)
        self._backward()
        return loss

    def clear_param_diffs(self):
        """Zero the param diffs (Caffe's ClearParamDiffs). A diff handed out as a `.diff` array is
        zeroed in place (the array sees the zeros, the next backward accumulates into it); the
        others are dropped, so that the next backward hands its fresh gradients over without
        zeroing and adding 44M floats each iteration (a dropped diff reads as zeros)."""
        handed = self._handed_diffs()
        zero = []
        for p in self._learnable:
            drop_deferred_diff(p)
            if p.grad is not None and id(p.grad) in handed:
                zero.append(p.grad)
            else:
                p.grad = None
        if zero:
            torch._foreach_zero_(zero)

    def _handed_diffs(self):
        """ids of the param diff tensors handed out as `.diff` arrays."""
        return {id(b._diff.tensor) for view in self.layers for b in view.blobs if b._diff.tensor is not None}

    def defer_param_diffs(self, params, values):
        """After an update: each param's diff is to read as the tensor beside it (Caffe leaves
        the update in the diff). A diff handed out as a `.diff` array gets it copied in; the
        others are copied only when read (caffe.blob.defer_diff; at once on the reference path)."""
        handed = self._handed_diffs() if active("reused_diffs") else None
        for p, value in zip(params, values):
            if p.grad is not None and (handed is None or id(p.grad) in handed):
                p.grad.copy_(value)
            else:
                defer_diff(p, value)

    def reshape(self):
        """Propagate the input blobs' (new) shapes through every layer (Caffe's Net::Reshape)."""
        for layer, w in zip(self.module.layers, self.module.wiring):
            if w.is_input:
                continue
            shapes = layer.top_shapes([self.blobs[b].shape for b in w.bottoms])
            for name, shape in zip(w.tops, shapes):
                self.blobs[name].reshape(shape)

    # -- weights ---------------------------------------------------------------------------------
    def copy_from(self, path):
        """Copy weights from a .caffemodel by layer name (caffe.net.weights.copy_from)."""
        weights.copy_from(self, path)

    def load_hdf5(self, path):
        """Copy weights from an HDF5 caffemodel; returns the names of the layers it copied."""
        return weights.load_hdf5(self, path)

    def save_hdf5(self, path, write_diff=False):
        """Write the weights (and with `write_diff` the diffs) as an HDF5 caffemodel, atomically."""
        hdf5.save_weights(self, path, write_diff)

    def to_proto(self):
        """The net with its weights as a NetParameter."""
        return weights.to_proto(self)

    def save(self, path):
        """Write the weights as a binary .caffemodel (Caffe's Net::ToProto), atomically."""
        weights.save(self, path)

    def share_with(self, other):
        """Use `other`'s parameter tensors for the layers of the same name (a solver's test nets)."""
        params.share_with(self, other)
