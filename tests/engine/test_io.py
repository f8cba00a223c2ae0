"""pycaffe's caffe.io: Transformer, image loading/resizing, Datum and BlobProto conversions."""
import os

import cv2
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from tests.engine.conftest import PYCAFFE_DATA, PYCAFFE_EXPECTED


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
    assert list(blob.shape.dim) == [1, 3, 4, 5] and not blob.HasField("num")  # pycaffe's N-d form
    back = caffe.io.blobproto_to_array(caffe_pb2.BlobProto.FromString(blob.SerializeToString()))
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, mean.astype(np.float32))
    vec = caffe.io.arraylist_to_blobprotovector_str([mean, mean[0, 0]])
    assert [a.shape for a in caffe.io.blobprotovector_str_to_arraylist(vec)] == [(1, 3, 4, 5), (4, 5)]


# ---- parity with the real pycaffe: tests/data/pycaffe/expected.npz (see its README) ----

import io_cases  # noqa: E402 (tests/data/pycaffe: on sys.path by tests/engine/conftest.py)


def assert_identical(key, got):
    """`got` has pycaffe's dtype, shape and values, bit for bit (messages: their bytes)."""
    if isinstance(got, bytes):
        got = np.frombuffer(got, np.uint8)
    want = PYCAFFE_EXPECTED[key]
    assert (got.dtype, got.shape) == (want.dtype, want.shape), key
    assert got.tobytes() == want.tobytes(), f"{key}: max difference {np.abs(got - want).max()}"


@pytest.mark.parametrize("name", sorted(io_cases.datum_inputs()))
def test_datum_conversions_are_pycaffes(name):
    arr, label = io_cases.datum_inputs()[name]
    datum = caffe.io.array_to_datum(arr, label)
    assert_identical(f"array_to_datum/{name}", datum.SerializeToString())
    assert_identical(f"datum_to_array/{name}", caffe.io.datum_to_array(datum))


@pytest.mark.parametrize("name", sorted(io_cases.blobproto_inputs()))
def test_blobproto_conversions_are_pycaffes(name):
    arr, diff = io_cases.blobproto_inputs()[name]
    blob = caffe.io.array_to_blobproto(arr, diff)
    assert_identical(f"array_to_blobproto/{name}", blob.SerializeToString())
    assert_identical(f"blobproto_to_array/{name}", caffe.io.blobproto_to_array(blob))
    if diff is not None:
        assert_identical(f"blobproto_to_array_diff/{name}", caffe.io.blobproto_to_array(blob, return_diff=True))


def test_datum_label_must_be_an_integer_as_in_pycaffe():
    with pytest.raises(TypeError):
        caffe.io.array_to_datum(np.zeros((1, 2, 2), np.uint8), label=1.5)


@pytest.mark.parametrize("name", sorted(io_cases.resize_inputs()))
def test_resize_image_is_pycaffes(name):
    im, dims, order = io_cases.resize_inputs()[name]
    assert_identical(f"resize_image/{name}", caffe.io.resize_image(im, dims, order))


def test_oversample_is_pycaffes():
    images, crop_dims = io_cases.oversample_inputs()
    crops = caffe.io.oversample(images, crop_dims)
    assert_identical("oversample", crops)
    # the 6th crop mirrors the 1st (top-left corner)
    np.testing.assert_array_equal(crops[5], images[0][:5, :4][:, ::-1])


def test_transformer_is_pycaffes():
    shape, settings, image = io_cases.transformer_case()
    t = caffe.io.Transformer({"data": shape})
    for key, value in settings.items():
        getattr(t, "set_" + key)("data", value)
    kept = image.copy()
    x = t.preprocess("data", image)
    np.testing.assert_array_equal(image, kept)  # the caller's image is not modified
    assert_identical("transformer/preprocess", x)
    assert_identical("transformer/deprocess", t.deprocess("data", x))
    shape, mean = io_cases.transformer_full_mean_case()
    t = caffe.io.Transformer({"data": shape})
    t.set_mean("data", mean)
    assert_identical("transformer/resized_mean", t.mean["data"])


@pytest.mark.parametrize("name", sorted(io_cases.image_files()))
def test_load_image_is_pycaffes(name):
    path = os.path.join(PYCAFFE_DATA, name)
    assert_identical(f"load_image/{name}/color", caffe.io.load_image(path))
    assert_identical(f"load_image/{name}/grey", caffe.io.load_image(path, color=False))
