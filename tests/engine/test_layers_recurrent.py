"""LSTM, RNN and LSTMUnit beyond the golden cases: the state carried between forwards, Caffe's
exact gradients for binary cont, and the inputs Caffe refuses."""
import numpy as np
import pytest
import torch

import caffe
from caffe.layer_modules.recurrent import lstm_unit
from tests.conftest import net_from


def recurrent_net(tmp_path, type_, t, n=2, d=3, extra="", bottoms=("x", "cont"), tops=("y",), inputs=None):
    inputs = inputs or {"x": (t, n, d), "cont": (t, n)}
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    top = " ".join(f'top: "{x}"' for x in tops)
    text = (f'layer {{ name: "rec" type: "{type_}" {b} {top} recurrent_param {{ num_output: 4 '
            f'weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.5 }} {extra} }} }}\n')
    return net_from(tmp_path, inputs, text, name=f"{type_}_{t}.prototxt")


@pytest.mark.parametrize("type_", ["LSTM", "RNN"])
def test_state_carries_over_between_forwards(tmp_path, type_):
    """Two forwards of 2 steps continue each other as one forward of 4 steps (cont = 1); cont = 0
    at the start of a batch drops the carried state."""
    torch.manual_seed(0)
    long = recurrent_net(tmp_path, type_, 4)
    short = recurrent_net(tmp_path, type_, 2)
    for a, b in zip(long.params["rec"], short.params["rec"]):
        b.data[...] = a.data
    x = np.random.RandomState(1).randn(4, 2, 3)
    cont = np.ones((4, 2))
    cont[0] = 0
    whole = long.forward(x=x, cont=cont)["y"].copy()
    first = short.forward(x=x[:2], cont=cont[:2])["y"].copy()
    second = short.forward(x=x[2:], cont=cont[2:])["y"].copy()
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-6)
    fresh = recurrent_net(tmp_path, type_, 2)
    for a, b in zip(long.params["rec"], fresh.params["rec"]):
        b.data[...] = a.data
    restart = np.ones((2, 2))
    restart[0] = 0
    np.testing.assert_allclose(short.forward(x=x[2:], cont=restart)["y"], fresh.forward(x=x[2:], cont=restart)["y"])


def test_exposed_states_chain_and_get_no_diff(tmp_path):
    """h_T, c_T of one forward fed as h_0, c_0 of the next give the 4-step result; h_0 and c_0
    receive no gradient, as in Caffe's unrolled net (it shares only their data)."""
    torch.manual_seed(0)
    long = recurrent_net(tmp_path, "LSTM", 4)
    inputs = {"x": (2, 2, 3), "cont": (2, 2), "h0": (1, 2, 4), "c0": (1, 2, 4)}
    short = recurrent_net(tmp_path, "LSTM", 2, extra="expose_hidden: true", bottoms=("x", "cont", "h0", "c0"),
                          tops=("y", "hT", "cT"), inputs=inputs)
    for a, b in zip(long.params["rec"], short.params["rec"]):
        b.data[...] = a.data
    x, cont = np.random.RandomState(2).randn(4, 2, 3), np.ones((4, 2))
    whole = long.forward(x=x, cont=cont)["y"].copy()
    out = short.forward(x=x[:2], cont=cont[:2], h0=np.zeros((1, 2, 4)), c0=np.zeros((1, 2, 4)))
    first, h, c = out["y"].copy(), out["hT"].copy(), out["cT"].copy()
    np.testing.assert_allclose(h[0], first[-1])
    second = short.forward(x=x[2:], cont=cont[2:], h0=h, c0=c)["y"].copy()
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-6)
    short.blobs["y"].diff[...] = 1
    short.blobs["hT"].diff[...] = 1
    short.backward()
    assert not short.blobs["h0"].diff.any() and not short.blobs["c0"].diff.any()
    assert short.blobs["x"].diff.any()


def test_lstm_unit_gradient_is_exact_for_binary_cont():
    """Caffe's hand-written LSTMUnit backward equals autograd's of the formulas when cont is 0 or 1."""
    g = torch.Generator().manual_seed(0)
    c_prev = torch.randn(1, 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    gates = torch.randn(1, 3, 8, dtype=torch.float64, generator=g, requires_grad=True)
    cont = torch.tensor([[[1.0], [0.0], [1.0]]], dtype=torch.float64)
    torch.autograd.gradcheck(lambda c, x: lstm_unit(c, x, cont), (c_prev, gates))


@pytest.mark.parametrize("extra, bottoms, inputs, message", [
    ("", ("x", "cont"), {"x": (3, 2, 3), "cont": (3, 3)}, "cont must be (#timesteps, #streams) = (3, 2)"),
    ("", ("x",), {"x": (3, 2, 3)}, "takes at least 2 bottom"),
    ("debug_info: true", ("x", "cont"), None, "debug_info"),
    ("", ("x", "cont", "s"), {"x": (3, 2, 3), "cont": (3, 2), "s": (3, 5)}, "x_static must be (#streams, ...)"),
    ("expose_hidden: true", ("x", "cont", "h"), {"x": (3, 2, 3), "cont": (3, 2), "h": (1, 2, 4)},
     "4 or 5 bottoms"),
])
def test_refusals(tmp_path, extra, bottoms, inputs, message):
    with pytest.raises(caffe.net.NetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recurrent_net(tmp_path, "LSTM", 3, extra=extra, bottoms=bottoms, inputs=inputs)


def test_num_output_required(tmp_path):
    text = 'layer { name: "rec" type: "RNN" bottom: "x" bottom: "cont" top: "y" }\n'
    with pytest.raises(caffe.net.NetError, match="num_output must be positive"):
        net_from(tmp_path, {"x": (2, 1, 3), "cont": (2, 1)}, text)


def test_timesteps_fixed_at_setup(tmp_path):
    net = recurrent_net(tmp_path, "RNN", 3)
    net.blobs["x"].reshape(4, 2, 3)
    net.blobs["cont"].reshape(4, 2)
    with pytest.raises(ValueError, match="number of timesteps changed"):
        net.reshape()


@pytest.mark.parametrize("type_, shapes", [
    ("LSTM", [(16, 6), (16,), (16, 5), (16, 4)]),
    ("RNN", [(4, 6), (4,), (4, 5), (4, 4), (4, 4), (4,)]),
])
def test_blob_shapes_and_fillers(tmp_path, type_, shapes):
    """The unrolled net's blobs (x_static's weight before the recurrent one); weight_filler fills the
    weights, bias_filler the biases."""
    text = (f'layer {{ name: "rec" type: "{type_}" bottom: "x" bottom: "cont" bottom: "s" top: "y" recurrent_param {{ '
            'num_output: 4 weight_filler { type: "constant" value: 0.25 } bias_filler { type: "constant" value: -1 } } }\n')
    net = net_from(tmp_path, {"x": (3, 2, 3, 2), "cont": (3, 2), "s": (2, 5)}, text)
    assert [b.data.shape for b in net.params["rec"]] == shapes
    for blob, shape in zip(net.params["rec"], shapes):
        assert (blob.data == (-1 if len(shape) == 1 else 0.25)).all()
