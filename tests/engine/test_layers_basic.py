"""Small hand-computed cases, float64 gradient checks and bad-input errors for the layers,
each through a caffe.Net built from a prototxt string."""
import math

import numpy as np
import pytest
import torch

import caffe
from tests.conftest import net_from
from tests.engine.conftest import check_gradients, forward_backward, layer


# -- hand-computed values ----------------------------------------------------------------------
def test_eltwise_sum_coefficients(tmp_path):
    net = net_from(tmp_path, {"a": (2, 3), "b": (2, 3)},
                   layer("Eltwise", "ab", extra="eltwise_param { operation: SUM coeff: 2 coeff: -0.5 }"))
    a, b = np.arange(6.0).reshape(2, 3), np.full((2, 3), 4.0)
    forward_backward(net, {"y": np.ones((2, 3))}, a=a, b=b)
    np.testing.assert_allclose(net.blobs["y"].data, 2 * a - 2)
    np.testing.assert_allclose(net.blobs["a"].diff, 2.0)
    np.testing.assert_allclose(net.blobs["b"].diff, -0.5)


def test_eltwise_max_ties_and_gradient(tmp_path):
    net = net_from(tmp_path, {"a": (4,), "b": (4,), "c": (4,)},
                   layer("Eltwise", "abc", extra="eltwise_param { operation: MAX }"))
    forward_backward(net, {"y": [1, 2, 3, 4]}, a=[1, 5, 2, 0], b=[1, 0, 2, 0], c=[0, 0, 2, 1])
    np.testing.assert_array_equal(net.blobs["y"].data, [1, 5, 2, 1])
    # ties: b beats a; c (a later bottom) wins only when strictly greater
    np.testing.assert_array_equal(net.blobs["a"].diff, [0, 2, 0, 0])
    np.testing.assert_array_equal(net.blobs["b"].diff, [1, 0, 3, 0])
    np.testing.assert_array_equal(net.blobs["c"].diff, [0, 0, 0, 4])


