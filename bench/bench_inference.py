"""Deploy-net inference throughput: our caffe.Net beside a hand-written PyTorch module of the same
net, OpenCV DNN and onnxruntime, all in one run on this machine's CPU.

    python bench/bench_inference.py [--net models/deeppose/deeppose.prototxt] [--batches 1 32]

Prints images/s, GFLOP/s and the ratio to the hand-written PyTorch module for each engine. The
reference "PyTorch hand-written" uses the same LRN operator as our layer (so the ratio of our
rows is the engine's own overhead); the row with torch's F.local_response_norm shows what a
straightforward PyTorch port gets. The fastest path of ours is `torch.compile` of `net.module`
in channels-last with inductor's freezing (weights folded as constants, not prepacked).
"""
import argparse
import copy
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np
import torch

import caffe
from lib.deeppose_torch import DeepPoseTorch
from lib.stage1_nets import flops_per_image, random_weights
from lib.timing import measure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# inductor settings of our fastest path: weights frozen as constants (folded into the graph);
# prepacking them for oneDNN measured ~9 % slower here than the plain BLAS calls
FASTEST = {"freezing": True, "cpp.weight_prepack": False}


def engines(prototxt, batch):
    """name -> a callable running one batch, each checked against the hand-written net and warm."""
    net = caffe.Net(prototxt, caffe.TEST)
    rng = random_weights(net)
    name = net.inputs[0]
    net.blobs[name].reshape(batch, *net.blobs[name].shape[1:])
    net.reshape()
    x = rng.uniform(-1, 1, net.blobs[name].shape).astype(np.float32)
    xt = torch.from_numpy(x)
    xcl = xt.contiguous(memory_format=torch.channels_last)
    lrn = net.layers[net._layer_names.index("norm1")].module
    hand = DeepPoseTorch(net, lrn=lambda t: lrn(t)[0]).eval()
    module = net.module.eval()
    cl_module = copy.deepcopy(module).to(memory_format=torch.channels_last)
    compiled = torch.compile(copy.deepcopy(module))
    fast = torch.compile(copy.deepcopy(cl_module))
    with torch.no_grad(), torch._inductor.config.patch(FASTEST):
        fast(xcl)
    runs = {
        "PyTorch hand-written": lambda: hand(xt),
        "PyTorch hand-written, torch's LRN": lambda: torch_lrn_hand(xt),
        "caffe.Net.forward (pycaffe)": lambda: net.forward(**{name: x}),
        "caffe NetModule": lambda: module(xt),
        "caffe NetModule channels-last": lambda: cl_module(xcl),
        "caffe NetModule torch.compile": lambda: compiled(xt),
        "caffe NetModule compile+channels-last+freezing": lambda: fast(xcl),
    }
    torch_lrn_hand = DeepPoseTorch(net).eval()
    tmp = tempfile.mkdtemp()
    weights = os.path.join(tmp, "w.caffemodel")
    net.save(weights)
    cv_net = cv2.dnn.readNetFromCaffe(prototxt, weights)  # takes the batch from its input

    def cv_run():
        cv_net.setInput(x)
        return cv_net.forward()

    runs["OpenCV DNN"] = cv_run
    try:
        import onnxruntime as ort
        onnx_path = os.path.join(tmp, "net.onnx")
        torch.onnx.export(module, (xt,), onnx_path, input_names=[name], dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        runs["onnxruntime (ONNX exported from NetModule)"] = lambda: sess.run(None, {name: x})
    except ImportError as e:
        print(f"onnxruntime not measured: {e} (pip install .[bench])", file=sys.stderr)
    with torch.no_grad():
        ref = hand(xt).numpy()
        for engine, fn in runs.items():
            got = fn()
            got = got["predict"] if isinstance(got, dict) else got if isinstance(got, (torch.Tensor, np.ndarray)) else got[0]
            got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
            assert np.abs(got.reshape(ref.shape) - ref).max() <= 1e-3 * np.abs(ref).max(), f"{engine} disagrees"
            fn()
    shutil.rmtree(tmp)
    return runs, flops_per_image(net)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt"))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--seconds", type=float, default=5.0, help="time per engine (in interleaved slices)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(f"# {os.path.relpath(args.net, ROOT)}, {args.threads} threads, torch {torch.__version__}, "
          f"OpenCV {cv2.__version__}")
    for batch in args.batches:
        runs, flops = engines(args.net, batch)
        with torch.no_grad():
            results = measure(runs, batch, args.seconds)
        base = results["PyTorch hand-written"]
        print(f"\nbatch {batch} ({flops / 1e9:.2f} GFLOP per image)")
        print(f"{'engine':46s} {'images/s':>10s} {'GFLOP/s':>9s} {'vs hand-written':>16s}")
        for name, r in results.items():
            print(f"{name:46s} {r:10.1f} {r * flops / 1e9:9.1f} {r / base:15.3f}x")


if __name__ == "__main__":
    main()
