"""The engine's accelerations, and the one switch that runs Caffe's reference path instead.

The reference path is plain PyTorch ops with Caffe's semantics, layer by layer; each acceleration
below replaces a part of it with something faster that computes the same values up to rounding
(the golden set passes both ways). Every place that would use one asks `active(name)` (or
`active(name, layer)` for a layer's own), which says no when:
- the reference switch is on: `CAFFE_REFERENCE=1` in the environment, or `set_reference(True)`;
- the layer asks for Caffe's own implementation (`engine: CAFFE` in its convolution, pooling, LRN,
  ReLU, Sigmoid, TanH or Softmax parameters; `engine: CUDNN` and `DEFAULT` change nothing);
- its own knob turns it off: an environment variable set to 0, `CAFFE_<NAME>` (CAFFE_CONV_CHAINS,
  CAFFE_NATIVE_LRN, ...; the compiled forward's is CAFFE_COMPILE), and `CAFFE_NATIVE=0` turns off
  the four that run C kernels together; `switched(conv_chains=False, ...)` sets knobs for a
  block (the benches time each acceleration against the others so); or it is off by default and
  its knob set to 1 turns it on (`CAFFE_CHANNELS_LAST=1`: its entry says why it is off);
- it cannot run here (no C compiler for the kernels, no oneDNN in torch).
`caffe device_query` lists them with their state and knobs. The switches are read where a choice
is made: most at each call (in a compiled segment's code: when it is compiled), a net's executor
(`executor.Accelerated` or the reference one, caffe.net.executor) and the LRN layer's kernel when
the net is built, the convolution chains when a compiled forward's segments are made, the
allocator tuning once, when `caffe.Net` is first imported (mallopt cannot be undone:
`set_reference(True)` later leaves it on; `CAFFE_REFERENCE=1` or `CAFFE_HEAP=0` before the
import keeps it off).
"""
import contextlib
import os

_reference = [os.environ.get("CAFFE_REFERENCE", "0") not in ("", "0")]


def set_reference(on=True):
    """Run Caffe's reference path (`on`), or the accelerations again (nets built before keep their
    LRN layers' choice, and a net built on the reference path its executor; the allocator tuning,
    once made, stays)."""
    _reference[0] = bool(on)


def reference():
    """Whether the reference path is on (`CAFFE_REFERENCE=1` or `set_reference(True)`)."""
    return _reference[0]


def caffe_engine(param):
    """Whether a LayerParameter asks for Caffe's own implementation (`engine: CAFFE`)."""
    return any(param.HasField(field) and getattr(param, field).engine == 1  # Engine.CAFFE in each message
               for field in ("convolution_param", "pooling_param", "lrn_param", "relu_param", "sigmoid_param",
                             "tanh_param", "softmax_param", "spp_param"))


def _native():
    from . import native
    return None if native.library() is not None else "no C kernels (no C compiler; see the warning)"


def _onednn():
    from . import onednn
    return None if onednn.AVAILABLE else "torch was built without oneDNN"


class Acceleration:
    """One acceleration: what it replaces, its measured gain, its own off knob (an environment
    variable set to 0), the knob it shares with others if any (`group`) and a check that it can
    run here (None, or why not). With `off_by_default` (why) it is off unless its knob is set to 1."""

    def __init__(self, name, replaces, gain, knob, group=None, available=None, off_by_default=None):
        self.name, self.replaces, self.gain, self.knob, self.available = name, replaces, gain, knob, available
        self.knobs = (knob,) + ((group,) if group else ())
        self.off_by_default = off_by_default

    def why_off(self, layer=None):
        """None where it is on (for `layer`, if given), else why it is off."""
        if _reference[0]:
            return "reference path (CAFFE_REFERENCE=1 or caffe.set_reference)"
        if layer is not None and layer.caffe_engine:
            return f"layer {layer.name!r} has engine: CAFFE"
        for knob in self.knobs:
            if os.environ.get(knob, "0" if self.off_by_default and knob == self.knob else "1") == "0":
                if self.off_by_default and knob not in os.environ:
                    return f"off by default: {self.off_by_default} ({knob}=1 turns it on)"
                return f"{knob}=0"
        return self.available() if self.available else None


