"""The inference fast path: a net's forward without gradients through `torch.compile`.

`Net.forward` on a net that needs no gradients (a TEST net, or under `torch.no_grad()`) splits
the range of layers into segments of built-in layers that compute a pure function of their
bottoms and params (`COMPILABLE`) and the layers between (Data, Python, ...). Which path
computes a segment's k-th call at given input shapes depends only on k: calls 0..N-1 run eagerly
(N = `CAFFE_COMPILE_AFTER`, default 100: a short job never pays for a compile it cannot win
back), call N starts compiling that shape in a background thread while the eager calls go on,
and from call 2N on it runs compiled (call 2N waits for the compilation if it is not done); a
new shape counts from 0; with N = 0 the first call compiles, in the calling thread. So two runs
of the same calls compute the same bits, however fast each machine is. The compiled graph reads
the params as inputs, so writes into `net.params` take effect, and returns every blob the segment
computes, so `net.blobs` reads as after an eager forward. `CAFFE_COMPILE=0` turns it off (the test
suite does, not to pay compile time), as does the reference switch (caffe.accel); a layer with
`engine: CAFFE` runs eagerly between segments; a segment whose compilation fails logs a warning
and stays eager. Within a segment, a Convolution with the BatchNorm / Scale / ReLU layers right
after it in place on its top runs as one oneDNN convolution (`_ConvChain`), eagerly as compiled:
one pass over the blob instead of one per layer.
"""
import os
import threading

import torch

from . import active, onednn
from .. import glog

# built-in layer types whose forward is a pure tensor function (in inference mode, see _compilable)
COMPILABLE = frozenset((
    "Convolution", "Deconvolution", "Pooling", "LRN", "BatchNorm", "Scale", "Bias", "InnerProduct",
    "ReLU", "PReLU", "Sigmoid", "TanH", "ELU", "AbsVal", "BNLL", "Swish", "Power", "Exp", "Log",
    "Threshold", "Clip", "Dropout", "Softmax", "Eltwise", "Concat", "Slice", "Split", "Flatten",
    "Reshape", "Crop", "Tile"))


def compile_after():
    """N: eager calls at one shape before that shape's compilation starts (compiled from call 2N)."""
    return int(os.environ.get("CAFFE_COMPILE_AFTER", "100"))


def _compilable(layer):
    """A built-in layer of a COMPILABLE type in inference mode (BatchNorm on its stored
    statistics, Dropout the identity), without `engine: CAFFE`."""
    if (layer.type_name not in COMPILABLE or not type(layer).__module__.startswith("caffe.layer_modules")
            or not active("compiled_forward", layer)):
        return False
    if layer.type_name == "BatchNorm":
        return layer.use_global_stats
    if layer.type_name == "Dropout":
        return not layer.train_phase
    return True


class _Segment(torch.nn.Module):
    """Layers start..end of a NetModule as a function of the blobs they read from before start."""

    def __init__(self, module, start, end):
        super().__init__()
        self.net = module
        self.start, self.end = start, end
        made, inputs, outputs = set(), [], []
        for w in module.wiring[start:end + 1]:
            reads = w.tops if w.is_input else w.bottoms  # an Input layer's tops are already in env
            inputs.extend(b for b in reads if b not in made and b not in inputs)
            if w.is_input:
                continue
            made.update(w.tops)
            outputs.extend(t for t in w.tops if t not in outputs)
        self.inputs, self.outputs = inputs, outputs

        self.steps = _steps(module, start, end)

    def forward(self, *tensors):
        env = dict(zip(self.inputs, tensors))
        for first, last, chain in self.steps:
            if chain is None:
                self.net.run(env, first, last)
            else:
                env[chain.top] = chain(env[chain.bottom])
        return tuple(env[name] for name in self.outputs)


class _ConvChain:
    """A 2-d Convolution and, on its top in place right after it, per-channel affine layers
    (BatchNorm on its stored statistics, Scale) and a ReLU, as one oneDNN convolution: the affine
    maps folded into its weights and bias (computed from the params at each call), the ReLU
    applied in the same pass. The top is what the layers give one by one, up to rounding."""

    def __init__(self, conv, affine, relu, bottom, top):
        self.conv, self.affine, self.relu, self.bottom, self.top = conv, affine, relu, bottom, top

    def __call__(self, x):
        conv = self.conv
        weight, bias = conv.blobs[0], conv.blobs[1] if conv.bias_term else None
        channels = weight.shape[0]
        if self.affine:
            a, c = None, None
            for layer in self.affine:  # compose: a2 (a1 z + c1) + c2
                a2, c2 = layer.channel_affine(4, channels)
                a, c = (a2, c2) if a is None else (a2 * a, torch.addcmul(c2, a2, c))
            weight = weight * a.reshape(-1, 1, 1, 1)
            bias = c if bias is None else torch.addcmul(c, a, bias)
        weight = weight.contiguous(memory_format=torch.channels_last)  # what oneDNN reads (else it copies)
        x = x.contiguous(memory_format=torch.channels_last)  # the layout of the weight (else oneDNN reorders)
        return onednn.conv2d(x, weight, bias, list(conv.stride), list(conv.pad),
                             list(conv.dilation), conv.group, self.relu)


