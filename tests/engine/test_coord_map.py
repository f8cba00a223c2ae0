"""caffe.coord_map: coordinate maps through conv/pool/deconv/crop and the `crop` helper (FCN)."""
import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import coord_map_from_to, crop


def fcn_head(pad=100, pool_stride=2, up_stride=2, up_pad=0):
    """FCN's shape: padded conv, pooling, a learned upsampling, to be cropped back to the input."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 12, 10]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, pad=pad)
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=pool_stride, stride=pool_stride)
    n.score = L.Convolution(n.pool, num_output=2, kernel_size=1)
    n.upscore = L.Deconvolution(n.score, convolution_param=dict(
        num_output=2, kernel_size=2 * up_stride, stride=up_stride, pad=up_pad, bias_term=False))
    return n


def test_map_values():
    """to = a * from + b. Per layer, input -> output: conv 3x3 pad 100: x + 99 (pad - (k-1)/2);
    pool 2: (x - 0.5) / 2; deconv 4 stride 2: 2x + 1.5. Composed: upscore = data + 100."""
    n = fcn_head(pad=100)
    ax, a, b = coord_map_from_to(n.upscore, n.data)
    assert ax == 1 and a == 1 and b == -100
    ax, a, b = coord_map_from_to(n.data, n.upscore)
    assert ax == 1 and a == 1 and b == 100
    ax, a, b = coord_map_from_to(n.pool, n.data)
    assert a == 2 and b == 2 * 0.25 - 99


def test_crop_helper_builds_a_net_that_matches_the_input(tmp_path):
    n = fcn_head(pad=100)
    n.crop = crop(n.upscore, n.data)
    layer = n.to_proto().layer[-1]
    assert layer.type == "Crop" and list(layer.bottom) == ["upscore", "data"]
    assert layer.crop_param.axis == 2 and list(layer.crop_param.offset) == [100]
    path = tmp_path / "fcn.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TEST)
    assert net.blobs["crop"].data.shape[2:] == net.blobs["data"].data.shape[2:]
    assert net.blobs["upscore"].data.shape[2] == 12 + 2 * 100


def test_crop_offset_is_mapped():
    n = fcn_head(pad=100)
    n.crop = L.Crop(n.upscore, n.data, crop_param=dict(axis=2, offset=[5]))
    _, a, b = coord_map_from_to(n.crop, n.data)
    assert a == 1 and b == -100 + 5


def test_refusals():
    n = fcn_head(pool_stride=3, up_stride=2)
    with pytest.raises(AssertionError, match="scale mismatch"):
        crop(n.upscore, n.data)
    n = fcn_head(pad=0, up_pad=5)  # the upsampled map is smaller than the input
    with pytest.raises(AssertionError, match="cannot crop negative offset"):
        crop(n.upscore, n.data)
    n = fcn_head()
    n.ip = L.InnerProduct(n.upscore, num_output=2)
    with pytest.raises(RuntimeError, match="connected by spatial layers"):
        coord_map_from_to(n.ip, n.data)
    n.legacy = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=3, kernel_size=3)
    with pytest.raises(AssertionError, match="legacy _h/_w"):
        coord_map_from_to(n.legacy, n.data)


def test_global_pooling_has_no_map():
    n = fcn_head()
    n.gp = L.Pooling(n.upscore, pool=P.Pooling.AVE, global_pooling=True)
    with pytest.raises(RuntimeError):
        coord_map_from_to(n.gp, n.data)


def test_anisotropic_dilated():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=[3, 5], stride=[1, 2], pad=[0, 1], dilation=2)
    ax, a, b = coord_map_from_to(n.conv, n.data)
    # input -> conv: (x + pad - (k_eff - 1) / 2) / stride with k_eff 5 and 9; the map conv -> input
    # is its inverse: a = stride, b = (k_eff - 1) / 2 - pad
    np.testing.assert_allclose(a, [1, 2])
    np.testing.assert_allclose(b, [2, 3])
