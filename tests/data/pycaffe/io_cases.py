"""caffe.io inputs whose outputs the real pycaffe computed (make_expected.py) and ours must equal
(tests/engine/test_io.py): {name: (function name, positional arguments)} built from seeded arrays."""
import numpy as np


def _rng(seed):
    return np.random.default_rng(seed)


def datum_inputs():
    """{name: (array, label)} for array_to_datum."""
    return {
        "uint8_labelled": (_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8), 7),
        "float32": (_rng(1).standard_normal((2, 3, 4)).astype(np.float32), None),
        "float64": (_rng(2).standard_normal((1, 5, 3)), 2),
        "int64_large": (_rng(3).integers(-2**40, 2**40, (1, 2, 3)), None),
        "float16": (_rng(4).standard_normal((2, 2, 2)).astype(np.float16), 0),
    }


def blobproto_inputs():
    """{name: (array, diff or None)} for array_to_blobproto."""
    return {
        "4d_float64": (_rng(5).standard_normal((1, 3, 4, 5)), None),
        "2d_with_diff": (_rng(6).standard_normal((3, 7)).astype(np.float32),
                         _rng(7).standard_normal((3, 7))),
        "1d_int": (np.arange(6), None),
        "5d": (_rng(8).uniform(size=(1, 2, 1, 3, 2)), None),
    }


def resize_inputs():
    """{name: (image, new_dims, interp_order)} for resize_image: shrinking (anti-aliased) and
    growing, 1, 3 and 4 channels (4: scipy's zoom), orders 0, 1 and 3, a constant image."""
    up = _rng(9).uniform(size=(5, 7, 3)).astype(np.float32)
    down = _rng(10).uniform(-2, 3, size=(20, 16, 3)).astype(np.float32)
    grey = _rng(11).uniform(size=(4, 6, 1)).astype(np.float32)
    four = _rng(12).uniform(size=(6, 5, 4)).astype(np.float32)
    cases = {}
    for order in (0, 1, 3):
        cases[f"up_{order}"] = (up, (11, 9), order)
        cases[f"down_{order}"] = (down, (7, 5), order)
        cases[f"grey_mixed_{order}"] = (grey, (9, 3), order)
        cases[f"four_{order}"] = (four, (9, 12), order)
    cases["float64_up"] = (up.astype(np.float64), (8, 8), 1)
    cases["constant"] = (np.full((4, 4, 3), 0.25, np.float32), (6, 2), 1)
    return cases


def oversample_inputs():
    """(images, crop_dims) for oversample: two 9 x 8 x 3 images, 5 x 4 crops (odd centre)."""
    return list(_rng(13).uniform(size=(2, 9, 8, 3)).astype(np.float32)), (5, 4)


def transformer_case():
    """(input shape, settings, image) for a Transformer with every step set and a resize."""
    settings = {"transpose": (2, 0, 1), "channel_swap": (2, 1, 0), "raw_scale": 255.0,
                "mean": np.array([104.0, 117.0, 123.0]), "input_scale": 0.017}
    return (1, 3, 6, 5), settings, _rng(14).uniform(size=(9, 7, 3)).astype(np.float32)


def transformer_full_mean_case():
    """A (C, H, W) mean of another size than the input (pycaffe resizes it)."""
    return (1, 3, 4, 4), _rng(15).uniform(50, 150, size=(3, 7, 6))


def image_files():
    """{file name: (H x W [x C] array)} written by make_expected.py with OpenCV: 8-bit RGB, grey,
    RGBA (partly transparent), 16-bit RGB and grey, JPEG."""
    r = _rng(16)
    rgba = r.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0
    return {
        "rgb8.png": r.integers(0, 256, (5, 6, 3), dtype=np.uint8),
        "grey8.png": r.integers(0, 256, (5, 6), dtype=np.uint8),
        "rgba8.png": rgba,
        "rgb16.png": r.integers(0, 65536, (4, 3, 3), dtype=np.uint16),
        "grey16.png": r.integers(0, 65536, (4, 3), dtype=np.uint16),
        detector_case()[1]: detector_case()[2],
        "smooth8.jpg": np.repeat(np.repeat(r.integers(0, 256, (4, 5, 3), dtype=np.uint8), 4, 0), 4, 1),
    }


def classifier_case():
    """(Classifier keyword settings, images) for classifier_net.prototxt: images of two sizes,
    resized to 10 x 12, cropped to the 8 x 8 input."""
    settings = {"image_dims": (10, 12), "mean": np.array([0.2, 0.5, 0.4]), "raw_scale": 2.0,
                "channel_swap": (2, 1, 0), "input_scale": 1.5}
    r = _rng(17)
    return settings, [r.uniform(size=(7, 9, 3)).astype(np.float32), r.uniform(size=(12, 10, 3)).astype(np.float32),
                      r.uniform(size=(10, 12, 3)).astype(np.float32)]


def detector_case():
    """(Detector keyword settings, image file name, its RGB pixels, windows (ymin, xmin, ymax, xmax))."""
    settings = {"mean": np.array([0.3, 0.5, 0.4]), "raw_scale": 2.0, "channel_swap": (2, 1, 0)}
    pixels = _rng(18).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    return settings, "detector_image.png", pixels, [(0, 0, 8, 8), (2, 3, 14, 18), (5, 1, 16, 11)]