def _conv_chain(module, i, end):
    """The _ConvChain starting at layer i and its last layer, or None (no such chain there)."""
    conv, wiring = module.layers[i], module.wiring[i]
    if (conv.type_name != "Convolution" or len(wiring.bottoms) != 1 or conv.blobs[0].dim() != 4
            or conv.blobs[0].device.type != "cpu" or conv.blobs[0].dtype != torch.float32
            or not active("conv_chains", conv)):
        return None
    top, channels = wiring.tops[0], conv.blobs[0].shape[0]
    affine, relu, last = [], False, i
    while last < end and not relu:
        layer, w = module.layers[last + 1], module.wiring[last + 1]
        if w.is_input or w.bottoms != [top] or w.tops != [top] or not active("conv_chains", layer):
            break
        if layer.type_name == "ReLU" and not layer.negative_slope:
            relu = True
        elif hasattr(layer, "channel_affine") and layer.channel_affine(4, channels) is not None:
            affine.append(layer)
        else:
            break
        last += 1
    return (_ConvChain(conv, affine, relu, wiring.bottoms[0], top), last) if last > i else None


def _steps(module, start, end):
    """Layers start..end as (first, last, _ConvChain) for each chain and (first, last, None) for
    the runs between."""
    steps, first, i = [], start, start
    while i <= end:
        found = _conv_chain(module, i, end)
        if found is None:
            i += 1
            continue
        chain, last = found
        if first < i:
            steps.append((first, i - 1, None))
        steps.append((i, last, chain))
        first = i = last + 1
    if first <= end:
        steps.append((first, end, None))
    return steps


class CompiledForward:
    """The fast path of one NetModule's no-grad forward over a range of layers."""

    def __init__(self, module):
        self.module = module
        self._parts = {}  # (start, end) -> [(first, last, _Segment or None to run eagerly)]
        self._calls = {}  # (first, last, input shapes) -> calls so far
        self._compiled = {}  # (first, last) -> the compiled segment, or None after a failure
        self._builds = {}  # (first, last, input shapes) -> its compilation's thread, then True / False

    def _split(self, start, end):
        """Maximal runs of compilable layers (Input layers join any run) and the runs between."""
        if (start, end) not in self._parts:
            wiring, layers = self.module.wiring, self.module.layers
            kinds = [None if wiring[i].is_input else _compilable(layers[i]) for i in range(start, end + 1)]
            parts, first = [], start
            for i in range(start, end + 1):
                kind = kinds[i - start]
                if kind is not None:
                    later = [k for k in kinds[i - start + 1:] if k is not None]
                    if not later or later[0] != kind:
                        parts.append((first, i, _Segment(self.module, first, i) if kind else None))
                        first = i + 1
            if first <= end:  # only Input layers left
                parts.append((first, end, None))
            self._parts[(start, end)] = parts
        return self._parts[(start, end)]

    def run(self, env, start, end):
        """Compute layers start..end into `env` (by blob name), like `NetModule.run`."""
        for first, last, segment in self._split(start, end):
            if segment is None:
                self.module.run(env, first, last)
                continue
            tensors = [env[name] for name in segment.inputs]
            key = (first, last, tuple(tuple(t.shape) for t in tensors))
            call = self._calls[key] = self._calls.get(key, -1) + 1
            tops = self._compiled_run(first, last, segment, tensors) if self._ready(key, call, segment, tensors) else None
            if tops is None:
                tops = segment(*tensors)
            env.update(zip(segment.outputs, tops))
        return env

    def _ready(self, key, call, segment, tensors):
        """Whether the segment's call number `call` at these shapes runs compiled: call N starts
        the compilation in a background thread, call 2N waits for it (N = 0: compiled here, now)."""
        after = compile_after()
        if call < after or self._compiled.get(key[:2], True) is None:  # too early, or its compilation failed
            return False
        state = self._builds.get(key)
        if state is None:
            self._compiler(key[0], key[1], segment)
            if after <= 0:
                return True
            examples = [t.detach().clone() for t in tensors]  # the caller may overwrite its inputs meanwhile
            # not a daemon: a process ending meanwhile waits for it (the compiler cannot be stopped
            # midway, and torch aborts if the interpreter finalizes under it)
            state = self._builds[key] = threading.Thread(target=self._build, args=(key, segment, examples),
                                                         name=f"caffe-compile-{key[0]}-{key[1]}")
            state.start()
        if call < 2 * after:
            return False
        if isinstance(state, threading.Thread):
            state.join()
        return self._builds[key] is True

    def _build(self, key, segment, examples):
        """Compile the segment at the examples' shapes (a background thread: the eager runs go on)."""
        with torch.no_grad():  # the caller's mode (grad mode is per thread)
            self._builds[key] = self._compiled_run(key[0], key[1], segment, examples) is not None

    def wait(self):
        """Wait for the compilations under way."""
        for state in list(self._builds.values()):
            if isinstance(state, threading.Thread):
                state.join()

    def _compiler(self, first, last, segment):
        """The segment's torch.compile wrapper (made once), or None after a failure."""
        if (first, last) not in self._compiled:
            self._compiled[(first, last)] = torch.compile(segment, dynamic=False)
        return self._compiled[(first, last)]

    def _compiled_run(self, first, last, segment, tensors):
        """The segment's tops through torch.compile, or None if compiling fails (logged once)."""
        compiled = self._compiler(first, last, segment)
        if compiled is None:
            return None
        try:
            return compiled(*tensors)
        except Exception as e:  # noqa: BLE001  (any compiler failure; the eager run decides about real errors)
            glog.warning("fastpath.py", f"layers {first}..{last} stay eager: torch.compile failed ({e})")
            self._compiled[(first, last)] = None
            return None
