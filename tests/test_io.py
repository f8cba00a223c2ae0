"""pycaffe's caffe.io: Transformer, image loading/resizing, Datum and BlobProto conversions."""
import cv2
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2


def test_transformer_round_trip_and_order():
    t = caffe.io.Transformer({"data": (1, 3, 4, 6)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    img = np.random.default_rng(0).uniform(0, 1, (4, 6, 3)).astype(np.float32)
    x = t.preprocess("data", img)
    assert x.shape == (3, 4, 6) and x.dtype == np.float32
    expected = (img.transpose(2, 0, 1)[::-1] * 255 - np.array([10, 20, 30.0])[:, None, None]) * 0.5
    np.testing.assert_allclose(x, expected, rtol=1e-5)
    np.testing.assert_allclose(t.deprocess("data", x), img, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="not one of the net inputs"):
        t.preprocess("nope", img)


def test_transformer_resizes_to_the_input_size():
    t = caffe.io.Transformer({"data": (1, 3, 8, 8)})
    t.set_transpose("data", (2, 0, 1))
    assert t.preprocess("data", np.ones((5, 7, 3), np.float32)).shape == (3, 8, 8)


def test_load_image_colour_and_grey(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = caffe.io.load_image(str(tmp_path / "red.png"))
    assert rgb.shape == (4, 5, 3) and rgb[0, 0, 0] == 1.0 and rgb[0, 0, 2] == 0.0
    grey = caffe.io.load_image(str(tmp_path / "red.png"), color=False)
    assert grey.shape == (4, 5, 1)
    with pytest.raises(IOError, match="missing.png"):
        caffe.io.load_image(str(tmp_path / "missing.png"))


def test_resize_image_many_channels():
    im = np.random.default_rng(1).uniform(size=(6, 6, 5)).astype(np.float32)
    assert caffe.io.resize_image(im, (3, 9)).shape == (3, 9, 5)


def test_datum_and_blobproto_conversions():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    datum = caffe.io.array_to_datum(arr, label=3)
    assert datum.label == 3 and len(datum.data) == 24
    np.testing.assert_array_equal(caffe.io.datum_to_array(datum), arr)
    floats = caffe.io.array_to_datum(arr.astype(np.float32) / 7)
    np.testing.assert_allclose(caffe.io.datum_to_array(floats), arr / 7, rtol=1e-6)
    mean = np.random.default_rng(2).standard_normal((1, 3, 4, 5))
    blob = caffe.io.array_to_blobproto(mean)
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 4, 5)
    back = caffe.io.blobproto_to_array(caffe_pb2.BlobProto.FromString(blob.SerializeToString()))
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, mean.astype(np.float32))
    vec = caffe.io.arraylist_to_blobprotovector_str([mean, mean[0, 0]])
    assert [a.shape for a in caffe.io.blobprotovector_str_to_arraylist(vec)] == [(1, 3, 4, 5), (4, 5)]
