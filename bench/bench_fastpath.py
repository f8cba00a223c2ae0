"""A/B of the engine's fast-path accelerations in one run, interleaved: the stage-1 deploy net's
`caffe.Net.forward` eager with NCHW convolutions (the default: caffe.accel's `channels_last` is
off, docs/fidelity.md), eager with channels-last convolutions, and compiled (the default from
call 2 x CAFFE_COMPILE_AFTER at a shape), the
compiled one also without its convolution chains (Convolution + BatchNorm + Scale + ReLU as one
oneDNN convolution), without oneDNN inner products (torch's BLAS instead) and without the LRN
layers' C kernel (caffe.accel.native; their PyTorch implementation instead); the train net's
forward + backward with NCHW and with channels-last convolutions. Each acceleration is switched
by its own knob (caffe.accel.switched: channels_last, compiled_forward, conv_chains,
onednn_linear, native_lrn).

    python bench/bench_fastpath.py [--batch 32] [--seconds 10] [--calls 20]

Prints each variant's median rate over interleaved slices and the rate of its fastest single
call (on a shared machine: the calls no other job disturbed).
"""
import argparse
import os
import tempfile

import numpy as np
import torch

import caffe
from caffe import accel
from lib.stage1_nets import random_weights, write_nets
from lib.stage1_shape import SIZE
from lib.timing import fastest_call, measure


def variant(net, step, channels_last, compiled, chains=True, onednn_ip=True):
    """A callable running `step(net)` with channels-last convolutions, the compiled forward, its
    convolution chains and oneDNN inner products switched on or off (the engine by default: all on but channels-last; the
    chains are read when the compiled forward's segments are made, in the first call, and in the
    compiled segments each switch is read when they are compiled)."""
    knobs = {"channels_last": channels_last, "compiled_forward": compiled, "conv_chains": chains,
             "onednn_linear": onednn_ip}

    def run():
        with accel.switched(**knobs):
            step(net)

    run.net = net
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0, help="time per variant (in interleaved slices)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=20, help="interleaved rounds of single calls (fastest call)")
    args = ap.parse_args()
    caffe.init_log(2)
    os.environ["CAFFE_COMPILE_AFTER"] = "0"
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_nets(folder, args.batch)
        x = rng.uniform(-1, 1, (args.batch, 3, SIZE, SIZE)).astype(np.float32)

        def net(path, phase, lrn_kernel=True):
            with accel.switched(native_lrn=lrn_kernel):  # the LRN layers ask when the net is built
                n = caffe.Net(path, phase)
            random_weights(n)
            n.blobs["data"].data[...] = x
            return n

        forward, train = (lambda n: n.forward()), (lambda n: (n.forward(), n.backward()))
        runs = {
            "forward, eager, NCHW convolutions": variant(net(paths["deploy"], caffe.TEST), forward, False, False),
            "forward, eager, channels-last": variant(net(paths["deploy"], caffe.TEST), forward, True, False),
            "forward, compiled, channels-last": variant(net(paths["deploy"], caffe.TEST), forward, True, True),
            "  the same without conv chains": variant(net(paths["deploy"], caffe.TEST), forward, True, True,
                                                      chains=False),
            "  the same without oneDNN IP": variant(net(paths["deploy"], caffe.TEST), forward, True, True,
                                                    onednn_ip=False),
            "  the same without the LRN kernel": variant(net(paths["deploy"], caffe.TEST, lrn_kernel=False), forward,
                                                         True, True),
            "forward + backward, NCHW convolutions": variant(net(paths["train"], caffe.TRAIN), train, False, False),
            "forward + backward, channels-last": variant(net(paths["train"], caffe.TRAIN), train, True, False),
        }
        for fn in runs.values():
            fn()
        eager, fast = runs["forward, eager, channels-last"].net, runs["forward, compiled, channels-last"].net
        err = max(np.abs(fast.blobs[k].data - b.data).max() / np.abs(b.data).max() for k, b in eager.blobs.items())
        results = measure(runs, args.batch, args.seconds, args.rounds)
        best = fastest_call(runs, args.batch, args.calls)
    print(f"# batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"# compiled forward against the eager one: every blob within {err:.2g} of its largest value")
    print(f"{'variant':40s} {'images/s':>9s} {'fastest call':>13s}")
    for name, r in results.items():
        print(f"{name:40s} {r:9.1f} {best[name]:13.1f}")


if __name__ == "__main__":
    main()
