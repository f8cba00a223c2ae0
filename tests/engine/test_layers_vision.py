"""Vision layers (conv, pooling, LRN, BatchNorm, MVN, Scale, Bias): hand-computed Caffe values,
a loop transcription of Caffe's pooling for the corner cases, and float64 gradient checks."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

import caffe
from caffe.net import NetError
from tests.conftest import net_from

FLT_MAX = float(np.finfo(np.float32).max)


def make_net(tmp_path, layer, shapes, phase=caffe.TRAIN, tops=("top",)):
    """A net of Input blobs x0, x1, ... of `shapes` and one layer "layer" (text inside `layer { }`,
    after its name, bottoms and tops), with force_backward."""
    wiring = "".join(f' bottom: "x{i}"' for i in range(len(shapes))) + "".join(f' top: "{t}"' for t in tops)
    return net_from(tmp_path, {f"x{i}": shape for i, shape in enumerate(shapes)},
                    f'layer {{ name: "layer"{wiring} {layer} }}\n', phase)


def run(net, *inputs, topdiff=None):
    """Forward with these inputs; backward from `topdiff` on "top" if given; returns the net."""
    for i, x in enumerate(inputs):
        net.blobs[f"x{i}"].data[...] = x
    net.forward()
    if topdiff is not None:
        net.blobs["top"].diff[...] = topdiff
        net.backward()
    return net


# -- pooling ---------------------------------------------------------------------------------

def caffe_pool(x, method, k, s, p, ceil=True):
    """pooling_layer.cpp's loops on one (H, W) plane: top, mask (MAX) and d top / d x."""
    (H, W), (kh, kw), (sh, sw), (ph, pw) = x.shape, k, s, p

    def size(n, k, s, p):
        span = n + 2 * p - k
        out = int(np.ceil(span / s) if ceil else np.floor(span / s)) + 1
        return out - 1 if (ph or pw) and (out - 1) * s >= n + p else out

    oh, ow = size(H, kh, sh, ph), size(W, kw, sw, pw)
    top, mask, jac = np.zeros((oh, ow)), np.full((oh, ow), -1.0), np.zeros((oh, ow, H, W))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - ph, j * sw - pw
            if method == "MAX":
                h1, w1, h0, w0 = min(h0 + kh, H), min(w0 + kw, W), max(h0, 0), max(w0, 0)
                top[i, j] = -FLT_MAX
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        if x[h, w] > top[i, j]:
                            top[i, j], mask[i, j] = x[h, w], h * W + w
                if mask[i, j] >= 0:
                    jac[i, j].flat[int(mask[i, j])] = 1
            else:
                h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
                n = np.float64((h1 - h0) * (w1 - w0))  # 0 or less for an empty window: Caffe's 0 / n
                h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
                with np.errstate(invalid="ignore", divide="ignore"):
                    top[i, j] = x[h0:h1, w0:w1].sum() / n
                    jac[i, j, h0:h1, w0:w1] = 1.0 / n
    return top, mask, jac


def pool_text(method, k, s, p, ceil=True):
    return (f'type: "Pooling" pooling_param {{ pool: {method} kernel_h: {k[0]} kernel_w: {k[1]} '
            f'stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} '
            f'round_mode: {"CEIL" if ceil else "FLOOR"} }}')


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("hw,k,s,p,ceil", [
    ((6, 6), (3, 3), (2, 2), (0, 0), True),  # 3x3, the last window clipped
    ((5, 5), (3, 3), (3, 3), (1, 1), True),  # ceil gives 3, the third window starts in the padding: 2x2
    ((6, 6), (3, 3), (2, 2), (1, 1), True),  # AVE divisors 9, 6 and 4
    ((7, 6), (3, 2), (2, 1), (1, 0), True),
    ((6, 6), (3, 3), (2, 2), (0, 0), False),  # FLOOR: 2x2
    ((5, 7), (3, 3), (2, 2), (2, 2), True),  # pad > k / 2: torch refuses, the exact path
    ((6, 5), (1, 2), (3, 2), (0, 0), True),  # stride > kernel without padding: Caffe keeps an empty window
])
def test_pooling_matches_caffe_loops(tmp_path, method, hw, k, s, p, ceil):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    tops = ("top", "mask") if method == "MAX" else ("top",)
    net = make_net(tmp_path, pool_text(method, k, s, p, ceil), [x.shape], tops=tops)
    top_shape = net.blobs["top"].shape
    topdiff = rng.standard_normal(top_shape).astype(np.float32)
    run(net, x, topdiff=topdiff)
    for n in range(2):
        for c in range(3):
            ref, mask, jac = caffe_pool(x[n, c].astype(np.float64), method, k, s, p, ceil)
            assert ref.shape == top_shape[2:]
            np.testing.assert_allclose(net.blobs["top"].data[n, c], ref, rtol=1e-5, atol=1e-6, equal_nan=True)
            if method == "MAX":
                np.testing.assert_array_equal(net.blobs["mask"].data[n, c], mask)
            grad = np.einsum("ij,ijhw->hw", topdiff[n, c], jac)
            np.testing.assert_allclose(net.blobs["x0"].diff[n, c], grad, rtol=1e-5, atol=1e-6)