@pytest.mark.parametrize("norm, divisor", [("", 2 * 2), ("loss_param { normalization: FULL }", 2 * 6)])
def test_euclidean_loss_normalisation_and_weight(tmp_path, norm, divisor):
    net = net_from(tmp_path, {"a": (2, 3), "b": (2, 3)},
                   layer("EuclideanLoss", "ab", ("loss",), f"loss_weight: 3 {norm}"))
    a, b = np.arange(6.0).reshape(2, 3), np.zeros((2, 3))
    net.blobs["a"].data[...], net.blobs["b"].data[...] = a, b
    loss = net.forward_backward()
    np.testing.assert_allclose(net.blobs["loss"].data, (a ** 2).sum() / divisor, rtol=1e-6)
    assert loss == pytest.approx(3 * (a ** 2).sum() / divisor, rel=1e-6)
    np.testing.assert_allclose(net.blobs["a"].diff, 3 * a / (divisor / 2), rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b"].diff, -3 * a / (divisor / 2), rtol=1e-6)


def test_softmax(tmp_path):
    net = net_from(tmp_path, {"x": (1, 3, 1)}, layer("Softmax", "x"))
    forward_backward(net, x=np.log([[[1.0], [2.0], [3.0]]]))
    np.testing.assert_allclose(net.blobs["y"].data.ravel(), [1 / 6, 2 / 6, 3 / 6], rtol=1e-6)


def test_softmax_loss_uniform_scores_and_ignore(tmp_path):
    net = net_from(tmp_path, {"x": (3, 4), "label": (3,)},
                   layer("SoftmaxWithLoss", ("x", "label"), ("loss", "prob"), "loss_param { ignore_label: 7 }"))
    net.blobs["x"].data[...] = 0
    net.blobs["label"].data[...] = [1, 7, 3]
    net.forward_backward()
    assert float(net.blobs["loss"].data) == pytest.approx(math.log(4), rel=1e-6)  # / 2 valid labels
    np.testing.assert_allclose(net.blobs["prob"].data, 0.25)
    expected = np.full((3, 4), 0.25 / 2)
    expected[0, 1] -= 1 / 2
    expected[2, 3] -= 1 / 2
    expected[1] = 0
    np.testing.assert_allclose(net.blobs["x"].diff, expected, rtol=1e-6)


@pytest.mark.parametrize("loss_param, divisor", [
    ("", 3),  # VALID: 3 of the 4 positions are not ignored
    ("normalization: FULL", 4),
    ("normalization: BATCH_SIZE", 2),
    ("normalization: NONE", 1),
    ("normalize: false", 2),
    ("normalize: true", 3),
])
def test_softmax_loss_normalisation(tmp_path, loss_param, divisor):
    """Zero scores over 2 classes: each valid position costs ln(2)."""
    net = net_from(tmp_path, {"x": (2, 2, 2), "label": (2, 1, 2)},
                   layer("SoftmaxWithLoss", ("x", "label"), ("loss",),
                         f"loss_param {{ ignore_label: 5 {loss_param} }}"))
    forward_backward(net, x=np.zeros((2, 2, 2)), label=[[[0, 1]], [[5, 1]]])
    assert float(net.blobs["loss"].data) == pytest.approx(3 * math.log(2) / divisor, rel=1e-6)


@pytest.mark.parametrize("loss_param, divisor", [("", 2), ("normalization: VALID", 5), ("normalization: FULL", 8)])
def test_sigmoid_cross_entropy_normalisation(tmp_path, loss_param, divisor):
    """Zero scores: each valid target costs ln(2); BATCH_SIZE by default."""
    net = net_from(tmp_path, {"x": (2, 4), "t": (2, 4)},
                   layer("SigmoidCrossEntropyLoss", ("x", "t"), ("loss",),
                         f"loss_param {{ ignore_label: -1 {loss_param} }}"))
    forward_backward(net, x=np.zeros((2, 4)), t=[[1, 0, -1, 0.5], [-1, -1, 0, 1]])
    assert float(net.blobs["loss"].data) == pytest.approx(5 * math.log(2) / divisor, rel=1e-6)
    grad = (0.5 - np.array([[1, 0, 0.5, 0.5], [0.5, 0.5, 0, 1]])) / divisor
    np.testing.assert_allclose(net.blobs["x"].diff, grad, rtol=1e-6)


def test_concat_slice_round_trip(tmp_path):
    net = net_from(tmp_path, {"a": (2, 1, 3), "b": (2, 2, 3)},
                   layer("Concat", "ab", ("c",)) +
                   'layer { name: "s" type: "Slice" bottom: "c" top: "a2" top: "b2" slice_param { slice_point: 1 } }')
    a, b = np.random.rand(2, 1, 3), np.random.rand(2, 2, 3)
    forward_backward(net, {"a2": np.full((2, 1, 3), 2.0), "b2": np.full((2, 2, 3), 3.0)}, a=a, b=b)
    assert net.blobs["c"].data.shape == (2, 3, 3)
    np.testing.assert_allclose(net.blobs["a2"].data, a, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b2"].data, b, rtol=1e-6)
    np.testing.assert_array_equal(net.blobs["a"].diff, 2.0)
    np.testing.assert_array_equal(net.blobs["b"].diff, 3.0)


def test_slice_equal_parts_and_legacy_dim(tmp_path):
    net = net_from(tmp_path, {"x": (2, 6)},
                   layer("Slice", "x", ("p", "q", "r"), "slice_param { slice_dim: 1 }"))
    forward_backward(net, x=np.arange(12.0).reshape(2, 6))
    for i, name in enumerate("pqr"):
        np.testing.assert_array_equal(net.blobs[name].data, np.arange(12.0).reshape(2, 6)[:, 2 * i:2 * i + 2])


@pytest.mark.parametrize("params, shape", [
    ("shape { dim: 0 dim: -1 }", (2, 12)),
    ("shape { dim: 0 dim: 2 dim: -1 }", (2, 2, 6)),
    ("shape { dim: 3 dim: 1 } axis: 1 num_axes: 1", (2, 3, 1, 4)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 1, 3, 4)),
    ("shape { dim: -1 } axis: -2", (2, 3, 4)),
    ("shape { dim: 4 dim: -1 } axis: -3", (2, 4, 3)),
])
def test_reshape_rules(tmp_path, params, shape):
    net = net_from(tmp_path, {"x": (2, 3, 4)}, layer("Reshape", "x", extra=f"reshape_param {{ {params} }}"))
    x = np.random.rand(2, 3, 4)
    forward_backward(net, x=x)
    assert net.blobs["y"].data.shape == shape
    np.testing.assert_allclose(net.blobs["y"].data.ravel(), x.ravel(), rtol=1e-6)


@pytest.mark.parametrize("params, message", [
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 5 dim: -1 }", "not divisible"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 3 to copy"),
    ("shape { dim: 7 }", "changes the count"),
])
def test_reshape_errors(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        net_from(tmp_path, {"x": (2, 3, 4)}, layer("Reshape", "x", extra=f"reshape_param {{ {params} }}"))


def test_argmax_ties_take_the_larger_index(tmp_path):
    net = net_from(tmp_path, {"x": (2, 4)},
                   layer("ArgMax", "x", extra="argmax_param { top_k: 2 out_max_val: true }"))
    forward_backward(net, x=[[1, 3, 3, 0], [5, 5, 5, 5]])
    np.testing.assert_array_equal(net.blobs["y"].data, [[[2, 1], [3, 3]], [[3, 2], [5, 5]]])


def test_accuracy_ties_count_against_the_label(tmp_path):
    net = net_from(tmp_path, {"x": (3, 2), "label": (3,)}, layer("Accuracy", ("x", "label")),
                   caffe.TEST, force_backward=False)
    forward_backward(net, x=[[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]], label=[0, 1, 1])
    assert float(net.blobs["y"].data) == pytest.approx(1 / 3)


def test_split_sums_gradients_and_silence_consumes(tmp_path):
    net = net_from(tmp_path, {"x": (2,)},
                   'layer { name: "s" type: "Split" bottom: "x" top: "p" top: "q" }\n'
                   'layer { name: "z" type: "Silence" bottom: "q" }\n')
    assert "q" not in net.outputs and "p" in net.outputs
    forward_backward(net, {"p": [1.0, 2.0]}, x=[3.0, 4.0])
    np.testing.assert_array_equal(net.blobs["p"].data, [3, 4])
    np.testing.assert_array_equal(net.blobs["x"].diff, [1, 2])


def test_dropout_ratio_scaling_and_test_identity(tmp_path):
    spec = layer("Dropout", "x", extra="dropout_param { dropout_ratio: 0.25 }")
    x = np.random.rand(1000) + 1
    train = forward_backward(net_from(tmp_path, {"x": (1000,)}, spec), {"y": np.ones(1000)}, x=x)
    top = train.blobs["y"].data
    kept = top != 0
    np.testing.assert_allclose(top[kept], x[kept] / 0.75, rtol=1e-6)
    np.testing.assert_allclose(train.blobs["x"].diff, kept / 0.75, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.9
    test = forward_backward(net_from(tmp_path, {"x": (1000,)}, spec, caffe.TEST), x=x)
    np.testing.assert_allclose(test.blobs["y"].data, x, rtol=1e-6)


# -- float64 gradient checks -------------------------------------------------------------------
def _positive(shape, g):
    return torch.rand(shape, generator=g, dtype=torch.float64) + 0.5


def _away_from_zero(shape, g):
    x = torch.rand(shape, generator=g, dtype=torch.float64) + 0.2
    return x * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()


def _labels(classes):
    return lambda shape, g: torch.randint(0, classes, shape, generator=g).double()


GRADCHECK = {  # case: (type, params, bottoms as (shape, generator))
    "relu": ("ReLU", "", [((2, 3), _away_from_zero)]),
    "relu_leaky": ("ReLU", "relu_param { negative_slope: 0.1 }", [((2, 3), _away_from_zero)]),
    "prelu": ("PReLU", "", [((2, 3, 2), _away_from_zero)]),
    "prelu_shared": ("PReLU", "prelu_param { channel_shared: true }", [((2, 3, 2), _away_from_zero)]),
    "sigmoid": ("Sigmoid", "", [((2, 3), _away_from_zero)]),
    "tanh": ("TanH", "", [((2, 3), _away_from_zero)]),
    "elu": ("ELU", "elu_param { alpha: 0.5 }", [((2, 3), _away_from_zero)]),
    "absval": ("AbsVal", "", [((2, 3), _away_from_zero)]),
    "power": ("Power", "power_param { power: 1.5 scale: 2 shift: 0.5 }", [((2, 3), _positive)]),
    "exp": ("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }", [((2, 3), _away_from_zero)]),
    "log": ("Log", "log_param { base: 10 scale: 2 shift: 0.1 }", [((2, 3), _positive)]),
    "bnll": ("BNLL", "", [((2, 3), _away_from_zero)]),
    "swish": ("Swish", "swish_param { beta: 1.5 }", [((2, 3), _away_from_zero)]),
    "eltwise_prod": ("Eltwise", "eltwise_param { operation: PROD }", [((2, 3), _away_from_zero)] * 3),
    "eltwise_prod_quotient": ("Eltwise", "eltwise_param { operation: PROD stable_prod_grad: false }",
                              [((2, 3), _away_from_zero)] * 3),
    "eltwise_max": ("Eltwise", "eltwise_param { operation: MAX }", [((2, 3), _away_from_zero)] * 3),
    "concat": ("Concat", "concat_param { axis: 0 }", [((1, 3), _away_from_zero), ((2, 3), _away_from_zero)]),
    "flatten": ("Flatten", "flatten_param { axis: 1 end_axis: 2 }", [((2, 2, 2, 2), _away_from_zero)]),
    "crop": ("Crop", "crop_param { axis: 1 offset: 1 offset: 0 }",
             [((2, 4, 3), _away_from_zero), ((2, 2, 2), _away_from_zero)]),
    "tile": ("Tile", "tile_param { axis: 1 tiles: 3 }", [((2, 2, 2), _away_from_zero)]),
    "reduction_asum": ("Reduction", "reduction_param { operation: ASUM axis: 1 coeff: 2 }",
                       [((2, 3, 2), _away_from_zero)]),
    "reduction_sumsq": ("Reduction", "reduction_param { operation: SUMSQ }", [((2, 3), _away_from_zero)]),
    "reduction_mean": ("Reduction", "reduction_param { operation: MEAN axis: -1 }", [((2, 3), _away_from_zero)]),
    "softmax": ("Softmax", "softmax_param { axis: 2 }", [((2, 3, 4), _away_from_zero)]),
    "softmax_loss": ("SoftmaxWithLoss", "loss_param { ignore_label: 1 }",
                     [((2, 3, 2), _away_from_zero), ((2, 2), _labels(3))]),
    "sigmoid_ce": ("SigmoidCrossEntropyLoss", "loss_param { normalization: FULL }",
                   [((2, 3), _away_from_zero), ((2, 3), lambda s, g: torch.rand(s, generator=g).double())]),
    "euclidean": ("EuclideanLoss", "", [((2, 3), _away_from_zero)] * 2),
}


# -- bad input -----------------------------------------------------------------------------------
def test_unknown_layer_type_names_type_and_registry(tmp_path):
    with pytest.raises(KeyError, match=r"net.prototxt:2: layer 'layer': unknown layer type 'Frobnicate'.*"
                                       r"Known types: .*ReLU.*register_layer"):
        net_from(tmp_path, {"x": (2,)}, layer("Frobnicate", "x"), force_backward=False)


def test_unknown_field_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"net.prototxt:3:\d+: .*relu_parm"):
        net_from(tmp_path, {"x": (2,)}, "\n" + layer("ReLU", "x", extra="relu_parm { negative_slope: 0 }"),
                 force_backward=False)


def test_missing_bottom_names_layer_and_blob(tmp_path):
    with pytest.raises(ValueError, match=r"net.prototxt:2: layer 'layer' \(type ReLU\): bottom 'nothing' is "
                                         r"not produced by any earlier layer"):
        net_from(tmp_path, {"x": (2,)}, layer("ReLU", ["nothing"]), force_backward=False)


@pytest.mark.parametrize("type_, message", [
    ("Eltwise", r"bottoms must have the same shape: bottom 0 is \(2, 3\), bottom 1 is \(2, 4\)"),
    ("Concat", r"bottoms must have the same shape except along axis 1: bottom 0 is \(2, 3\), bottom 1 is \(3, 4\)"),
])
def test_mismatched_shapes_name_the_layer(tmp_path, type_, message):
    shapes = {"a": (2, 3), "b": (2, 4) if type_ == "Eltwise" else (3, 4)}
    with pytest.raises(ValueError, match=rf"net.prototxt:3: layer 'layer' \(type {type_}\): {message}"):
        net_from(tmp_path, shapes, layer(type_, "ab"), force_backward=False)


def test_loss_label_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match=r"layer 'layer' \(type SoftmaxWithLoss\): 3 labels for 2 predictions"):
        net_from(tmp_path, {"x": (2, 4), "label": (3,)}, layer("SoftmaxWithLoss", ("x", "label")))


@pytest.mark.parametrize("case", sorted(GRADCHECK))
def test_gradient_float64(tmp_path, case):
    check_gradients(tmp_path, *GRADCHECK[case])
