"""The training fast path: a net's forward with gradients through `torch.compile`, so that the
forward and the backward of runs of built-in layers are each one compiled graph (aot autograd +
inductor: LRN, BatchNorm, Scale and ReLU fuse with their neighbours, forward and backward).

Opt-in (`CAFFE_COMPILE_TRAIN=1`; `CAFFE_COMPILE=0` turns it off too): on this project's 2-core
CPU its A/B against the eager step (bench/bench_train_ab.py) did not show a steady gain. With it,
`Net.forward` with gradients on and no layer hooks splits the layers like the inference fast path
(caffe/fastpath.py) into segments of built-in layers whose training forward is a pure tensor
function (`_compilable_in_training`: Dropout and every layer not built in stay eager) and the
layers between, and compiles a segment's run at one input shape once its eager runs at that shape
have taken `CAFFE_COMPILE_AFTER` seconds.

pycaffe's semantics stay: the compiled graph returns every blob the segment computes, and each
blob it makes gets a probe, a zero tensor added where the blob's first version (the one whose
gradient is its diff) is computed; the backward leaves that blob's gradient in the probe's
`.grad`, so every blob diff is readable after the backward without hooks. A backward over a range
of layers (or with backward hooks) needs each layer's own graph: `replay` recomputes a compiled
segment eagerly from its inputs, with `LayerModule.replaying` set so that BatchNorm does not
count its statistics twice.
"""
import os
import time

import torch

from . import fastpath


def enabled():
    return fastpath.enabled() and os.environ.get("CAFFE_COMPILE_TRAIN", "0") == "1"


def _compilable_in_training(layer):
    """A built-in layer whose training forward is a pure tensor function of its bottoms and
    params (BatchNorm's statistics update is an in-place write the compiler keeps); Dropout draws
    random numbers and stays eager, so its masks are the eager path's."""
    if layer.type_name not in fastpath.COMPILABLE or not type(layer).__module__.startswith("caffe.layer_modules"):
        return False
    return not (layer.type_name == "Dropout" and layer.train_phase)


def _channels_last(t):
    """A 4-d tensor in channels-last layout (inductor's layout for convolutions on the CPU: the
    segment's blobs come out in it, with no copy back), others as they are."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


class _TrainSegment(fastpath._Segment):
    """Layers start..end of a NetModule as a function of the blobs they read from before start
    and of one probe per blob they make: returns every blob they compute."""

    def forward(self, *tensors):
        n = len(self.inputs)
        env = {name: _channels_last(t) for name, t in zip(self.inputs, tensors[:n])}
        probes = dict(zip(self.outputs, tensors[n:]))
        for name in self.inputs:  # a blob read with a gradient already has its diff's version
            if name in probes and env[name].requires_grad:
                del probes[name]

        def probe(i, bottoms, tops):
            for name in self.net.wiring[i].tops:
                if name in probes and env[name].requires_grad:
                    env[name] = env[name] + probes.pop(name)
        self.net.run(env, self.start, self.end, after=probe)
        return tuple(env[name] for name in self.outputs)


class CompiledTraining(fastpath.CompiledForward):
    """The training fast path of one NetModule's forward over a range of layers."""

    compilable = staticmethod(_compilable_in_training)
    segment = _TrainSegment

    def __init__(self, module, device):
        super().__init__(module)
        self.device = device
        self._tops = {}  # (first, last, input shapes) -> the shapes of the segment's outputs
        self._zeros = {}  # (blob name, shape) -> the zero tensor its probes share

    def run(self, env, start, end, after, grad_src):
        """Compute layers start..end into `env` like `NetModule.run(env, start, end, after=after)`,
        where `after` keeps the eager layers' graphs and grad sources; a blob a compiled segment
        makes first gets its probe as its grad source in `grad_src`. Returns (probes, replays): the
        probe leaves by blob name (their `.grad` is the blob's diff after a backward) and
        (first, last, inputs) of each compiled segment, to `replay` it."""
        probes, replays = {}, []
        for first, last, segment in self._split(start, end):
            tops = None
            if segment is not None:
                tensors = [env[name] for name in segment.inputs]
                key = (first, last, tuple((tuple(t.shape), t.requires_grad) for t in tensors))
                spent = self._eager_s.get(key)  # None before the first eager run, which gives the tops' shapes
                if spent is not None and spent >= fastpath.compile_after() \
                        and self._compiled.get((first, last), True) is not None:
                    mine = {name: self._probe(name, shape) for name, shape in zip(segment.outputs, self._tops[key])}
                    tops = self._compiled_run(first, last, segment, tensors + list(mine.values()))
            if tops is None:
                began = time.perf_counter()
                self.module.run(env, first, last, after=after)
                if segment is not None:
                    self._eager_s[key] = (spent or 0.0) + time.perf_counter() - began
                    self._tops[key] = [tuple(env[name].shape) for name in segment.outputs]
            else:
                replays.append((first, last, [(name, t.detach(), t.requires_grad)
                                              for name, t in zip(segment.inputs, tensors)]))
                env.update(zip(segment.outputs, tops))
                for name, z in mine.items():
                    if name not in grad_src or not grad_src[name].requires_grad:
                        grad_src[name] = probes[name] = z
        return probes, replays

    def _probe(self, name, shape):
        """A fresh leaf of zeros for the blob `name` (its storage kept between calls: never written)."""
        zeros = self._zeros.get((name, shape))
        if zeros is None:
            zeros = self._zeros[(name, shape)] = _channels_last(torch.zeros(shape, device=self.device))
        return zeros.detach().requires_grad_()

    def replay(self, replays, start, end, after):
        """Recompute eagerly the compiled segments of the last forward that overlap layers
        start..end, calling `after(i, bottoms, tops)` for each of their layers (to rebuild its
        records); BatchNorm does not count its statistics again."""
        for first, last, inputs in replays:
            if last < start or first > end:
                continue
            layers = self.module.layers[first:last + 1]
            for layer in layers:
                layer.replaying = True
            try:
                with torch.enable_grad():
                    self.module.run({name: t.detach().requires_grad_(grad) for name, t, grad in inputs},
                                    first, last, after=after)
            finally:
                for layer in layers:
                    layer.replaying = False
