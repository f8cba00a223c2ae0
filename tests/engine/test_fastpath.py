"""The inference fast path (caffe/accel/fastpath.py): compiled segments give the eager forward's blobs,
see writes into the params, compile per shape at fixed call counts (the same bits in every run),
and leave layers that are not pure (Python layers) eager between them."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import caffe
from caffe.accel import fastpath
from tests.engine.conftest import ACCELERATED, python_double_layer

pytestmark = ACCELERATED

NET = """
name: "fast"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
LAYER
layer { name: "drop" type: "Dropout" bottom: "mid" top: "mid" }
layer { name: "ip" type: "InnerProduct" bottom: "mid" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
"""
SPLIT = 'layer { name: "split" type: "Split" bottom: "pool" top: "mid" }'
PYTHON = ('layer { name: "py" type: "Python" bottom: "pool" top: "mid" '
          'python_param { module: "fastpath_double" layer: "Double" } }')


@pytest.fixture
def compiling(monkeypatch):
    """Compile at the first call, with dynamo's eager backend (the graph capture and the
    segment plumbing are ours to test; inductor's code generation is torch's, and slow here)."""
    monkeypatch.setenv("CAFFE_COMPILE", "1")
    monkeypatch.setenv("CAFFE_COMPILE_AFTER", "0")
    compiled, compile = [], torch.compile

    def compile_eager(module, **kwargs):
        compiled.append(module)
        module.calls = []  # the threads that ran it compiled
        fn = compile(module, backend="eager", **kwargs)
        return lambda *tensors: module.calls.append(threading.current_thread().name) or fn(*tensors)

    monkeypatch.setattr(fastpath.torch, "compile", compile_eager)
    torch._dynamo.reset()
    return compiled


def make_net(tmp_path, layer):
    path = tmp_path / "net.prototxt"
    path.write_text(NET.replace("LAYER", layer))
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.default_rng(0)
    net.params["bn"][0].data[...] = rng.normal(0, 1, 4)
    net.params["bn"][1].data[...] = rng.uniform(1, 2, 4)
    net.params["bn"][2].data[...] = 1
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].shape)
    return net


def assert_close(got, want, name=""):
    """Equal to rounding (relative to the array's scale): the fast path's folded convolution
    weights round differently from the layers one by one."""
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=name)


def eager_blobs(net, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("CAFFE_COMPILE", "0")
        net.forward()
    return {name: blob.data.copy() for name, blob in net.blobs.items()}


def test_compiled_forward_gives_every_blob_and_sees_param_writes(tmp_path, monkeypatch, compiling):
    net = make_net(tmp_path, SPLIT)
    want = eager_blobs(net, monkeypatch)
    out = net.forward()
    assert len(compiling) == 1 and compiling[0].inputs == ["data"]
    assert_close(out["ip"], want["ip"])
    for name, blob in net.blobs.items():
        assert_close(blob.data, want[name], name)
    net.params["ip"][0].data[...] *= -2  # a write through the numpy view reaches the compiled graph
    assert_close(net.forward()["ip"], eager_blobs(net, monkeypatch)["ip"])


def test_a_new_shape_counts_its_own_eager_calls(tmp_path, monkeypatch, compiling):
    monkeypatch.setenv("CAFFE_COMPILE_AFTER", "2")
    net = make_net(tmp_path, SPLIT)
    net.forward()
    net.forward()
    assert compiling == []  # calls 0 and 1: eager
    net.forward()  # call 2 starts the compilation
    assert len(compiling) == 1
    net.blobs["data"].reshape(3, 3, 9, 9)
    net.reshape()
    net.forward()  # call 0 of this shape: eager
    assert net._executor.compiled._calls[(0, 7, ((3, 3, 9, 9),))] == 0
    assert net.blobs["ip"].data.shape == (3, 5)
    want = eager_blobs(net, monkeypatch)["ip"]
    assert_close(net.forward()["ip"], want)


def test_compiles_in_the_background_and_switches_at_a_fixed_call(tmp_path, monkeypatch, compiling):
    """Call N starts the compilation in a thread (on copies of the inputs), calls N..2N-1 stay
    eager, call 2N waits for it and runs compiled without compiling again."""
    monkeypatch.setenv("CAFFE_COMPILE_AFTER", "2")
    net = make_net(tmp_path, SPLIT)
    for _ in range(4):  # calls 0..3: eager (the build ran on call 2's inputs, in its thread)
        net.forward()
    assert len(compiling) == 1
    net._executor.compiled.wait()
    assert compiling[0].calls == ["caffe-compile-0-7"]
    net.blobs["data"].data[...] *= -1
    want = eager_blobs(net, monkeypatch)
    frames = dict(torch._dynamo.utils.counters["frames"])
    net.forward()  # call 4 = 2N: compiled
    assert compiling[0].calls == ["caffe-compile-0-7", threading.main_thread().name]
    assert torch._dynamo.utils.counters["frames"] == frames  # the thread's compilation serves: no recompiling
    for name, blob in net.blobs.items():
        assert_close(blob.data, want[name], name)


# A forward loop whose "compiler" takes `delay` s (in its background thread) and marks what it
# computes (the outputs scaled by 1 + 2^-20): prints one hash per call.
LOOP = """
import hashlib, sys, time
import numpy as np
import caffe
from caffe.accel import fastpath
delay = float(sys.argv[2])

def compile_slowly(module, **kwargs):
    time.sleep(delay)
    return lambda *tensors: tuple(t * (1 + 2 ** -20) for t in module(*tensors))

fastpath.torch.compile = compile_slowly
caffe.set_random_seed(0)  # the fillers
net = caffe.Net(sys.argv[1], caffe.TEST)
rng = np.random.default_rng(0)
for p in net.params["bn"]:
    p.data[...] = rng.uniform(1, 2, p.data.shape)
for _ in range(24):
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].shape)
    print(hashlib.sha256(net.forward()["ip"].tobytes()).hexdigest(), flush=True)
    time.sleep(0.02)