def test_pooling_output_sizes_and_ave_divisors(tmp_path):
    def top_shape(k, s, p, hw):
        return make_net(tmp_path, pool_text("MAX", k, s, p), [(1, 1) + hw]).blobs["top"].shape[2:]

    assert top_shape((3, 3), (2, 2), (0, 0), (6, 6)) == (3, 3)  # ceil((6 - 3) / 2) + 1; floor gives 2
    assert top_shape((3, 3), (3, 3), (1, 1), (5, 5)) == (2, 2)  # the 3rd window would start in the padding
    assert top_shape((3, 3), (2, 2), (1, 1), (6, 6)) == (4, 4)
    # 6x6 k3 s2 p1: windows start at -1, 1, 3, 5; the last is clipped to in + pad = 7, so the
    # divisors are 9 inside, 6 on the last row/column, 4 in the corner (padded cells count)
    ones = np.ones((1, 1, 6, 6), np.float32)
    net = run(make_net(tmp_path, pool_text("AVE", (3, 3), (2, 2), (1, 1)), [ones.shape]), ones)
    real, divisor = np.outer([2, 3, 3, 1], [2, 3, 3, 1]), np.outer([3, 3, 3, 2], [3, 3, 3, 2])
    np.testing.assert_allclose(net.blobs["top"].data[0, 0], real / divisor, rtol=1e-6)


