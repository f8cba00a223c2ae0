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
import torch.nn.functional as F

import caffe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class HandWritten(torch.nn.Module):
    """The DeepPose deploy net written directly in PyTorch, with the caffe net's weights."""

    def __init__(self, net):
        super().__init__()
        p = {name: [torch.from_numpy(b.data.copy()) for b in blobs] for name, blobs in net.params.items()}
        self.w = torch.nn.ParameterDict({f"{k}_{i}": torch.nn.Parameter(t, requires_grad=False)
                                         for k, ts in p.items() for i, t in enumerate(ts)})
        self.bn = {}
        for k in ("bn1", "bn2"):
            mean, var, factor = p[k]
            f = 0.0 if factor.item() == 0 else 1.0 / factor.item()
            self.register_buffer(f"{k}_mean", mean * f)
            self.register_buffer(f"{k}_var", var * f)
        self.groups = {"conv2": 2, "conv4": 2, "conv5": 2}
        strides = net._layer_params[net._layer_names.index("conv1")].convolution_param.stride
        self.stride1 = strides[0] if strides else 1

    def block(self, x, i, stride):
        w = self.w
        x = F.conv2d(x, w[f"conv{i}_0"], w[f"conv{i}_1"], stride=stride, padding=2 if i == 2 else 0,
                     groups=self.groups.get(f"conv{i}", 1))
        x = F.batch_norm(x, getattr(self, f"bn{i}_mean"), getattr(self, f"bn{i}_var"), training=False, eps=1e-5)
        x = torch.relu(x * w[f"scale{i}_0"][:, None, None] + w[f"scale{i}_1"][:, None, None])
        x = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def forward(self, x):
        w = self.w
        x = self.block(x, 1, self.stride1)
        x = self.block(x, 2, 1)
        x = torch.relu(F.conv2d(x, w["conv3_0"], w["conv3_1"], padding=1))
        x = torch.relu(F.conv2d(x, w["conv4_0"], w["conv4_1"], padding=1, groups=2))
        x = torch.relu(F.conv2d(x, w["conv5_0"], w["conv5_1"], padding=1, groups=2))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True).flatten(1)
        x = torch.relu(F.linear(x, w["fc6_0"], w["fc6_1"]))
        x = torch.relu(F.linear(x, w["fc7_0"], w["fc7_1"]))
        return F.linear(x, w["predict_0"], w["predict_1"])


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
    hand = HandWritten(net).eval()
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
