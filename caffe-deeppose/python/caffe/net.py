"""`caffe.Net`: a prototxt turned into a graph of layer modules, with pycaffe's interface.

`NetModule` is the graph itself, a plain `torch.nn.Module` (it can be compiled or exported);
`Net` wraps it with Caffe's blobs, params, forward/backward and weight files.
"""
import collections
import os
import re

import numpy as np
import torch

from . import common, glog, hdf5
from .accel import active, fastpath, train_chains
from . import layer_modules as _layer_modules  # noqa: F401  (registers the built-in layers)
from .blob import Blob, ParamBlob, defer_diff, drop_deferred_diff, settle_diff
from .proto import caffe_pb2
from .caffemodel import read_weights, write_caffemodel
from .protoio import array_to_blobproto, blob_shape, blobproto_to_array, parse_prototxt, read_file
from .layer_modules.python import PythonLayer, PythonLayerError
from .registry import layer_class
from .upgrade import UpgradeError, net_needs_upgrade, upgrade_net

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST
AUTOMATIC_TOP = "(automatic)"  # Caffe's name for the top it adds to a loss layer that has none
if active("heap"):  # once: mallopt cannot be undone (caffe.accel)
    common.keep_large_blocks_on_heap()


class NetError(ValueError):
    """A net that cannot be built or loaded; the message names the file, layer and blob."""


def _layer_lines(text):
    """Line numbers (1-based) of the top-level `layer {` (or legacy `layers {`) blocks of a prototxt text."""
    lines, depth = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|#.*', "", line)
        if depth == 0 and re.match(r"\s*layers?\s*\{?", code):
            lines.append(number)
        depth += code.count("{") - code.count("}")
    return lines


def _meets_rule(rule, state):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def _included(layer, state):
    if layer.include:
        return any(_meets_rule(r, state) for r in layer.include)
    return not any(_meets_rule(r, state) for r in layer.exclude)


class _Wiring:
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


class _LayerView:
    """pycaffe's view of a layer: its type and its parameter blobs."""

    def __init__(self, module, blobs):
        self.type = module.type_name
        self.blobs = blobs
        self.module = module

    def __repr__(self):
        return f"<Layer {self.module.name!r} type={self.type}>"


