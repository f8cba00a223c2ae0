"""The training fast path (caffe/trainpath.py): compiled segments give the eager forward and
backward's blobs, blob diffs, param diffs and BatchNorm statistics, also for a backward over a
range of layers after them; Dropout, Python layers and hooks stay eager."""
import numpy as np
import pytest
import torch

import caffe
from caffe import trainpath
from conftest import python_double_layer

NET = """
name: "train"
force_backward: FORCE
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } shape { dim: 2 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "norm" type: "LRN" bottom: "conv" top: "norm" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layer { name: "pool" type: "Pooling" bottom: "norm" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
LAYER
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu2" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
DROPOUT = 'layer { name: "drop" type: "Dropout" bottom: "pool" top: "pool" }'
PYTHON = ('layer { name: "py" type: "Python" bottom: "pool" top: "pool" '
          'python_param { module: "trainpath_double" layer: "Double" } }')


@pytest.fixture
def compiling(monkeypatch):
    """Compile at once, with aot autograd but no code generation (the segment plumbing and the
    autograd split are ours to test; inductor's kernels are torch's, and slow to build here)."""
    monkeypatch.setenv("CAFFE_COMPILE", "1")
    monkeypatch.setenv("CAFFE_COMPILE_TRAIN", "1")
    monkeypatch.setenv("CAFFE_COMPILE_AFTER", "0")
    compiled, compile = [], torch.compile

    def compile_aot_eager(module, **kwargs):
        compiled.append(module)
        return compile(module, backend="aot_eager", **kwargs)

    monkeypatch.setattr(trainpath.torch, "compile", compile_aot_eager)
    torch._dynamo.reset()
    return compiled


def make_net(tmp_path, layer, force_backward=False):
    path = tmp_path / "net.prototxt"
    path.write_text(NET.replace("LAYER", layer).replace("FORCE", str(force_backward).lower()))
    torch.manual_seed(0)
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.normal(0, 1, net.blobs["label"].shape)
    return net


def state(net):
    """Every blob's data and diff and every param's data and diff, copied."""
    blobs = {n: (b.data.copy(), b.diff.copy()) for n, b in net.blobs.items()}
    params = {(n, i): (p.data.copy(), p.diff.copy()) for n, ps in net.params.items() for i, p in enumerate(ps)}
    return blobs, params


def train_passes(net, monkeypatch, compile_on, passes=2, **backward):
    out = []
    with monkeypatch.context() as m:
        if not compile_on:
            m.setenv("CAFFE_COMPILE", "0")
        for i in range(passes):
            torch.manual_seed(i)  # the same Dropout masks on both paths
            net.forward()
            net.backward(**backward)
            out.append(state(net))
            net.clear_param_diffs()
    return out


def assert_same(got, want):
    for (blobs, params), (want_blobs, want_params) in zip(got, want):
        for name, (data, diff) in want_blobs.items():
            np.testing.assert_allclose(blobs[name][0], data, rtol=1e-5, atol=1e-5, err_msg=f"blob {name} data")
            np.testing.assert_allclose(blobs[name][1], diff, rtol=1e-5, atol=1e-5, err_msg=f"blob {name} diff")
        for key, (data, diff) in want_params.items():
            np.testing.assert_allclose(params[key][0], data, rtol=1e-5, atol=1e-5, err_msg=f"param {key} data")
            np.testing.assert_allclose(params[key][1], diff, rtol=1e-5, atol=1e-5, err_msg=f"param {key} diff")


@pytest.mark.parametrize("force_backward", [False, True])
def test_compiled_training_gives_every_blob_diff_param_diff_and_statistic(tmp_path, monkeypatch, compiling,
                                                                           force_backward):
    want = train_passes(make_net(tmp_path, DROPOUT, force_backward), monkeypatch, compile_on=False)
    got = train_passes(make_net(tmp_path, DROPOUT, force_backward), monkeypatch, compile_on=True)
    # conv..pool and ip..relu2 compiled; Dropout (random) and the loss (not a pure layer) eager
    assert [(s.start, s.end) for s in compiling] == [(0, 6), (8, 9)]
    assert np.abs(got[-1][0]["conv"][1]).max() > 0 and np.abs(got[-1][0]["pool"][1]).max() > 0
    assert (np.abs(got[-1][0]["data"][1]).max() > 0) == force_backward
    assert_same(got, want)  # BatchNorm's running sums (its params) counted once per forward


def test_a_backward_over_a_range_recomputes_the_compiled_layers_graphs(tmp_path, monkeypatch, compiling):
    kwargs = {"start": "loss", "end": "scale"}
    want = train_passes(make_net(tmp_path, DROPOUT), monkeypatch, compile_on=False, **kwargs)
    got = train_passes(make_net(tmp_path, DROPOUT), monkeypatch, compile_on=True, **kwargs)
    assert compiling
    assert np.abs(got[-1][1][("scale", 0)][1]).max() > 0 and np.abs(got[-1][1][("conv", 0)][1]).max() == 0
    assert_same(got, want)


def test_the_training_path_is_opt_in(tmp_path, monkeypatch, compiling):
    monkeypatch.delenv("CAFFE_COMPILE_TRAIN")
    train_passes(make_net(tmp_path, DROPOUT), monkeypatch, compile_on=True, passes=1)
    assert compiling == []


def test_python_layers_and_hooks_stay_eager(tmp_path, monkeypatch, compiling):
    python_double_layer(tmp_path, monkeypatch, "trainpath_double")
    want = train_passes(make_net(tmp_path, PYTHON), monkeypatch, compile_on=False)
    got = train_passes(make_net(tmp_path, PYTHON), monkeypatch, compile_on=True)
    assert [(s.start, s.end) for s in compiling] == [(0, 6), (8, 9)]
    assert_same(got, want)
    compiling.clear()
    torch._dynamo.reset()
    net = make_net(tmp_path, PYTHON)
    seen = []
    net.after_backward(seen.append)
    net.forward()
    net.backward()
    assert compiling == [] and seen == list(range(len(net.layers) - 1, -1, -1))


def test_solver_steps_through_the_compiled_segments_as_eagerly(tmp_path, monkeypatch, compiling):
    (tmp_path / "net.prototxt").write_text(NET.replace("LAYER", DROPOUT).replace("FORCE", "false"))
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}" base_lr: 0.1 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" '
        f'max_iter: 3 snapshot_after_train: false solver_mode: CPU')
    weights = {}
    for compile_on in (False, True):
        with monkeypatch.context() as m:
            if not compile_on:
                m.setenv("CAFFE_COMPILE", "0")
            torch.manual_seed(0)
            solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
            rng = np.random.default_rng(0)
            solver.net.blobs["data"].data[...] = rng.normal(0, 1, (2, 3, 9, 9))
            solver.net.blobs["label"].data[...] = rng.normal(0, 1, (2, 5))
            solver.step(3)
            weights[compile_on] = {k: v for k, v in state(solver.net)[1].items()}
    assert compiling
    for key, (data, diff) in weights[False].items():
        np.testing.assert_allclose(weights[True][key][0], data, rtol=1e-5, atol=1e-5, err_msg=str(key))
        np.testing.assert_allclose(weights[True][key][1], diff, rtol=1e-5, atol=1e-5, err_msg=str(key))
