"""caffe.Net: graph construction rules, pycaffe's blob/param views, weight files, bad input."""
import numpy as np
import pytest

import caffe
from caffe.formats.protoio import ProtoFileError
from caffe.net import NetError
from caffe.registry import UnknownLayerError

IP = 'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" {extra} ' \
     'inner_product_param {{ num_output: {n} weight_filler {{ type: "gaussian" std: 0.5 }} ' \
     'bias_filler {{ type: "constant" value: 0.1 }} }} }}\n'


def ip(name, bottom, top=None, n=3, extra=""):
    return IP.format(name=name, bottom=bottom, top=top or name, n=n, extra=extra)


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


HEAD = 'name: "t"\ninput: "x"\ninput_shape { dim: 4 dim: 5 }\ninput: "y"\ninput_shape { dim: 4 dim: 3 }\n'
LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" %s }\n'


def make(tmp_path, text, phase=caffe.TRAIN):
    return caffe.Net(write(tmp_path, text), phase)


def fill(net, seed=0):
    rng = np.random.default_rng(seed)
    for name in net.inputs:
        net.blobs[name].data[...] = rng.standard_normal(net.blobs[name].shape)


def test_blobs_alias_engine_storage(tmp_path):
    net = make(tmp_path, HEAD + ip("fc", "x"))
    fill(net)
    x = net.blobs["x"].data.copy()
    W, b = net.params["fc"][0].data, net.params["fc"][1].data
    W[...] = 1.0  # writing the numpy view changes the net's weights
    out = net.forward()["fc"]
    np.testing.assert_allclose(out, x @ W.T + b, rtol=1e-5)
    assert list(net.blobs) == ["x", "y", "fc"] and net.inputs == ["x", "y"]
    assert net.outputs == ["y", "fc"] and net._layer_names == ["input", "fc"]
    assert net.layers[1].type == "InnerProduct" and net.layers[1].blobs[0].data.shape == (3, 5)


