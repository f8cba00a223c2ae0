"""The reference switch (caffe.accel): `caffe.set_reference(True)` / CAFFE_REFERENCE=1 runs plain
PyTorch ops with Caffe's semantics and none of the accelerations; `engine: CAFFE` does it for one
layer; each acceleration's own knob (`caffe.accel.switched`) turns it off; `caffe device_query`
lists the accelerations."""
import os

import numpy as np
import pytest
import torch

import caffe
from caffe import accel
from caffe.accel import fastpath, native, onednn, train_chains
from caffe.layer_modules import inner_product, norm
from caffe.net import net as net_class
from caffe.tools import caffe_main
from tests.conftest import net_from
from tests.engine.conftest import ACCELERATED

# every acceleration's kind of layer: conv + BatchNorm/Scale/ReLU chain, LRN, pooling, a large
# inner product (oneDNN from 16 rows and 2^20 weights), a loss
LAYERS = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "lrn" type: "LRN" bottom: "conv" top: "lrn" lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 } }
layer { name: "pool" type: "Pooling" bottom: "lrn" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 4096 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
INPUTS = {"data": (16, 3, 18, 18), "label": (16, 3)}


@pytest.fixture
def reference():
    """The switch on (restored after), and the random generators the nets' seed draws from."""
    was, state = caffe.reference(), np.random.get_state()
    caffe.set_reference(True)
    with torch.random.fork_rng():
        yield
    caffe.set_reference(was)
    np.random.set_state(state)


def _forbid(monkeypatch):
    """Every accelerated function raises if called."""
    def forbidden(*args, **kwargs):
        raise AssertionError("an acceleration ran on the reference path")
    for owner, name in ((native, "library"), (onednn, "linear"), (onednn, "linear_eager"), (onednn, "conv2d"),
                        (fastpath.CompiledForward, "run"), (train_chains, "_forward_chain"),
                        (inner_product, "take_spare_diff"), (net_class, "defer_diff")):
        monkeypatch.setattr(owner, name, forbidden)


def _step(tmp_path, name, phase=caffe.TRAIN):
    """A solver step on the net (seeded): every blob's data and diff and every param's data and diff."""
    caffe.set_random_seed(3)
    net = net_from(tmp_path, INPUTS, LAYERS, phase=phase, force_backward=False, name=f"{name}.prototxt")
    rng = np.random.default_rng(0)
    for blob in ("data", "label"):
        net.blobs[blob].data[...] = rng.normal(size=INPUTS[blob])
    (tmp_path / f"{name}_solver.prototxt").write_text(
        f'net: "{tmp_path / (name + ".prototxt")}" base_lr: 0.01 momentum: 0.9 weight_decay: 0.01 '
        'lr_policy: "fixed" solver_mode: CPU')
    solver = caffe.get_solver(str(tmp_path / f"{name}_solver.prototxt"))
    for layer, blobs in net.params.items():
        for src, dst in zip(blobs, solver.net.params[layer]):
            dst.data[...] = src.data
    for blob in ("data", "label"):
        solver.net.blobs[blob].data[...] = net.blobs[blob].data
    solver.step(1)
    net = solver.net
    net.forward()
    net.backward()
    out = {f"{k} {w}": np.array(getattr(b, w)) for k, b in net.blobs.items() for w in ("data", "diff")}
    out.update({f"{k}[{i}] {w}": np.array(getattr(b, w)) for k, bs in net.params.items()
                for i, b in enumerate(bs) for w in ("data", "diff")})
    return out, net


def test_the_reference_path_runs_no_acceleration_and_agrees_with_them(tmp_path, monkeypatch, reference):
    with monkeypatch.context() as m:
        _forbid(m)
        ref, net = _step(tmp_path, "ref")
        assert net.blobs["conv"].data_tensor().is_contiguous()  # NCHW: no channels-last convolution
        with torch.no_grad():  # the inference path too: eager, layer by layer
            test = caffe.Net(str(tmp_path / "ref.prototxt"), caffe.TEST)
            test.forward()
    caffe.set_reference(False)
    fast, _ = _step(tmp_path, "fast")
    for key, want in fast.items():
        np.testing.assert_allclose(ref[key], want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())),
                                   err_msg=key)


def test_the_switch_equals_every_acceleration_off_one_by_one(tmp_path, monkeypatch, reference):
    """Each acceleration turned off by its own entry gives the reference path's bits."""
    ref, _ = _step(tmp_path, "ref")
    caffe.set_reference(False)
    for a in accel.REGISTRY.values():
        monkeypatch.setattr(a, "available", lambda: "off in this test")
    off, _ = _step(tmp_path, "off")
    for key, want in ref.items():
        np.testing.assert_array_equal(off[key], want, err_msg=key)


def test_the_switch_equals_every_acceleration_off_by_its_own_knob(tmp_path, reference):
    """Each acceleration's own knob set to 0 (caffe.accel.switched) gives the reference path's bits."""
    ref, _ = _step(tmp_path, "ref")
    caffe.set_reference(False)
    with accel.switched(**{name: False for name in accel.REGISTRY}):
        off, _ = _step(tmp_path, "off")
    for key, want in ref.items():
        np.testing.assert_array_equal(off[key], want, err_msg=key)


