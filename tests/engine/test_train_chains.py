"""BatchNorm + Scale (+ ReLU) in place, trained through the C kernels (caffe/accel/train_chains.py),
against the same layers run one by one (each checked against the real Caffe by the golden set)."""
import numpy as np
import pytest

import caffe
from caffe.accel import native, train_chains
from tests.conftest import net_from
from tests.engine.conftest import ACCELERATED

pytestmark = [ACCELERATED,
              pytest.mark.skipif(native.library() is None, reason="no C compiler: the kernels are not built")]

LAYERS = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 5 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
        scale_param { bias_term: %s filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" } } }
%s
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
RELU = 'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }'


def _nets(tmp_path, bias=True, relu=True):
    """Two identical nets (the same weights and inputs)."""
    inputs = {"data": (4, 3, 7, 6), "label": (4, 3)}
    layers = LAYERS % ("true" if bias else "false", RELU if relu else "")
    a = net_from(tmp_path, inputs, layers, force_backward=False)
    b = net_from(tmp_path, inputs, layers, force_backward=False, name="b.prototxt")
    rng = np.random.default_rng(0)
    for net in (a, b):
        net.blobs["data"].data[...] = rng.normal(size=(4, 3, 7, 6)) if net is a else a.blobs["data"].data
        net.blobs["label"].data[...] = rng.normal(size=(4, 3)) if net is a else a.blobs["label"].data
    for name in a.params:
        for pa, pb in zip(a.params[name], b.params[name]):
            pb.data[...] = pa.data
    return a, b


def _state(net):
    """Every blob's data and diff and every param's data and diff."""
    out = {f"blob {k} {w}": np.array(getattr(b, w)) for k, b in net.blobs.items() for w in ("data", "diff")}
    for k, blobs in net.params.items():
        for i, b in enumerate(blobs):
            out[f"param {k}[{i}] data"], out[f"param {k}[{i}] diff"] = np.array(b.data), np.array(b.diff)
    return out


def _compare(a, b):
    """Agreement to rounding, relative to each array's scale; the convolution's bias gradient is
    zero up to rounding (BatchNorm takes out the per-channel mean): the sum over a channel of its
    top's diff, whose values agree to 2e-5, so it agrees to 2e-5 of that channel's sum of |diff|."""
    sa, sb = _state(a), _state(b)
    for key in sa:
        atol = 2e-6 * max(1.0, float(np.abs(sb[key]).max()))
        if key == "param conv[1] diff":
            atol = 2e-5 * float(np.abs(sb["blob conv diff"]).sum(axis=(0, 2, 3)).max())
        np.testing.assert_allclose(sa[key], sb[key], rtol=2e-5, atol=atol, err_msg=key)


def _unfused(monkeypatch):
    """Run the following forwards layer by layer."""
    monkeypatch.setattr(train_chains.native, "library", lambda: None)


@pytest.mark.parametrize("bias,relu", [(True, True), (False, True), (True, False)])
def test_a_chain_computes_what_its_layers_compute(tmp_path, monkeypatch, bias, relu):
    """Two forward + backward passes (param diffs accumulate, BatchNorm counts twice): every
    blob's data and diff and every param's data and diff agree with the layer-by-layer run."""
    a, b = _nets(tmp_path, bias, relu)
    for _ in range(2):
        a.forward()
        assert [first for first, _, _ in a._executor.replays] == [a.layer_index("bn")]  # the chain ran fused
        a.backward()
    with monkeypatch.context() as m:
        _unfused(m)
        for _ in range(2):
            b.forward()
            assert not b._executor.replays
            b.backward()
    _compare(a, b)


def test_a_backward_over_part_of_the_net_recomputes_the_chain_once(tmp_path, monkeypatch):
    """A backward from the top to the chain's Scale needs the layers' own graphs: they are
    recomputed, and BatchNorm does not count its statistics again."""
    a, b = _nets(tmp_path)
    a.forward()
    a.backward(start="loss", end="scale")
    a.backward(start="bn", end="conv")
    with monkeypatch.context() as m:
        _unfused(m)
        b.forward()
        b.backward(start="loss", end="scale")
        b.backward(start="bn", end="conv")
    _compare(a, b)
    assert float(a.params["bn"][2].data[0]) == 1.0  # the scale factor counted one batch


def test_solver_steps_through_chains_match_layer_by_layer_steps(tmp_path, monkeypatch):
    a, b = _nets(tmp_path)
    solvers = []
    for net in (a, b):
        path = tmp_path / f"solver_{len(solvers)}.prototxt"
        path.write_text('base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" solver_mode: CPU\n'
                        f'net: "{tmp_path / ("net.prototxt" if net is a else "b.prototxt")}"\n')
        solver = caffe.get_solver(str(path))
        for name in net.params:
            for src, dst in zip(net.params[name], solver.net.params[name]):
                dst.data[...] = src.data
        for blob in ("data", "label"):
            solver.net.blobs[blob].data[...] = net.blobs[blob].data
        solvers.append(solver)
    solvers[0].step(3)
    with monkeypatch.context() as m:
        _unfused(m)
        solvers[1].step(3)
    _compare(solvers[0].net, solvers[1].net)