def test_forward_kwargs_and_backward_gradients(tmp_path):
    net = make(tmp_path, HEAD + ip("fc", "x") + LOSS % 'loss_param { normalization: FULL }')
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    loss = net.forward(x=x, y=y)["loss"]
    W, b = net.params["fc"][0].data, net.params["fc"][1].data
    d = x @ W.T + b - y
    np.testing.assert_allclose(loss, (d ** 2).sum() / (2 * d.size), rtol=1e-5)
    net.backward()
    np.testing.assert_allclose(net.blobs["fc"].diff, d / d.size, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(net.params["fc"][0].diff, d.T @ x / d.size, rtol=1e-4, atol=1e-7)
    net.backward()  # param diffs accumulate, like Caffe (solvers clear them); blob diffs are overwritten
    np.testing.assert_allclose(net.params["fc"][0].diff, 2 * d.T @ x / d.size, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(net.blobs["fc"].diff, d / d.size, rtol=1e-4, atol=1e-7)


def test_loss_weight_and_stock_normalisation(tmp_path):
    net = make(tmp_path, HEAD + ip("fc", "x") + LOSS % "loss_weight: 2")
    fill(net)
    loss = float(net.forward()["loss"])
    d = net.blobs["fc"].data - net.blobs["y"].data
    np.testing.assert_allclose(loss, (d ** 2).sum() / (2 * 4), rtol=1e-5)  # stock: by the batch size
    net.backward()
    np.testing.assert_allclose(net.blobs["fc"].diff, 2 * d / 4, rtol=1e-4, atol=1e-7)


def test_phase_rules_and_multiple_consumers(tmp_path):
    text = HEAD + ip("fc", "x") + ip("a", "fc", extra='include { phase: TRAIN }') + \
        ip("b", "fc", extra='exclude { phase: TRAIN }') + ip("c", "fc")
    train, test = make(tmp_path, text, caffe.TRAIN), make(tmp_path, text, caffe.TEST)
    assert "a" in train.blobs and "b" not in train.blobs
    assert "b" in test.blobs and "a" not in test.blobs
    assert set(train.outputs) == {"y", "a", "c"}


def test_propagate_down_and_shared_params(tmp_path):
    text = 'name: "t"\ninput: "x"\ninput_dim: 2\ninput_dim: 4\ninput_dim: 1\ninput_dim: 1\nforce_backward: true\n' + \
        ip("fc1", "x", extra='param { name: "w" } param { name: "b" }') + \
        ip("fc2", "x", extra='param { name: "w" } param { name: "b" } propagate_down: false')
    net = make(tmp_path, text)
    assert net.params["fc1"][0].param is net.params["fc2"][0].param
    assert len(net.learnable_params) == 2
    fill(net)
    out = net.forward()
    np.testing.assert_array_equal(out["fc1"], out["fc2"])
    net.blobs["fc1"].diff[...] = 0
    net.blobs["fc2"].diff[...] = 1
    diffs = net.backward()
    np.testing.assert_array_equal(diffs["x"], 0)  # fc2 does not propagate down to x
    assert np.abs(net.params["fc1"][0].diff).sum() > 0  # the shared weight still learns from fc2


def test_in_place_blob_keeps_latest_data(tmp_path):
    text = HEAD + ip("fc", "x") + ip("fc2", "fc", top="fc", n=3)
    net = make(tmp_path, text)
    fill(net)
    out = net.forward()
    W2, b2 = net.params["fc2"][0].data, net.params["fc2"][1].data
    W1, b1 = net.params["fc"][0].data, net.params["fc"][1].data
    first = net.blobs["x"].data @ W1.T + b1
    np.testing.assert_allclose(out["fc"], first @ W2.T + b2, rtol=1e-5)


def test_forward_all_reshape_and_save_load(tmp_path):
    net = make(tmp_path, HEAD + ip("fc", "x"), caffe.TEST)
    x = np.random.default_rng(2).standard_normal((10, 5)).astype(np.float32)
    out = net.forward_all(x=x)["fc"]
    W, b = net.params["fc"][0].data, net.params["fc"][1].data
    np.testing.assert_allclose(out, x @ W.T + b, rtol=1e-5, atol=1e-6)  # the fillers are not seeded
    net.blobs["x"].reshape(7, 5)
    net.reshape()
    assert net.blobs["fc"].shape == (7, 3)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    again = caffe.Net(write(tmp_path, HEAD + ip("fc", "x")), caffe.TEST, weights=weights)
    np.testing.assert_array_equal(again.params["fc"][0].data, W)


def test_bad_input_errors_name_the_place(tmp_path):
    with pytest.raises(ProtoFileError, match=r"net.prototxt:3:\d+: .*no field named \"bogus\""):
        make(tmp_path, 'name: "t"\ninput: "x"\nbogus: 1\n')
    with pytest.raises(NetError, match=r"layer 'fc'.*bottom 'nope' is not produced"):
        make(tmp_path, HEAD + ip("fc", "nope"))
    with pytest.raises(UnknownLayerError, match=r"net.prototxt:6: layer 'f'.*'Frobnicate'.*register_layer"):
        make(tmp_path, HEAD + 'layer { name: "f" type: "Frobnicate" bottom: "x" top: "f" }\n')
    net = make(tmp_path, HEAD + ip("fc", "x"))
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    with pytest.raises(NetError, match=r"param 0 of layer 'fc'.*source \(3, 5\).*target \(4, 5\)"):
        make(tmp_path, HEAD + ip("fc", "x", n=4)).copy_from(weights)
    data = open(weights, "rb").read()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProtoFileError, match=r"cut.caffemodel: not a valid NetParameter"):
        net.copy_from(str(tmp_path / "cut.caffemodel"))


def test_backward_lets_go_of_the_old_blob_diffs_first(tmp_path):
    """The whole-net backward drops the previous blob diffs before computing the new ones (Caffe
    overwrites them in place: the net never holds two sets), and still ends with the same diffs."""
    import weakref
    net = make(tmp_path, HEAD + ip("h", "x", n=6) + ip("fc", "h") + LOSS % "")
    fill(net)
    net.forward()
    net.backward()
    first = {name: net.blobs[name].diff.copy() for name in ("h", "fc")}
    old = {name: weakref.ref(net.blobs[name]._diff.tensor) for name in ("h", "fc")}
    net.forward()
    alive = []
    net._live["fc"].register_hook(lambda g: alive.append([name for name, ref in old.items() if ref() is not None]))
    net.backward()
    assert alive == [[]]
    for name, diff in first.items():
        np.testing.assert_array_equal(net.blobs[name].diff, diff)