def test_every_acceleration_has_its_own_knob(monkeypatch, reference):
    """CAFFE_<NAME>=0 (the compiled forward's: CAFFE_COMPILE=0) turns that acceleration off and no
    other; CAFFE_NATIVE=0 turns off the four that run C kernels."""
    caffe.set_reference(False)
    knobs = [a.knob for a in accel.REGISTRY.values()]
    assert len(set(knobs)) == len(knobs) and "CAFFE_CONV_CHAINS" in knobs and "CAFFE_COMPILE" in knobs
    for name, a in accel.REGISTRY.items():
        with monkeypatch.context() as m:
            m.setenv(a.knob, "0")
            assert not accel.active(name) and a.why_off() == f"{a.knob}=0"
            assert all(b.why_off() != f"{a.knob}=0" for b in accel.REGISTRY.values() if b is not a)
    assert {n for n, a in accel.REGISTRY.items() if "CAFFE_NATIVE" in a.knobs} == {"native_lrn", "native_pool",
                                                                                   "native_sgd", "train_chains"}


def test_switched_sets_the_knobs_for_a_block_and_restores_them(monkeypatch, reference):
    caffe.set_reference(False)
    monkeypatch.setenv("CAFFE_CONV_CHAINS", "0")
    monkeypatch.delenv("CAFFE_NATIVE_SGD", raising=False)
    with accel.switched(conv_chains=True, native_sgd=False):
        assert os.environ["CAFFE_CONV_CHAINS"] == "1" and os.environ["CAFFE_NATIVE_SGD"] == "0"
        assert accel.REGISTRY["native_sgd"].why_off() == "CAFFE_NATIVE_SGD=0"
    assert os.environ["CAFFE_CONV_CHAINS"] == "0" and "CAFFE_NATIVE_SGD" not in os.environ
    with pytest.raises(KeyboardInterrupt), accel.switched(reused_diffs=False):
        raise KeyboardInterrupt
    assert "CAFFE_REUSED_DIFFS" not in os.environ
    with pytest.raises(ValueError, match=r"unknown accelerations \['conv_chain'\] .*conv_chains"):
        with accel.switched(conv_chain=False):
            pass


ENGINES = """
layer { name: "conv_ref" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 4 kernel_size: 3 engine: CAFFE weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "b"
        convolution_param { num_output: 4 kernel_size: 3 engine: CUDNN weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "lrn_ref" type: "LRN" bottom: "a" top: "la" lrn_param { engine: CAFFE } }
layer { name: "lrn" type: "LRN" bottom: "b" top: "lb" }
layer { name: "sum" type: "Eltwise" bottom: "la" bottom: "lb" top: "sum" }
"""


@ACCELERATED
def test_engine_caffe_runs_that_layer_on_the_reference_path(tmp_path, monkeypatch):
    """engine: CAFFE: the LRN's C kernel is not called, the convolution reads NCHW, and the
    compiled forward leaves the layer out; engine: CUDNN on the CPU is the default (accelerated;
    channels-last convolutions turned on, they are off by default)."""
    monkeypatch.setenv("CAFFE_CHANNELS_LAST", "1")
    calls = []
    lrn_top = native.lrn_forward
    monkeypatch.setattr(native, "lrn_forward", lambda x, *a: calls.append(x.shape) or lrn_top(x, *a))
    net = net_from(tmp_path, {"data": (2, 6, 7, 7)}, ENGINES, phase=caffe.TEST)
    layers = dict(zip(net._layer_names, net.module.layers))
    assert layers["lrn_ref"].caffe_engine and not layers["lrn_ref"].native
    assert not layers["conv"].caffe_engine
    net.forward()  # eager (the suite sets CAFFE_COMPILE=0)
    assert calls == ([(2, 4, 5, 5)] if native.library() is not None else [])  # lrn only
    assert net.blobs["a"].data_tensor().is_contiguous()
    assert not net.blobs["b"].data_tensor().is_contiguous()  # channels-last
    monkeypatch.setenv("CAFFE_COMPILE", "1")
    assert not fastpath._compilable(layers["conv_ref"]) and not fastpath._compilable(layers["lrn_ref"])
    assert fastpath._compilable(layers["conv"]) and fastpath._compilable(layers["lrn"])


def test_device_query_lists_the_accelerations(capsys, reference):
    for on in (True, False):
        caffe.set_reference(on)
        capsys.readouterr()
        assert caffe_main.main(["device_query"]) == 0
        log = capsys.readouterr().err
        assert f"Reference path: {'on' if on else 'off'}" in log
        for name, a in accel.REGISTRY.items():
            line = next(line for line in log.splitlines() if f"Acceleration {name}: " in line)
            assert a.replaces in line and a.gain in line and " or ".join(f"{k}=0" for k in a.knobs) in line
            assert ("off (reference path" in line) == on