def test_max_pool_gradient_goes_to_first_maximum(tmp_path):
    x = np.array([[[[1, 5, 5], [5, 2, 5], [0, 0, 0]]]], np.float32)
    net = make_net(tmp_path, pool_text("MAX", (2, 2), (1, 1), (0, 0)), [x.shape], tops=("top", "mask"))
    run(net, x, topdiff=np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(net.blobs["top"].data[0, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(net.blobs["mask"].data[0, 0], [[1, 1], [3, 5]])
    np.testing.assert_array_equal(net.blobs["x0"].diff[0, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])


def test_global_pooling(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for method, ref in (("MAX", x.max((2, 3))), ("AVE", x.mean((2, 3)))):
        text = f'type: "Pooling" pooling_param {{ pool: {method} global_pooling: true }}'
        net = run(make_net(tmp_path, text, [x.shape]), x)
        np.testing.assert_allclose(net.blobs["top"].data[:, :, 0, 0], ref, rtol=1e-6)


def test_stochastic_pooling(tmp_path):
    text = 'type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }'
    x = np.tile(np.array([1, 0, 0, 3], np.float32).reshape(1, 1, 2, 2), (1, 4000, 1, 1))
    test = run(make_net(tmp_path, text, [x.shape], caffe.TEST), x)
    np.testing.assert_allclose(test.blobs["top"].data, 10 / 4)  # sum x^2 / sum x
    caffe.set_random_seed(3)
    train = run(make_net(tmp_path, text, [x.shape]), x, topdiff=np.ones((1, 4000, 1, 1), np.float32))
    top = train.blobs["top"].data.ravel()
    assert set(np.unique(top)) == {1.0, 3.0} and abs((top == 3).mean() - 0.75) < 0.03
    np.testing.assert_array_equal(train.blobs["x0"].diff[:, :, 1, 1].ravel(), top == 3)


def test_pooling_errors(tmp_path):
    with pytest.raises(NetError, match="padding is implemented only for MAX and AVE"):
        make_net(tmp_path, 'type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }', [(1, 1, 4, 4)])
    with pytest.raises(NetError, match="at most 1 top"):
        make_net(tmp_path, 'type: "Pooling" pooling_param { pool: AVE kernel_size: 2 }', [(1, 1, 4, 4)],
                 tops=("top", "mask"))


# -- convolution -------------------------------------------------------------------------------

def test_grouped_convolution_equals_two_convolutions(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    grouped = make_net(tmp_path, 'type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 '
                                 'group: 2 pad: 1 weight_filler { type: "gaussian" std: 1 } }', [x.shape])
    single = make_net(tmp_path, 'type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 pad: 1 }',
                      [(2, 2, 6, 5)])
    W, b = grouped.params["layer"][0].data, grouped.params["layer"][1].data
    b[...] = rng.standard_normal(6)
    assert W.shape == (6, 2, 3, 3)
    top = run(grouped, x).blobs["top"].data
    for g in range(2):
        single.params["layer"][0].data[...] = W[3 * g:3 * g + 3]
        single.params["layer"][1].data[...] = b[3 * g:3 * g + 3]
        np.testing.assert_allclose(top[:, 3 * g:3 * g + 3], run(single, x[:, 2 * g:2 * g + 2]).blobs["top"].data,
                                   rtol=1e-5, atol=1e-6)


def test_convolution_shapes(tmp_path):
    conv = make_net(tmp_path, 'type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 stride: 2 }',
                    [(1, 1, 8, 8)])
    assert conv.blobs["top"].shape == (1, 2, 3, 3)  # (8 - 3) / 2 + 1 rounds down
    deconv = make_net(tmp_path, 'type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 4 '
                                'stride: 2 pad: 1 group: 2 }', [(1, 2, 5, 5)])
    assert deconv.blobs["top"].shape == (1, 4, 10, 10) and deconv.params["layer"][0].data.shape == (2, 2, 4, 4)
    conv3d = make_net(tmp_path, 'type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
                                'kernel_size: 1 kernel_size: 2 dilation: 2 }', [(1, 1, 6, 6, 6)])
    assert conv3d.blobs["top"].shape == (1, 2, 2, 6, 4)
    with pytest.raises(NetError, match="axis 2 is not supported"):
        make_net(tmp_path, 'type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 axis: 2 }',
                 [(1, 1, 4, 4)])


# -- normalisation -----------------------------------------------------------------------------

def test_lrn_values(tmp_path):
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    net = run(make_net(tmp_path, 'type: "LRN" lrn_param { local_size: 3 alpha: 0.3 beta: 0.75 }', [x.shape]), x)
    scale = np.array([1 + 0.1 * 5, 1 + 0.1 * 14, 1 + 0.1 * 13])  # k + alpha / n * window sum of squares
    np.testing.assert_allclose(net.blobs["top"].data.ravel(), [1, 2, 3] * scale ** -0.75, rtol=1e-6)
    x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 1, 2, 2)  # every 3x3 window holds all 4 cells
    text = 'type: "LRN" lrn_param { local_size: 3 alpha: 0.9 beta: 0.5 k: 7 norm_region: WITHIN_CHANNEL }'
    net = run(make_net(tmp_path, text, [x.shape]), x)
    np.testing.assert_allclose(net.blobs["top"].data, x / 2, rtol=1e-6)  # (1 + 0.9 / 9 * 30)^-0.5, no k


def test_batchnorm_global_stats_use_scale_factor(tmp_path):
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    net = make_net(tmp_path, 'type: "BatchNorm" batch_norm_param { eps: 0.25 }', [x.shape], caffe.TEST)
    b0, b1, b2 = (blob.data for blob in net.params["layer"])
    b0[...], b1[...], b2[...] = [2, 4], [8, 18], [2]  # mean 1, 2; variance 4, 9
    run(net, x, topdiff=np.ones(x.shape, np.float32))
    mean, std = np.array([1, 2]).reshape(1, 2, 1, 1), np.sqrt(np.array([4, 9]).reshape(1, 2, 1, 1) + 0.25)
    np.testing.assert_allclose(net.blobs["top"].data, (x - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["x0"].diff, np.broadcast_to(1 / std, x.shape), rtol=1e-6)
    b2[...] = 0  # scale factor 0: mean = variance = 0
    np.testing.assert_allclose(run(net, x).blobs["top"].data, x / 0.5, rtol=1e-6)


def test_batchnorm_train_updates_running_sums(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    net = make_net(tmp_path, 'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.5 eps: 0.01 }',
                   [x.shape])
    b0, b1, b2 = (blob.data for blob in net.params["layer"])
    b0[...], b1[...], b2[...] = [1, 2], [3, 4], [2]
    run(net, x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    np.testing.assert_allclose(b0, 0.5 * np.array([1, 2]) + mean, rtol=1e-5)
    np.testing.assert_allclose(b1, 0.5 * np.array([3, 4]) + 12 / 11 * var, rtol=1e-5)
    np.testing.assert_allclose(b2, [2.0], rtol=1e-6)
    expect = (x - mean.reshape(1, 2, 1, 1)) / np.sqrt(var.reshape(1, 2, 1, 1) + 0.01)
    np.testing.assert_allclose(net.blobs["top"].data, expect, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in net.layers[-1].module.blobs)


def test_mvn_backward_is_caffes(tmp_path):
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((2, 3, 2, 2)).astype(np.float32), rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    net = run(make_net(tmp_path, 'type: "MVN" mvn_param { eps: 0.5 }', [x.shape]), x, topdiff=dy)
    rows, drows = x.reshape(6, 4).astype(np.float64), dy.reshape(6, 4).astype(np.float64)
    centred = rows - rows.mean(1, keepdims=True)
    denominator = np.sqrt((centred ** 2).mean(1, keepdims=True)) + 0.5
    y = centred / denominator
    np.testing.assert_allclose(net.blobs["top"].data.reshape(6, 4), y, rtol=1e-5)
    dx = (drows - drows.mean(1, keepdims=True) - y * (drows * y).mean(1, keepdims=True)) / denominator
    np.testing.assert_allclose(net.blobs["x0"].diff.reshape(6, 4), dx, rtol=1e-4, atol=1e-6)


# -- gradients, checked numerically in float64 ------------------------------------------------

GRADCHECK = [
    ('type: "Convolution" convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 group: 2 '
     'dilation: 1 weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } }',
     [(2, 2, 5, 4)], caffe.TRAIN),
    ('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 '
     'weight_filler { type: "gaussian" std: 1 } }', [(1, 2, 3, 3)], caffe.TRAIN),
    ('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }', [(1, 2, 6, 6)], caffe.TRAIN),
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 3 pad: 1 }', [(1, 2, 5, 5)], caffe.TRAIN),
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }', [(1, 1, 5, 6)], caffe.TRAIN),
    ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }', [(2, 4, 2, 3)], caffe.TRAIN),
    ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 norm_region: WITHIN_CHANNEL }', [(1, 2, 3, 4)], caffe.TRAIN),
    ('type: "BatchNorm" batch_norm_param { eps: 0.1 }', [(3, 2, 2, 2)], caffe.TRAIN),
    ('type: "BatchNorm" batch_norm_param { eps: 0.1 }', [(4, 3)], caffe.TRAIN),
    ('type: "MVN" mvn_param { eps: 0 across_channels: true }', [(2, 2, 2, 3)], caffe.TRAIN),
    ('type: "MVN" mvn_param { normalize_variance: false }', [(2, 2, 2, 3)], caffe.TRAIN),
    ('type: "Scale" scale_param { bias_term: true filler { type: "gaussian" std: 1 } '
     'bias_filler { type: "gaussian" std: 1 } }', [(2, 3, 2)], caffe.TRAIN),
    ('type: "Scale" scale_param { axis: 1 bias_term: true }', [(2, 3, 4, 2), (3, 4)], caffe.TRAIN),
    ('type: "Scale" scale_param { num_axes: 0 filler { type: "constant" value: 2 } }', [(2, 3)], caffe.TRAIN),
    ('type: "Bias" bias_param { axis: -2 num_axes: 2 filler { type: "gaussian" std: 1 } }', [(2, 3, 4)],
     caffe.TRAIN),
    ('type: "Bias" bias_param { axis: 1 }', [(2, 3, 4), (3,)], caffe.TRAIN),
]


@pytest.mark.parametrize("layer,shapes,phase", GRADCHECK, ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_gradients_numerically(tmp_path, layer, shapes, phase):
    net = make_net(tmp_path, layer, shapes, phase)
    module = net.layers[-1].module.double()
    learnable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(6)
    inputs = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    params = [p.detach().clone().requires_grad_() for p in learnable.values()]

    def f(*args):
        state = dict(zip(learnable, args[len(inputs):]))
        return functional_call(module, state, tuple(args[:len(inputs)]))[0]

    assert torch.autograd.gradcheck(f, tuple(inputs + params), eps=1e-6, atol=1e-6)
