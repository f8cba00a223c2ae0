"""Deploy-net inference throughput: our caffe.Net beside a hand-written PyTorch module of the same
net, OpenCV DNN and onnxruntime, all in one run on this machine's CPU.

    python bench/bench_inference.py [--net models/deeppose/deeppose.prototxt] [--batches 1 32]

Prints images/s, GFLOP/s and the ratio to the hand-written PyTorch module for each engine.
"""
import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

import caffe
from deeppose_torch import DeepPoseTorch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flops_per_image(net):
    """Multiply-adds x 2 of the convolution and inner-product layers, from the blob shapes."""
    total = 0
    for name, blobs in net.params.items():
        kind = net.layers[net._layer_names.index(name)].type
        top = net.blobs[net.top_names[name][0]].shape
        if kind == "Convolution":
            total += 2 * blobs[0].count * int(np.prod(top[2:]))
        elif kind == "InnerProduct":
            total += 2 * blobs[0].count
    return total


def rate(fn, batch, seconds):
    fn()  # warm up
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def engines(prototxt, batch, seconds):
    net = caffe.Net(prototxt, caffe.TEST)
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.uniform(0.5, 1.0, b.shape) if b.data.ndim <= 1 else rng.normal(0, 0.02, b.shape)
    name = net.inputs[0]
    net.blobs[name].reshape(batch, *net.blobs[name].shape[1:])
    net.reshape()
    x = rng.uniform(-1, 1, net.blobs[name].shape).astype(np.float32)
    xt = torch.from_numpy(x)
    hand = DeepPoseTorch(net).eval()
    out = {}
    with torch.no_grad():
        ref = hand(xt).numpy()
        ours = net.forward(**{name: x})["predict"]
        assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max(), "hand-written net disagrees with caffe.Net"
        out["PyTorch hand-written"] = rate(lambda: hand(xt), batch, seconds)
        out["caffe.Net.forward (pycaffe)"] = rate(lambda: net.forward(**{name: x}), batch, seconds)
        module = net.module.eval()
        out["caffe NetModule"] = rate(lambda: module(xt), batch, seconds)
        cl_module = module.to(memory_format=torch.channels_last)
        xcl = xt.contiguous(memory_format=torch.channels_last)
        out["caffe NetModule channels-last"] = rate(lambda: cl_module(xcl), batch, seconds)
        module.to(memory_format=torch.contiguous_format)
        compiled = torch.compile(module)
        out["caffe NetModule torch.compile"] = rate(lambda: compiled(xt), batch, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.caffemodel")
        net.save(weights)
        cv_net = cv2.dnn.readNetFromCaffe(prototxt, weights)  # takes the batch from its input
        cv_net.setInput(x)
        assert np.abs(cv_net.forward() - ref).max() <= 1e-3 * np.abs(ref).max(), "OpenCV disagrees"

        def cv_run():
            cv_net.setInput(x)
            cv_net.forward()

        out["OpenCV DNN"] = rate(cv_run, batch, seconds)
        try:
            import onnxruntime as ort
            onnx_path = os.path.join(tmp, "net.onnx")
            torch.onnx.export(net.module.eval(), (xt,), onnx_path, input_names=[name], dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
            got = sess.run(None, {name: x})[0]
            assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max(), "onnxruntime disagrees"
            out["onnxruntime (ONNX exported from NetModule)"] = rate(lambda: sess.run(None, {name: x}), batch, seconds)
        except ImportError as e:
            print(f"onnxruntime not measured: {e} (pip install .[bench])", file=sys.stderr)
    return out, flops_per_image(net)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt"))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(f"# {os.path.relpath(args.net, ROOT)}, {args.threads} threads, torch {torch.__version__}, "
          f"OpenCV {cv2.__version__}")
    for batch in args.batches:
        results, flops = engines(args.net, batch, args.seconds)
        base = results["PyTorch hand-written"]
        print(f"\nbatch {batch} ({flops / 1e9:.2f} GFLOP per image)")
        print(f"{'engine':46s} {'images/s':>10s} {'GFLOP/s':>9s} {'vs hand-written':>16s}")
        for name, r in results.items():
            print(f"{name:46s} {r:10.1f} {r * flops / 1e9:9.1f} {r / base:15.3f}x")


if __name__ == "__main__":
    main()