REGISTRY = {a.name: a for a in (
    Acceleration("compiled_forward", "the eager forward of a net without gradients: runs of built-in layers "
                 "through torch.compile (caffe/accel/fastpath.py)",
                 "+11 % inference at batch 32 (198.8 vs 179.5 images/s eager, bench/bench_fastpath.py)",
                 "CAFFE_COMPILE"),
    Acceleration("conv_chains", "Convolution + in-place BatchNorm (stored statistics) / Scale / ReLU layer by "
                 "layer, in the compiled forward's segments: one oneDNN convolution (caffe/accel/fastpath.py)",
                 "+6 % compiled inference at batch 32 (bench/bench_fastpath.py)", "CAFFE_CONV_CHAINS",
                 available=_onednn),
    Acceleration("onednn_linear", "torch's BLAS sgemm for InnerProducts of >= 16 rows and >= 2^20 weights "
                 "without gradients: oneDNN's inner product (caffe/accel/onednn.py)",
                 "+4 % compiled inference at batch 32; fc6 in 2/3 of the time (bench/bench_fastpath.py)",
                 "CAFFE_ONEDNN_LINEAR", available=_onednn),
    Acceleration("channels_last", "NCHW 2-d convolutions on the CPU: channels-last (oneDNN's faster kernels)",
                 "+4 % eager inference at batch 32 (179.5 vs 172.6 images/s, bench/bench_fastpath.py)",
                 "CAFFE_CHANNELS_LAST", off_by_default="oneDNN's channels-last convolution kernels round 2-4x farther "
                 "from float64 than its NCHW ones (forward and bottom diff): our AlexNet gradients at 2x the real "
                 "Caffe's distance, twice as many ReLU decisions against float64, fc7 over 8 stage-1 steps 1.8x the "
                 "real Caffe's, on the mean of 4 perturbed runs (docs/fidelity.md); "
                 "without it the convolutions and the C kernels read and write NCHW"),
    Acceleration("native_lrn", "the PyTorch across-channels LRN (Caffe's running sum and backward): "
                 "a C kernel pass each way (caffe/accel/native.py)",
                 "+23 % training step, +23 % compiled inference at batch 32 (bench/bench_train_ab.py, "
                 "bench/bench_fastpath.py)", "CAFFE_NATIVE_LRN", "CAFFE_NATIVE", _native),
    Acceleration("native_pool", "torch's MAX pooling (int64 indices; NCHW several times slower than channels-last) "
                 "of NCHW blobs: a C kernel pass each way with Caffe's int32 mask (caffe/accel/native.py)",
                 "+8 % training step at batch 32 against torch's pooling of the same NCHW blobs "
                 "(bench/bench_train_ab.py); "
                 "against the LRN writing channels-last for torch's pooling, as before it: solver.step 0.699 against "
                 "0.711 s, peak memory 1532-1576 against 1578-1641 MB (caffe train, bench/bench_memory.py)",
                 "CAFFE_NATIVE_POOL", "CAFFE_NATIVE", _native),
    Acceleration("native_sgd", "SGD's decay, momentum and update as torch ops: one C kernel pass per param "
                 "(caffe/accel/native.py)", "+5 % training step at batch 32 (bench/bench_train_ab.py)",
                 "CAFFE_NATIVE_SGD", "CAFFE_NATIVE", _native),
    Acceleration("train_chains", "BatchNorm (batch statistics) + Scale (+ ReLU) in place, layer by layer, in "
                 "training: two C kernel passes each way (caffe/accel/train_chains.py)",
                 "+8 % training step at batch 32 (bench/bench_train_ab.py)", "CAFFE_TRAIN_CHAINS", "CAFFE_NATIVE",
                 _native),
    Acceleration("reused_diffs", "copying the update into the param diffs after each step, and a fresh "
                 "InnerProduct weight diff each backward: the copy made when a diff is read, the diff "
                 "computed into the previous one's memory (caffe/blob.py)",
                 "+2 % training step at batch 32 (the InnerProduct diff memory, bench/bench_train_ab.py)",
                 "CAFFE_REUSED_DIFFS"),
    Acceleration("heap", "glibc mmap-ing every block over 32 MB: kept on the heap (mallopt; set once, "
                 "when caffe.Net is imported)",
                 "+30 % forward at batch 32, training step 1.29 -> 0.88 s (commit f0d5b4f); at a7095ff the "
                 "training step 0.705-0.710 s against 0.743-0.757 s, for 80-100 MB more peak memory (README)",
                 "CAFFE_HEAP"),
)}


def active(name, layer=None):
    """Whether the acceleration `name` runs (for `layer`, if given: its `engine` is honoured)."""
    return REGISTRY[name].why_off(layer) is None


@contextlib.contextmanager
def switched(**on):
    """Set the named accelerations' own knobs for the block (`conv_chains=False`: off; True: on
    unless something else turns it off, as by default), restoring them after. Being environment
    variables, they also reach the processes started inside; each is read where its choice is
    made (see above)."""
    unknown = sorted(set(on) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown accelerations {unknown} (caffe.accel.REGISTRY has {', '.join(REGISTRY)})")
    knobs = {REGISTRY[name].knob: "1" if value else "0" for name, value in on.items()}
    saved = {knob: os.environ.get(knob) for knob in knobs}
    os.environ.update(knobs)
    try:
        yield
    finally:
        for knob, value in saved.items():
            if value is None:
                os.environ.pop(knob, None)
            else:
                os.environ[knob] = value
