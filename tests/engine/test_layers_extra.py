"""BatchReindex, Clip, ContrastiveLoss, Embed, Filter, HingeLoss, Im2col, InfogainLoss,
MultinomialLogisticLoss, Parameter and SPP: hand-computed values (Clip, which the golden set's Caffe
lacks, follows BVLC master's clip_layer.cpp), float64 gradient checks, what they refuse, and the
solver updating Embed's and Parameter's blobs. The golden set checks them against the real Caffe."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

import caffe
from caffe.net import NetError
from tests.conftest import net_from
from tests.engine.conftest import check_gradients, forward_backward, layer


# -- Clip (not in the golden set's Caffe) -----------------------------------------------------------
def test_clip_values_and_gradient_mask_includes_the_bounds(tmp_path):
    net = net_from(tmp_path, {"x": (6,)}, layer("Clip", "x", extra="clip_param { min: -1 max: 0.5 }"))
    x = np.array([-3.0, -1.0, -0.25, 0.5, 0.75, 0.0])
    forward_backward(net, {"y": np.arange(1.0, 7.0)}, x=x)
    np.testing.assert_array_equal(net.blobs["y"].data, [-1, -1, -0.25, 0.5, 0.5, 0])
    np.testing.assert_array_equal(net.blobs["x"].diff, [0, 2, 3, 4, 0, 6])


def test_clip_min_above_max_gives_min_and_no_gradient(tmp_path):
    net = net_from(tmp_path, {"x": (3,)}, layer("Clip", "x", extra="clip_param { min: 2 max: 1 }"))
    forward_backward(net, {"y": np.ones(3)}, x=[0.0, 1.5, 3.0])
    np.testing.assert_array_equal(net.blobs["y"].data, [2, 2, 2])
    np.testing.assert_array_equal(net.blobs["x"].diff, [0, 0, 0])


def test_clip_bounds_are_float32(tmp_path):
    net = net_from(tmp_path, {"x": (1,)}, layer("Clip", "x", extra="clip_param { min: 0 max: 0.1 }"))
    forward_backward(net, x=[1.0])
    assert net.blobs["y"].data[0] == np.float32(0.1)
    assert net.layers[-1].module.max == float(np.float32(0.1))


@pytest.mark.parametrize("params", ["", "clip_param { min: 0 }", "clip_param { max: 1 }"])
def test_clip_needs_min_and_max(tmp_path, params):
    with pytest.raises(NetError, match="clip_param.(min|max)"):
        net_from(tmp_path, {"x": (2,)}, layer("Clip", "x", extra=params))


# -- other hand-computed values -------------------------------------------------------------------
def test_contrastive_loss_by_hand(tmp_path):
    net = net_from(tmp_path, {"a": (3, 2), "b": (3, 2), "s": (3,)},
                   layer("ContrastiveLoss", "abs", ("loss",), "contrastive_loss_param { margin: 2 }"))
    a = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 3.0]])
    forward_backward(net, a=a, b=np.zeros((3, 2)), s=[1, 0, 0])
    # similar: d^2 = 25; dissimilar d = 1 < margin: (2 - 1)^2 = 1; dissimilar d = 3: 0
    assert net.blobs["loss"].data == pytest.approx((25 + 1) / 3 / 2)
    np.testing.assert_allclose(net.blobs["a"].diff, [[1, 4 / 3], [-1 / 3 / (1 + 1e-4), 0], [0, 0]], rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b"].diff, -net.blobs["a"].diff)


def test_hinge_loss_by_hand(tmp_path):
    x = np.array([[0.5, -2.0, 0.2]])
    for norm, want, grad in (("L1", 0.5 + 1.2, [-1, 0, 1]), ("L2", 0.25 + 1.44, [-1.0, 0, 2.4])):
        net = net_from(tmp_path, {"x": (1, 3), "l": (1,)},
                       layer("HingeLoss", "xl", ("loss",), f"hinge_loss_param {{ norm: {norm} }}"))
        forward_backward(net, x=x, l=[0])
        assert net.blobs["loss"].data == pytest.approx(want)
        np.testing.assert_allclose(net.blobs["x"].diff, [grad], rtol=1e-6)


def test_multinomial_logistic_loss_by_hand(tmp_path):
    net = net_from(tmp_path, {"p": (2, 3), "l": (2,)}, layer("MultinomialLogisticLoss", "pl", ("loss",)))
    forward_backward(net, p=[[0.2, 0.5, 0.3], [0.25, 0.5, 0.25]], l=[1, 2])
    assert net.blobs["loss"].data == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2)
    np.testing.assert_allclose(net.blobs["p"].diff, [[0, -1, 0], [0, 0, -2]], rtol=1e-6)


def test_infogain_with_identity_h_is_softmax_loss(tmp_path):
    """H = I makes InfogainLoss the softmax log-loss, ignore_label and normalisation included."""
    common = "loss_param { ignore_label: 2 }"
    x = np.random.RandomState(0).randn(4, 3)
    labels = [0, 2, 1, 1]
    info = net_from(tmp_path, {"x": (4, 3), "l": (4,), "h": (3, 3)},
                    layer("InfogainLoss", "xlh", ("loss",), common), name="info.prototxt")
    soft = net_from(tmp_path, {"x": (4, 3), "l": (4,)}, layer("SoftmaxWithLoss", "xl", ("loss",), common),
                    name="soft.prototxt")
    forward_backward(info, x=x, l=labels, h=np.eye(3))
    forward_backward(soft, x=x, l=labels)
    assert info.blobs["loss"].data == pytest.approx(float(soft.blobs["loss"].data), rel=1e-6)
    np.testing.assert_allclose(info.blobs["x"].diff, soft.blobs["x"].diff, rtol=1e-5, atol=1e-7)
    assert not info.blobs["h"].diff.any() and not info.blobs["l"].diff.any()


def test_batch_reindex_and_filter_by_hand(tmp_path):
    net = net_from(tmp_path, {"x": (3, 2), "i": (4,), "s": (3,)},
                   layer("BatchReindex", "xi", ("r",)) + layer("Filter", "xs", ("f",)).replace('"layer"', '"f"'))
    x = np.arange(6.0).reshape(3, 2)
    forward_backward(net, {"r": np.ones((4, 2)), "f": np.full((2, 2), 10.0)}, x=x, i=[2, 2, 0, 2], s=[1, 0, -0.5])
    np.testing.assert_array_equal(net.blobs["r"].data, x[[2, 2, 0, 2]])
    np.testing.assert_array_equal(net.blobs["f"].data, x[[0, 2]])
    np.testing.assert_array_equal(net.blobs["x"].diff, [[11, 11], [0, 0], [13, 13]])
    assert net.blobs["f"].shape == (2, 2)


def test_filter_none_kept_gives_an_empty_top_and_zero_gradient(tmp_path):
    net = net_from(tmp_path, {"x": (3, 2), "s": (3, 1)}, layer("Filter", "xs"))
    assert net.blobs["y"].shape == (3, 2)  # Caffe's first Reshape: every item
    forward_backward(net, x=np.ones((3, 2)), s=np.zeros((3, 1)))
    assert net.blobs["y"].shape == (0, 2)
    np.testing.assert_array_equal(net.blobs["x"].diff, np.zeros((3, 2)))


def test_embed_rows_and_bias(tmp_path):
    params = ('embed_param { num_output: 2 input_dim: 3 weight_filler { type: "uniform" } '
              'bias_filler { type: "constant" value: 1 } }')
    net = net_from(tmp_path, {"i": (2, 2)}, layer("Embed", "i", extra=params))
    w = net.params["layer"][0].data.copy()
    forward_backward(net, {"y": np.ones((2, 2, 2))}, i=[[2, 0], [2, 2]])
    np.testing.assert_allclose(net.blobs["y"].data, w[[[2, 0], [2, 2]]] + 1)
    np.testing.assert_array_equal(net.params["layer"][0].diff, [[1, 1], [0, 0], [3, 3]])
    np.testing.assert_array_equal(net.params["layer"][1].diff, [4, 4])


def test_im2col_equals_convolution_through_the_patch_matrix(tmp_path):
    conv = "kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 dilation: 2"
    net = net_from(tmp_path, {"x": (2, 3, 7, 6)},
                   layer("Im2col", "x", ("cols",), f"convolution_param {{ {conv} }}")
                   + layer("Convolution", "x", ("conv",), f"convolution_param {{ num_output: 4 {conv} bias_term: false "
                           'weight_filler { type: "gaussian" std: 1 } }').replace('"layer"', '"conv"'))
    forward_backward(net, x=np.random.RandomState(1).randn(2, 3, 7, 6))
    w = net.params["conv"][0].data.reshape(4, -1)
    cols = net.blobs["cols"].data
    assert cols.shape == (2, 3 * 3 * 2, 3, 3)
    np.testing.assert_allclose(np.einsum("ok,nkhw->nohw", w, cols), net.blobs["conv"].data, rtol=1e-5, atol=1e-5)


def test_spp_bins_per_level(tmp_path):
    net = net_from(tmp_path, {"x": (1, 1, 4, 4)}, layer("SPP", "x", extra="spp_param { pyramid_height: 3 }"))
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    forward_backward(net, x=x)
    level1 = [5, 7, 13, 15]  # max of each 2x2 quadrant
    np.testing.assert_array_equal(net.blobs["y"].data, [[15] + level1 + list(range(16))])


def test_parameter_top_is_the_blob(tmp_path):
    net = net_from(tmp_path, {}, 'layer { name: "layer" type: "Parameter" top: "y" '
                                 'parameter_param { shape { dim: 2 dim: 3 } } }\n')
    assert net.params["layer"][0].data.shape == (2, 3) and not net.params["layer"][0].data.any()
    net.params["layer"][0].data[...] = np.arange(6).reshape(2, 3)
    forward_backward(net, {"y": np.full((2, 3), 0.5)})
    np.testing.assert_array_equal(net.blobs["y"].data, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(net.params["layer"][0].diff, np.full((2, 3), 0.5))


# -- float64 gradient checks -----------------------------------------------------------------------
def _away(shape, g):
    """Values in +-[0.2, 1.2]: away from 0 and from the kinks the cases put at 0 and +-1.5 / 2."""
    return ((torch.rand(shape, generator=g, dtype=torch.float64) + 0.2)
            * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double())


def _ints(*values):
    """Fixed integer values (indices, labels) as a float64 bottom."""
    return lambda shape, g: torch.tensor(values, dtype=torch.float64).reshape(shape)


GRADCHECK = {
    "clip": ("Clip", "clip_param { min: -0.7 max: 0.6 }", [((2, 3, 2), _away)]),
    "contrastive_legacy": ("ContrastiveLoss", "contrastive_loss_param { margin: 3 legacy_version: true }",
                           [((4, 3), _away), ((4, 3), _away), ((4,), _ints(1, 0, 0, 1))]),
    "hinge_l1": ("HingeLoss", "", [((3, 4), _away), ((3,), _ints(0, 3, 1))]),
    "hinge_l2": ("HingeLoss", "hinge_loss_param { norm: L2 }", [((3, 2, 2), _away), ((3,), _ints(2, 3, 0))]),
    "multinomial": ("MultinomialLogisticLoss", "", [((3, 4), lambda s, g: torch.rand(s, generator=g).double() + 0.1),
                                                    ((3,), _ints(3, 0, 3))]),
    "infogain_h": ("InfogainLoss", "loss_param { normalization: FULL }",
                   [((2, 3, 2), _away), ((2, 2), _ints(0, 2, 2, 1)),
                    ((3, 3), lambda s, g: torch.rand(s, generator=g).double())]),
    "batch_reindex": ("BatchReindex", "", [((3, 2, 2), _away), ((4,), _ints(2, 0, 2, 2))]),
    "filter": ("Filter", "", [((4, 3), _away), ((4,), _ints(1, 0, 1, 1))]),
    "embed": ("Embed", "embed_param { num_output: 3 input_dim: 4 }", [((2, 3), _ints(3, 0, 3, 1, 1, 3))]),
    "im2col": ("Im2col", "convolution_param { kernel_size: 2 stride: 1 pad: 1 dilation: 2 }", [((1, 2, 4, 3), _away)]),
    "im2col_3d": ("Im2col", "convolution_param { kernel_size: 2 stride: 2 }", [((1, 1, 3, 4, 4), _away)]),
    "spp_ave": ("SPP", "spp_param { pyramid_height: 2 pool: AVE }", [((1, 2, 5, 6), _away)]),
    "spp_max": ("SPP", "spp_param { pyramid_height: 3 }", [((1, 2, 7, 6), _away)]),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK))
def test_gradient_float64(tmp_path, case):
    check_gradients(tmp_path, *GRADCHECK[case])


def test_parameter_gradient_float64(tmp_path):
    net = net_from(tmp_path, {}, 'layer { name: "layer" type: "Parameter" top: "y" '
                                 'parameter_param { shape { dim: 3 } } }\n')
    module = net.layers[-1].module.double()
    assert torch.autograd.gradcheck(lambda w: functional_call(module, {"blobs.0": w}, ()),
                                    (torch.rand(3, dtype=torch.float64, requires_grad=True),))


# -- what they refuse --------------------------------------------------------------------------------
BUILD_ERRORS = [
    ("Embed", {"i": (2,)}, "i", "embed_param { num_output: 0 input_dim: 3 }", "num_output"),
    ("Embed", {"i": (2,)}, "i", "embed_param { num_output: 2 }", "input_dim"),
    ("BatchReindex", {"x": (3, 2), "i": (2, 1)}, "xi", "", "1 axis"),
    ("Filter", {"x": (3, 2), "s": (3, 2)}, "xs", "", "selector"),
    ("Filter", {"x": (3, 2), "s": (4,)}, "xs", "", "items along axis 0"),
    ("SPP", {"x": (1, 1, 5, 5)}, "x", "spp_param { pyramid_height: 3 }", "level 2 of a 5x5 input.*pad"),
    ("SPP", {"x": (1, 1, 4, 4)}, "x", "spp_param { pyramid_height: 0 }", "pyramid_height"),
    ("SPP", {"x": (1, 4, 4)}, "x", "spp_param { pyramid_height: 1 }", "4-d"),
    ("SPP", {"x": (1, 1, 7, 7)}, "x", "spp_param { pyramid_height: 2 pool: STOCHASTIC }", "padding"),
    ("Im2col", {"x": (2, 3)}, "x", "convolution_param { kernel_size: 1 axis: 1 }", "spatial axis"),
    ("Im2col", {"x": (1, 1, 4, 4)}, "x", "convolution_param { kernel_size: 2 stride: 0 }", "positive"),
    ("Im2col", {"x": (1, 1, 4, 4, 4)}, "x", "convolution_param { kernel_h: 2 kernel_w: 2 }", "2-d"),
    ("Im2col", {"x": (1, 1, 4, 4)}, "x", "convolution_param { kernel_size: 6 }", "kernel extent"),
    ("ContrastiveLoss", {"a": (2, 3), "b": (2, 4), "s": (2,)}, "abs", "", "same C"),
    ("ContrastiveLoss", {"a": (2, 3, 2), "b": (2, 3, 2), "s": (2,)}, "abs", "", "N x C x 1 x 1"),
    ("MultinomialLogisticLoss", {"p": (2, 3), "l": (2, 2)}, "pl", "", "N x 1 x 1 x 1"),
    ("HingeLoss", {"x": (2, 3), "l": (3,)}, "xl", "", "same first dimension"),
    ("InfogainLoss", {"x": (2, 3), "l": (2,)}, "xl", "", "source"),
    ("InfogainLoss", {"x": (2, 3), "l": (2,), "h": (3, 3)}, "xlh", "loss_param { normalize: true }", "normalization"),
    ("InfogainLoss", {"x": (2, 3), "l": (2,), "h": (2, 2)}, "xlh", "", "3x3"),
    ("InfogainLoss", {"x": (2, 3), "l": (1, 2), "h": (3, 3)}, "xlh", "", "same first dimension"),
    ("InfogainLoss", {"x": (2, 3, 2), "l": (2, 3), "h": (3, 3)}, "xlh", "", "6 labels for 4 predictions"),
    ("InfogainLoss", {"x": (2, 3), "l": (2,)}, "xl", 'infogain_loss_param { source: "missing.binaryproto" }',
     "missing.binaryproto: cannot read"),
]


@pytest.mark.parametrize("type_,inputs,bottoms,params,match", BUILD_ERRORS,
                         ids=[f"{e[0]}-{e[4][:20]}" for e in BUILD_ERRORS])
def test_refused_when_the_net_is_built(tmp_path, type_, inputs, bottoms, params, match):
    with pytest.raises(NetError, match=match) as e:
        net_from(tmp_path, inputs, layer(type_, bottoms, extra=params))
    assert "layer 'layer'" in str(e.value)


RUN_ERRORS = [
    ("Embed", {"i": (3,)}, "i", "embed_param { num_output: 2 input_dim: 3 }", {"i": [0, 3, 1]},
     r"Embed index 3 is out of range \[0, 3\)"),
    ("Embed", {"i": (3,)}, "i", "embed_param { num_output: 2 input_dim: 3 }", {"i": [0, -1, 1]}, "index -1"),
    ("Embed", {"i": (2,)}, "i", "embed_param { num_output: 2 input_dim: 3 }", {"i": [0, 1.5]},
     "1.5 is not an integer"),
    ("BatchReindex", {"x": (2, 1), "i": (2,)}, "xi", "", {"i": [0, 2]}, r"index 2 is out of range \[0, 2\)"),
    ("BatchReindex", {"x": (2, 1), "i": (2,)}, "xi", "", {"i": [-0.5, 1]}, "index -0.5"),
    ("HingeLoss", {"x": (2, 3), "l": (2,)}, "xl", "", {"l": [0, 3]}, "label 3"),
    ("MultinomialLogisticLoss", {"p": (2, 3), "l": (2,)}, "pl", "", {"l": [-1, 0]}, "label -1"),
    ("InfogainLoss", {"x": (2, 3), "l": (2,), "h": (3, 3)}, "xlh", "", {"l": [0, 5]}, "label 5"),
]


@pytest.mark.parametrize("type_,inputs,bottoms,params,values,match", RUN_ERRORS,
                         ids=[f"{e[0]}-{e[5][:16]}" for e in RUN_ERRORS])
def test_refused_bad_indices(tmp_path, type_, inputs, bottoms, params, values, match):
    net = net_from(tmp_path, inputs, layer(type_, bottoms, extra=params))
    for name, value in values.items():
        net.blobs[name].data[...] = value
    with pytest.raises(ValueError, match=f"layer 'layer': .*{match}"):
        net.forward()


def test_infogain_ignored_labels_may_be_out_of_range(tmp_path):
    net = net_from(tmp_path, {"x": (2, 3), "l": (2,), "h": (3, 3)},
                   layer("InfogainLoss", "xlh", extra="loss_param { ignore_label: 255 }"))
    forward_backward(net, x=np.zeros((2, 3)), l=[255, 1], h=np.eye(3))
    assert net.blobs["y"].data == pytest.approx(np.log(3))


# -- the solver updates Embed's and Parameter's blobs ------------------------------------------------
SOLVER_NET = """
layer { name: "i" type: "Input" top: "i" input_param { shape { dim: 3 } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 3 dim: 2 } } }
layer { name: "embed" type: "Embed" bottom: "i" top: "e"
  embed_param { num_output: 2 input_dim: 4 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "offset" type: "Parameter" top: "o" param { lr_mult: 2 } parameter_param { shape { dim: 3 dim: 2 } } }
layer { name: "sum" type: "Eltwise" bottom: "e" bottom: "o" top: "s" }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "t" top: "loss" }
"""


def test_sgd_updates_embed_and_parameter_blobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(SOLVER_NET)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt" base_lr: 0.5 lr_policy: "fixed" '
                                              'weight_decay: 0.1 max_iter: 1 display: 0 snapshot_after_train: false')
    solver = caffe.get_solver("solver.prototxt")
    net = solver.net
    w, b = (p.data.copy() for p in net.params["embed"])
    o = np.random.RandomState(2).randn(3, 2).astype(np.float32)
    net.params["offset"][0].data[...] = o
    idx, t = np.array([1, 3, 1]), np.random.RandomState(3).randn(3, 2)
    net.blobs["i"].data[...], net.blobs["t"].data[...] = idx, t
    solver.step(1)
    d = (w[idx] + b + o - t) / 3  # EuclideanLoss gradient, batch size 3
    grad_w = np.zeros_like(w)
    np.add.at(grad_w, idx, d)
    np.testing.assert_allclose(net.params["embed"][0].data, w - 0.5 * (grad_w + 0.1 * w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["embed"][1].data, b - 0.5 * (d.sum(0) + 0.1 * b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["offset"][0].data, o - 2 * 0.5 * (d + 0.1 * o), rtol=1e-5, atol=1e-6)