class Net:
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
        lines = [] if any(layer.HasField("layer") for layer in param.layers) else _layer_lines(text)
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

    # -- construction ------------------------------------------------------------------------
    def _build(self, param, phase, level, stages, source, layer_lines):
        self._source = source
        self.phase = phase
        self._device = common.device()
        n_explicit_inputs = 1 if param.input and (param.input_shape or param.input_dim) else 0
        if net_needs_upgrade(param):
            try:
                upgrade_net(param, source)
            except UpgradeError as e:
                raise NetError(f"{source}: {e}") from None
        state = caffe_pb2.NetState(phase=phase, level=level)
        state.stage.extend(param.state.stage)
        state.stage.extend(stages)
        self._param = param
        self.force_backward = param.force_backward
        self.name = param.name
        lines = [None] * n_explicit_inputs + list(layer_lines)

        self.blobs = collections.OrderedDict()
        self._loss_weights = {}
        self.params = collections.OrderedDict()
        self._layer_params, modules, wiring, self._layer_names, self.layers = [], [], [], [], []
        self.bottom_names, self.top_names = collections.OrderedDict(), collections.OrderedDict()
        inputs = []
        self._learnable, self._param_specs, owners, owned = [], [], {}, []
        for index, lp in enumerate(param.layer):
            if not _included(lp, state):
                continue
            line = lines[index] if index < len(lines) and lines[index] else None
            where = f"{source}:{line}" if line else source
            place = f"{where}: layer {lp.name!r} (type {lp.type})"
            cls = layer_class(lp.type, f"{where}: layer {lp.name!r}")
            declared = lp  # what to_proto/save write: the prototxt's layer, without an automatic top
            if cls.loss_layer and not lp.top:  # Caffe's AutoTopBlobs: an anonymous loss top
                lp = caffe_pb2.LayerParameter.FromString(lp.SerializeToString())
                lp.top.append(AUTOMATIC_TOP if AUTOMATIC_TOP not in self.blobs else f"{AUTOMATIC_TOP}#{index}")
            self._check_counts(cls, lp, place)
            for b in lp.bottom:
                if b not in self.blobs:
                    raise NetError(f"{place}: bottom {b!r} is not produced by any earlier layer "
                                   f"(known blobs: {', '.join(self.blobs) or 'none'})")
            try:
                module = cls(lp, lp.phase if lp.HasField("phase") else phase)  # a layer's own phase wins
                bottom_shapes = [self.blobs[b].shape for b in lp.bottom]
                module.setup(bottom_shapes)
                if lp.blobs:
                    self._use_embedded_blobs(module, lp, place)
                top_shapes = module.top_shapes(bottom_shapes)
            except PythonLayerError as e:
                raise PythonLayerError(f"{where}: {e}") from e.__cause__
            except (ValueError, RuntimeError, IndexError) as e:
                shapes = ", ".join(f"{b} {tuple(self.blobs[b].shape)}" for b in lp.bottom)
                raise NetError(f"{place}: {e}" + (f" (bottoms: {shapes})" if shapes else "")) from None
            if len(top_shapes) != len(lp.top):
                raise NetError(f"{place}: the layer makes {len(top_shapes)} tops, the prototxt names {len(lp.top)}")
            module.to(self._device)
            for name, shape in zip(lp.top, top_shapes):
                if name in lp.bottom:  # in place
                    self.blobs[name].reshape(shape)
                else:
                    if name in self.blobs:
                        raise NetError(f"{place}: top {name!r} is produced twice (not in place)")
                    self.blobs[name] = Blob(shape, self._device)
            is_input = lp.type == "Input"
            if is_input:
                inputs.extend(lp.top)
            for i, name in enumerate(lp.top):
                default = 1.0 if (cls.loss_layer and i == 0) else 0.0
                weight = lp.loss_weight[i] if i < len(lp.loss_weight) else default
                if weight:
                    self._loss_weights[name] = weight
                    self.blobs[name].set_diff(torch.full(self.blobs[name].shape, float(weight), device=self._device))
            detach = []
            for i in range(len(lp.bottom)):
                pd = lp.propagate_down[i] if i < len(lp.propagate_down) else True
                detach.append(not pd or i in module.no_grad_bottoms)
            self._share(module, lp, place, owners, owned)
            modules.append(module)
            wiring.append(_Wiring(list(lp.bottom), list(lp.top), tuple(detach), is_input))
            self._layer_names.append(lp.name)
            self._layer_params.append(declared)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            if isinstance(module, PythonLayer):  # pycaffe shows the user's own object
                view = module.user
            else:
                view = _LayerView(module, [ParamBlob(module, i) for i in range(len(module.blobs))])
            if len(view.blobs):
                self.params[lp.name] = view.blobs
            self.layers.append(view)

        self._register_learnable(owned)
        produced_last = {}
        for i, w in enumerate(wiring):
            for t in w.tops:
                produced_last[t] = i
        outputs = [name for name in self.blobs  # not consumed after its last production
                   if not name.startswith(AUTOMATIC_TOP)
                   and not any(name in w.bottoms for w in wiring[produced_last[name] + 1:])]
        self.module = NetModule(modules, wiring, inputs, outputs)
        self._fast = fastpath.CompiledForward(self.module)
        self._replays = []  # of the training chains of the last forward (train_chains.run)
        self._input_names, self._output_names = inputs, outputs
        self._needs_backward = bool(self._loss_weights) or self.force_backward
        self._live, self._grad_src, self._records, self._diffs = {}, {}, {}, {}
        self._hooks = {"before_forward": [], "after_forward": [], "before_backward": [], "after_backward": []}

    @staticmethod
    def _check_counts(cls, lp, place):
        for what, names, exact, minimum in (("bottom", lp.bottom, cls.num_bottoms, cls.min_bottoms),
                                            ("top", lp.top, cls.num_tops, cls.min_tops)):
            if exact is not None and len(names) != exact:
                raise NetError(f"{place}: takes {exact} {what}(s), the prototxt gives {len(names)}")
            if exact is None and len(names) < minimum:
                raise NetError(f"{place}: takes at least {minimum} {what}(s), the prototxt gives {len(names)}")

    def _use_embedded_blobs(self, module, lp, place):
        """Weights given in the prototxt (`blobs`) replace the fillers' values, shapes checked."""
        if len(lp.blobs) != len(module.blobs):
            raise NetError(f"{place}: the prototxt gives {len(lp.blobs)} blobs, the layer has {len(module.blobs)}")
        for i, proto in enumerate(lp.blobs):
            legacy = any(proto.HasField(f) for f in ("num", "channels", "height", "width"))
            _copy_blob(module.blobs[i], blob_shape(proto), legacy, blobproto_to_array(proto),
                       f"{place}: blobs[{i}]")

    @staticmethod
    def _share(module, lp, place, owners, owned):
        """Caffe's AppendParam: a named param seen before is shared (shape checked); the sharing
        layer's lr_mult/decay_mult apply where the owner leaves them unset, and must agree where
        both are set."""
        for i, p in enumerate(module.blobs):
            spec = lp.param[i] if i < len(lp.param) else caffe_pb2.ParamSpec()
            if spec.name and spec.name in owners:
                owner, mults = owners[spec.name]
                strict = spec.share_mode != caffe_pb2.ParamSpec.PERMISSIVE
                if (tuple(owner.shape) != tuple(p.shape)) if strict else (owner.numel() != p.numel()):
                    raise NetError(f"{place}: shared param {spec.name!r} has shape {tuple(owner.shape)} in its "
                                   f"owner but {tuple(p.shape)} here")
                module.blobs[i] = owner
                for field in ("lr_mult", "decay_mult"):
                    if not spec.HasField(field):
                        continue
                    if mults[field] is not None and mults[field] != getattr(spec, field):
                        raise NetError(f"{place}: Shared param {spec.name!r} has mismatched {field} "
                                       f"({getattr(spec, field):g} here, {mults[field]:g} before)")
                    mults[field] = getattr(spec, field)
                continue
            mults = {f: getattr(spec, f) if spec.HasField(f) else None for f in ("lr_mult", "decay_mult")}
            if spec.name:
                owners[spec.name] = (p, mults)
            owned.append((p, mults))

    def _register_learnable(self, owned):
        """The learnable params in owner order with their (lr_mult, decay_mult); lr_mult 0 freezes."""
        for p, mults in owned:
            lr = 1.0 if mults["lr_mult"] is None else mults["lr_mult"]
            decay = 1.0 if mults["decay_mult"] is None else mults["decay_mult"]
            if p.requires_grad and lr == 0:
                p.requires_grad_(False)
            if p.requires_grad:
                self._learnable.append(p)
                self._param_specs.append((lr, decay))

    # -- pycaffe properties --------------------------------------------------------------------
    @property
    def inputs(self):
        return list(self._input_names)

    @property
    def outputs(self):
        return list(self._output_names)

    @property
    def _inputs(self):
        """Indices of the input blobs in `_blobs` (pycaffe)."""
        return [self._blob_names.index(n) for n in self._input_names]

    @property
    def _outputs(self):
        """Indices of the output blobs in `_blobs` (pycaffe)."""
        return [self._blob_names.index(n) for n in self._output_names]

    @property
    def _blob_names(self):
        return list(self.blobs)

    @property
    def _blobs(self):
        return list(self.blobs.values())

    @property
    def _blob_loss_weights(self):
        return list(self.blob_loss_weights.values())

    def _top_ids(self, i):
        """Indices in `_blobs` of layer i's tops (pycaffe)."""
        return [self._blob_names.index(n) for n in self.module.wiring[i].tops]

    def _bottom_ids(self, i):
        """Indices in `_blobs` of layer i's bottoms (pycaffe)."""
        return [self._blob_names.index(n) for n in self.module.wiring[i].bottoms]

    @property
    def layer_dict(self):
        """Layers by name, in net order (pycaffe)."""
        return collections.OrderedDict(zip(self._layer_names, self.layers))

    @property
    def blob_loss_weights(self):
        return collections.OrderedDict((n, self._loss_weights.get(n, 0.0)) for n in self.blobs)

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

    def layer_index(self, name):
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise KeyError(f"net {self.name!r} has no layer {name!r}") from None

    # -- hooks ------------------------------------------------------------------------------------
    def before_forward(self, fn):
        """Call `fn(i)` before layer i computes its forward (pycaffe)."""
        self._hooks["before_forward"].append(fn)

    def after_forward(self, fn):
        """Call `fn(i)` after layer i computed its forward (pycaffe)."""
        self._hooks["after_forward"].append(fn)

    def before_backward(self, fn):
        """Call `fn(i)` before layer i computes its backward (pycaffe)."""
        self._hooks["before_backward"].append(fn)

    def after_backward(self, fn):
        """Call `fn(i)` after layer i computed its backward; its bottom and param diffs are set (pycaffe)."""
        self._hooks["after_backward"].append(fn)

    def _fire(self, kind, i):
        for fn in self._hooks[kind]:
            fn(i)

    # -- computing ---------------------------------------------------------------------------------
    def _forward_range(self, start, end):
        """Forward layers start..end; returns the weighted loss (Caffe's Net::ForwardFromTo).
        With gradients on, every layer's bottom and top tensors are kept for the backward."""
        grad = self._needs_backward and torch.is_grad_enabled()
        self._live, self._grad_src, self._records = {}, {}, {}  # drop the previous graph before the next
        self._replays = []
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

        hooked = any(self._hooks.values())
        replays = []
        with torch.set_grad_enabled(grad):
            if grad and not hooked:
                replays = train_chains.run(self.module, env, start, end, after)
            elif grad or hooked or not active("compiled_forward"):
                self.module.run(env, start, end, lambda i: self._fire("before_forward", i), after)
            else:
                self._fast.run(env, start, end)
        for name, t in env.items():
            self.blobs[name].set_data(t.detach())
        self._live, self._grad_src, self._records = env, grad_src, records
        self._replays = replays
        return sum(weight * float(env[name].detach().sum())
                   for name, weight in self._loss_weights.items() if name in made)

    def _forward(self, start, end):
        """Forward layers start..end by index (pycaffe's `_forward`); returns the loss."""
        return self._forward_range(start, end)

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Set the input blobs given as keyword arrays, run layers start..end, return the outputs
        (or the tops of `end`) and the extra `blobs` asked for, as numpy arrays."""
        for name, value in kwargs.items():
            if name not in self.blobs:
                raise KeyError(f"forward: net {self.name!r} has no blob {name!r}")
            value = np.asarray(value)
            if value.shape[0] != self.blobs[name].shape[0]:
                raise ValueError(f"forward: input {name!r} has batch {value.shape[0]}, the blob holds "
                                 f"{self.blobs[name].shape[0]}; reshape the blob first")
            self.blobs[name].data[...] = value
        start_i = self.layer_index(start) if start is not None else 0
        end_i = self.layer_index(end) if end is not None else len(self._layer_names) - 1
        self._forward_range(start_i, end_i)
        names = self.top_names[self._layer_names[end_i]] if end is not None else self._output_names
        names = list(names) + [b for b in (blobs or []) if b not in names]
        return {name: self.blobs[name].data for name in names}

    def _backward(self, start=None, end=None):
        """Backward layers start..end (indices, start >= end; default: the whole net), Caffe's
        Net::BackwardFromTo. Bottom diffs are overwritten, param diffs accumulate. Without a
        forward since the net was built, the layers are computed first from the stored blobs."""
        last = len(self._layer_names) - 1
        start, end = (last if start is None else start), (0 if end is None else end)
        hooked = self._hooks["before_backward"] or self._hooks["after_backward"]
        if start == last and end == 0 and not hooked and (self._records or self._replays):
            self._backward_all()
        else:
            self._backward_layers(start, end)

    def _backward_all(self):
        """The whole backward in one autograd pass: diffs flow from the loss tops (diff =
        loss_weight) and, with force_backward, from every output blob's diff."""
        roots, grads, root_names = [], [], set()
        for name in self._live:
            if name in self._loss_weights or (self.force_backward and name in self._output_names):
                t = self._live[name]
                if t.requires_grad:
                    roots.append(t)
                    grads.append(self.blobs[name].diff_tensor())
                    root_names.add(name)
        if not roots:
            return
        for p in self._learnable:  # param diffs accumulate, also onto an update not yet copied
            settle_diff(p)
        self._diffs.clear()  # blob diffs are overwritten, not accumulated
        torch.autograd.backward(roots, grads, retain_graph=True)  # Caffe may run Backward twice
        for name, t in self._grad_src.items():
            if name not in root_names:
                g = self._diffs.get(name)
                self.blobs[name].set_diff(g if g is not None else torch.zeros_like(t))

    def _backward_layers(self, start, end):
        """Layer by layer from `start` down to `end`, as Caffe does: each layer back-propagates its
        tops' diffs on the last forward's graph (a range that forward did not compute is computed
        first). A top read by layers above it in the range gets their summed diffs (none: it is
        not under the loss); the range's own output tops use their stored diffs (for the whole
        net: the losses', and with force_backward every output's)."""
        wiring = self.module.wiring
        if not self._needs_backward:
            return
        for p in self._learnable:  # param diffs accumulate, also onto an update not yet copied
            settle_diff(p)
        if self._replays:  # layers the training chains computed: their own graphs, recomputed
            train_chains.replay(self.module, self._replays, end, start,
                                lambda i, bottoms, tops: self._records.__setitem__(i, (bottoms, tops)))
            self._replays = []
        if any(i not in self._records for i in range(end, start + 1) if not wiring[i].is_input):
            self._forward_range(end, start)
        whole = start == len(wiring) - 1
        read_above, pending = set(), {}
        for i in range(start, end - 1, -1):
            self._fire("before_backward", i)
            if i in self._records:
                bottoms, tops = self._records[i]
                grads = []
                for name in wiring[i].tops:
                    if name in read_above:
                        grads.append(pending.pop(name, None))
                    elif whole and not (self.force_backward or name in self._loss_weights):
                        grads.append(None)
                    else:
                        grads.append(self.blobs[name].diff_tensor())
                outs = [(t, g) for t, g in zip(tops, grads) if t.requires_grad and g is not None]
                into = [(name, b) for name, b in zip(wiring[i].bottoms, bottoms) if b.requires_grad]
                params = [p for p in self.module.layers[i].blobs if p.requires_grad]
                if outs and (into or params):
                    got = torch.autograd.grad([t for t, _ in outs], [b for _, b in into] + params,
                                              [g for _, g in outs], retain_graph=True, allow_unused=True)
                    for (name, b), g in zip(into, got):
                        g = torch.zeros_like(b) if g is None else g
                        pending[name] = pending[name] + g if name in pending else g
                        self.blobs[name].set_diff(pending[name])
                    with torch.no_grad():
                        for p, g in zip(params, got[len(into):]):
                            if g is not None:
                                p.grad = g.clone() if p.grad is None else p.grad.add_(g)
            read_above.difference_update(wiring[i].tops)
            read_above.update(wiring[i].bottoms)
            self._fire("after_backward", i)

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Back-propagate from the output diffs (set from keyword arrays first) over layers
        start..end (names; default the whole net); returns the diffs of the inputs (or of the
        bottoms of `end`) and of the extra blobs named in `diffs`."""
        for name, value in kwargs.items():
            if name not in self._output_names:
                raise KeyError(f"backward: {name!r} is not an output of net {self.name!r}")
            self.blobs[name].diff[...] = value
        start_i = self.layer_index(start) if start is not None else None
        end_i = self.layer_index(end) if end is not None else None
        self._backward(start_i, end_i)
        names = self.bottom_names[end] if end is not None else self._input_names
        names = list(names) + [b for b in (diffs or []) if b not in names]
        return {name: self.blobs[name].diff for name in names}

    def forward_backward(self):
        """One forward and backward pass over the whole net; returns the loss (the solvers' step)."""
        loss = self._forward_range(0, len(self._layer_names) - 1)
        self._backward()
        return loss

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward + backward in batches (pycaffe): keyword arrays for the inputs (forward) and
        the outputs (their diffs); returns ({blob: data}, {blob: diff}) over all items."""
        fwd = {k: v for k, v in kwargs.items() if k in self._input_names}
        bwd = {k: v for k, v in kwargs.items() if k in self._output_names}
        extra = set(kwargs) - set(fwd) - set(bwd)
        if extra:
            raise KeyError(f"forward_backward_all: {sorted(extra)} are neither inputs nor outputs of net {self.name!r}")
        outs, outs_diff = collections.defaultdict(list), collections.defaultdict(list)
        total = len(next(iter(kwargs.values()))) if kwargs else None
        batches_f, batches_b = list(self._batches(fwd)), list(self._batches(bwd))
        for i in range(max(len(batches_f), len(batches_b), 1)):
            f = batches_f[i] if i < len(batches_f) else {}
            b = batches_b[i] if i < len(batches_b) else {}
            for name, value in self.forward(blobs=blobs, **f).items():
                outs[name].extend(np.array(value, copy=True))
            for name, value in self.backward(diffs=diffs, **b).items():
                outs_diff[name].extend(np.array(value, copy=True))
        keep = slice(None) if total is None else slice(0, total)
        return ({k: np.asarray(v)[keep] for k, v in outs.items()},
                {k: np.asarray(v)[keep] for k, v in outs_diff.items()})

    def _batches(self, arrays):
        """Split keyword arrays into batches of the blobs' batch size, padding the last with zeros
        (like pycaffe; the caller drops the padding)."""
        if not arrays:
            return
        total = len(next(iter(arrays.values())))
        batch = self.blobs[next(iter(arrays))].shape[0]
        for first in range(0, total, batch):
            chunk = {}
            for name, value in arrays.items():
                part = np.asarray(value[first:first + batch])
                if len(part) < batch:
                    part = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
                chunk[name] = part
            yield chunk

    def set_input_arrays(self, data, labels):
        """Feed a MemoryData first layer with numpy arrays (pycaffe)."""
        from .layer_modules.data import set_input_arrays
        set_input_arrays(self, data, labels)

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

    def forward_all(self, blobs=None, **kwargs):
        """Forward every item of the keyword input arrays in batches of the net's batch size."""
        outs = collections.defaultdict(list)
        if not kwargs:
            return {k: np.asarray(v).copy() for k, v in self.forward(blobs=blobs).items()}
        total = len(next(iter(kwargs.values())))
        for chunk in self._batches(kwargs):
            for name, value in self.forward(blobs=blobs, **chunk).items():
                outs[name].extend(np.array(value, copy=True))
        return {name: np.asarray(v)[:total] for name, v in outs.items()}  # drop the padding

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
        """Copy weights from a .caffemodel (binary, or HDF5 as `load_hdf5`) by layer name, as Caffe's
        CopyTrainedLayersFrom (layers not in this net are ignored, and logged). Stricter than Caffe:
        a file that sets no layer with blobs of this net is an error, and each such layer it leaves
        alone gets a warning."""
        path = os.fspath(path)
        mine = {name: view for name, view in zip(self._layer_names, self.layers)}
        if hdf5.is_hdf5(path):
            copied = self.load_hdf5(path)
        else:
            copied = set()
            for name, blobs in read_weights(path):
                view = mine.get(name)
                if view is None:
                    glog.info("net.cpp:746", f"Ignoring source layer {name}")
                    continue
                copied.add(name)
                if len(blobs) != len(view.blobs):
                    raise NetError(f"{path}: layer {name!r} has {len(blobs)} blobs, the net's "
                                   f"{view.type} layer has {len(view.blobs)}")
                for i, ((src, legacy, values), blob) in enumerate(zip(blobs, view.blobs)):
                    _copy_blob(blob.param, src, legacy, values, f"{path}: cannot copy param {i} of layer {name!r}",
                               " To learn this layer from scratch instead, rename it in the prototxt.")
        with_blobs = [(name, view) for name, view in mine.items() if view.blobs]
        if with_blobs and not copied.intersection(name for name, _ in with_blobs):
            names = ", ".join(repr(name) for name, _ in with_blobs[:5]) + (", ..." if len(with_blobs) > 5 else "")
            raise NetError(f"{path}: sets no layer of net {self.name!r}: no layer of the file is named like a "
                           f"layer with weights here ({names}); is it the weights of another net?")
        for name, view in with_blobs:
            if name not in copied:
                glog.warning("net.cpp", f"{path} has no layer {name!r}: the {len(view.blobs)} blob(s) of this "
                                        f"{view.type} layer keep their initial (filler) values")

    def load_hdf5(self, path):
        """Copy weights from an HDF5 caffemodel (Caffe's CopyTrainedLayersFromHDF5); returns the
        names of the layers it copied."""
        try:
            return hdf5.load_weights(self, path)
        except hdf5.HDF5Error as e:
            raise NetError(str(e)) from None

    def save_hdf5(self, path, write_diff=False):
        """Write the weights (and with `write_diff` the diffs) as an HDF5 caffemodel, atomically."""
        hdf5.save_weights(self, path, write_diff)

    def to_proto(self):
        """The net with its weights as a NetParameter."""
        out = caffe_pb2.NetParameter.FromString(self._layers_proto().SerializeToString())
        for layer, view in zip(out.layer, self.layers):
            for blob in view.blobs:
                layer.blobs.append(array_to_blobproto(blob.param.detach().cpu().numpy()))
        return out

    def _layers_proto(self):
        out = caffe_pb2.NetParameter()
        out.CopyFrom(self._param)
        del out.layer[:]
        for lp in self._layer_params:
            layer = out.layer.add()
            layer.CopyFrom(lp)
            del layer.blobs[:]
        return out

    def save(self, path):
        """Write the weights as a binary .caffemodel (Caffe's Net::ToProto), atomically."""
        write_caffemodel(path, self._layers_proto(),
                         [[b.param.detach().cpu().numpy() for b in view.blobs] for view in self.layers])

    def share_with(self, other):
        """Use `other`'s parameter tensors for the layers of the same name (a solver's test nets)."""
        theirs = dict(zip(other._layer_names, other.module.layers))
        for name, layer in zip(self._layer_names, self.module.layers):
            src = theirs.get(name)
            if src is None or not len(layer.blobs):
                continue
            if len(src.blobs) != len(layer.blobs):
                raise NetError(f"cannot share layer {name!r}: {len(src.blobs)} params in the other net, "
                               f"{len(layer.blobs)} here")
            for i, p in enumerate(src.blobs):
                if tuple(p.shape) != tuple(layer.blobs[i].shape):
                    raise NetError(f"cannot share layer {name!r} param {i}: shape {tuple(p.shape)} vs "
                                   f"{tuple(layer.blobs[i].shape)}")
                mine = layer.blobs[i]
                self._learnable = [p if q is mine else q for q in self._learnable]
                layer.blobs[i] = p


def _copy_blob(param, src, legacy, values, what, hint=""):
    """Copy `values` of shape `src` into the tensor `param` if the shapes match as in Caffe's
    Blob::ShapeEquals (a `legacy` 4-axis num/channels/height/width shape matches with leading 1s)."""
    target = tuple(param.shape)
    match = (tuple(src) == (1,) * (4 - len(target)) + target) if legacy and len(target) <= 4 else tuple(src) == target
    if not match or values.size != param.numel():
        raise NetError(f"{what}: shape mismatch, source {tuple(src)} ({values.size} values), target {target}.{hint}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(values).reshape(target)))