"""


def test_two_runs_compute_the_same_bits_call_for_call(tmp_path):
    """The path of call k depends on k, not on the clock: a run whose compilation is slow (it
    takes longer than the eager calls until the switch) and one whose compilation is quick give
    the same outputs at every call; the compiled forward serves from call 2N = 8 on in both."""
    (tmp_path / "net.prototxt").write_text(NET.replace("LAYER", SPLIT))
    hashes = []
    for delay, after in (("0", "4"), ("0.5", "4"), ("0", "100")):  # the last: eager throughout
        run = subprocess.run([sys.executable, "-c", LOOP, str(tmp_path / "net.prototxt"), delay],
                             env=dict(os.environ, CAFFE_COMPILE="1", CAFFE_COMPILE_AFTER=after),
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        hashes.append(run.stdout.split())
    quick, slow, eager = hashes
    assert len(quick) == 24 and quick == slow
    assert quick[:8] == eager[:8] and all(a != b for a, b in zip(quick[8:], eager[8:]))


def test_a_python_layer_runs_eagerly_between_compiled_segments(tmp_path, monkeypatch, compiling):
    python_double_layer(tmp_path, monkeypatch, "fastpath_double")
    net = make_net(tmp_path, PYTHON)
    want = eager_blobs(net, monkeypatch)
    net.forward()
    assert [(s.start, s.end) for s in compiling] == [(0, 4), (6, 7)]
    np.testing.assert_allclose(net.blobs["mid"].data, 2 * net.blobs["pool"].data, rtol=1e-6)
    assert_close(net.blobs["ip"].data, want["ip"])


def test_hooks_gradients_and_train_mode_layers_take_the_eager_path(tmp_path, monkeypatch, compiling):
    net = make_net(tmp_path, SPLIT)
    seen = []
    net.after_forward(seen.append)
    net.forward()
    assert compiling == [] and seen == list(range(8))
    train = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)  # BatchNorm on batch statistics, Dropout
    with torch.no_grad():
        train.forward()
    assert [(s.start, s.end) for s in compiling] == [(0, 1), (3, 5), (7, 7)]


CHAINS = """
name: "chains"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 group: 1 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "c1" top: "c1" }
layer { name: "s1" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }
layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 group: 2 bias_term: false
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "s2" type: "Scale" bottom: "c2" top: "c2" }
layer { name: "peek" type: "Power" bottom: "c2" top: "peek" }
layer { name: "r2" type: "ReLU" bottom: "c2" top: "c2" }
layer { name: "c3" type: "Convolution" bottom: "c2" top: "c3"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "r3" type: "ReLU" bottom: "c3" top: "c3" relu_param { negative_slope: 0.1 } }
"""


def test_convolution_chains_run_as_one_onednn_convolution(tmp_path, monkeypatch, compiling):
    """Convolution + in-place BatchNorm/Scale/ReLU fold into one convolution; a layer reading the
    blob in between (peek) ends the chain there, a leaky ReLU is not fused; the blobs match the
    eager forward (to rounding: the folded weights round differently) and later writes into the
    params are seen."""
    path = tmp_path / "net.prototxt"
    path.write_text(CHAINS)
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.default_rng(1)
    net.params["bn1"][0].data[...] = rng.normal(0, 1, 4)
    net.params["bn1"][1].data[...] = rng.uniform(1, 2, 4)
    net.params["bn1"][2].data[...] = 2
    for name in ("s1", "s2"):
        for p in net.params[name]:
            p.data[...] = rng.normal(0, 1, p.data.shape)
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].shape)
    want = eager_blobs(net, monkeypatch)
    net.forward()
    chains = [(first, last) for first, last, chain in compiling[0].steps if chain is not None]
    assert chains == [(1, 4), (5, 6)]  # c1..r1, c2..s2 (peek reads c2 before r2); c3 with a leaky ReLU is not one
    for name, blob in net.blobs.items():
        assert_close(blob.data, want[name], name)
    net.params["bn1"][2].data[...] = 0  # no statistics yet: mean and variance read as 0
    net.params["s2"][0].data[...] *= -1
    want = eager_blobs(net, monkeypatch)
    net.forward()
    for name, blob in net.blobs.items():
        assert_close(blob.data, want[name], name)


def test_large_inner_products_without_gradient_run_on_onednn(monkeypatch):
    from caffe.layer_modules import inner_product
    calls = []
    monkeypatch.setattr(inner_product.onednn, "linear", lambda *a: calls.append(1) or torch.ops.caffe.onednn_linear(*a))
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(0, 1, (16, 1024)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.05, (1024, 1024)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0, 1, 1024).astype(np.float32))
    layer = caffe.registry.layer_class("InnerProduct")(
        caffe.proto.caffe_pb2.LayerParameter(name="ip", type="InnerProduct", inner_product_param={"num_output": 1024}),
        caffe.TEST)
    layer.setup([(16, 1024)])
    with torch.no_grad():
        layer.blobs[0].copy_(w)
        layer.blobs[1].copy_(b)
        got = layer(x)[0]
        assert calls == [1]
        layer(x[:8])  # fewer rows: the BLAS call
        assert calls == [1]
    np.testing.assert_allclose(got.numpy(), (x @ w.T + b).numpy(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # and in one graph under torch.compile
        compiled = torch.compile(layer, backend="eager", fullgraph=True)(x)[0]
    np.testing.assert_allclose(compiled.numpy(), got.numpy(), rtol=1e-6, atol=1e-6)
    layer(x)  # gradients wanted: the BLAS call
    assert calls == [1, 1]
