"""caffe.Classifier and caffe.Detector: pycaffe's wrappers, against what the real pycaffe predicted
for the same net, weights and images (tests/data/pycaffe, see its README)."""
import os
import sys

import numpy as np
import pytest

import caffe
from tests.engine.conftest import PYCAFFE_DATA, PYCAFFE_EXPECTED
import io_cases  # tests/data/pycaffe, on sys.path by tests/engine/conftest.py

PROTOTXT = os.path.join(PYCAFFE_DATA, "classifier_net.prototxt")
WEIGHTS = os.path.join(PYCAFFE_DATA, "classifier_net.caffemodel")


def test_classifier_predicts_as_pycaffe():
    settings, images = io_cases.classifier_case()
    classifier = caffe.Classifier(PROTOTXT, WEIGHTS, **settings)
    assert isinstance(classifier, caffe.Net) and classifier.phase == caffe.TEST
    over = classifier.predict(images)
    assert over.shape == (3, 5)
    np.testing.assert_allclose(over, PYCAFFE_EXPECTED["classifier/oversample"], rtol=1e-5, atol=1e-7)
    center = classifier.predict(images, oversample=False)
    np.testing.assert_allclose(center, PYCAFFE_EXPECTED["classifier/center"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(over, center)


def test_classifier_centre_crop_is_the_net_on_the_transformed_crop():
    classifier = caffe.Classifier(PROTOTXT, WEIGHTS, image_dims=(8, 8))
    image = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
    x = image.transpose(2, 0, 1)[None].repeat(4, axis=0)
    want = classifier.forward(data=x)["prob"][0].copy()
    np.testing.assert_allclose(classifier.predict([image], oversample=False)[0], want, rtol=1e-6)


def test_detector_windows_as_pycaffe():
    settings, name, _, windows = io_cases.detector_case()
    detector = caffe.Detector(PROTOTXT, WEIGHTS, **settings)
    found = detector.detect_windows([(os.path.join(PYCAFFE_DATA, name), windows)])
    assert [d["window"] for d in found] == windows
    assert {d["filename"] for d in found} == {os.path.join(PYCAFFE_DATA, name)}
    np.testing.assert_allclose(np.array([d["prediction"] for d in found]), PYCAFFE_EXPECTED["detector/windows"],
                               rtol=1e-5, atol=1e-7)


def test_detector_context_pad_fills_outside_with_the_mean():
    settings, name, pixels, _ = io_cases.detector_case()
    detector = caffe.Detector(PROTOTXT, WEIGHTS, context_pad=2, **settings)
    image = caffe.io.load_image(os.path.join(PYCAFFE_DATA, name))
    crop = detector.crop(image, np.array([0, 0, 6, 6]))
    assert crop.shape == (8, 8, 3)
    # the context above and left of the window lies outside the image: the mean in image space,
    # i.e. mean (given in BGR after raw_scale) channel-swapped back and divided by raw_scale
    np.testing.assert_allclose(crop[0, 0], settings["mean"][[2, 1, 0]] / 2.0)
    inside = detector.crop(image, np.array([4, 4, 10, 12]))
    assert inside.shape == (8, 8, 3) and np.all(inside >= 0) and np.all(inside <= 1)
    assert len(detector.detect_windows([(os.path.join(PYCAFFE_DATA, name), [(0, 0, 6, 6)])])) == 1


def test_detector_selective_search(monkeypatch, tmp_path):
    settings, name, _, windows = io_cases.detector_case()
    detector = caffe.Detector(PROTOTXT, WEIGHTS, **settings)
    monkeypatch.setitem(sys.modules, "selective_search_ijcv_with_python", None)
    with pytest.raises(ImportError, match="needs the selective_search_ijcv_with_python module"):
        detector.detect_selective_search([os.path.join(PYCAFFE_DATA, name)])

    class FakeSelectiveSearch:  # the module's interface: windows per absolute image path
        @staticmethod
        def get_windows(fnames, cmd):
            assert cmd == "selective_search_rcnn" and all(os.path.isabs(f) for f in fnames)
            return [windows for _ in fnames]
    monkeypatch.setitem(sys.modules, "selective_search_ijcv_with_python", FakeSelectiveSearch)
    monkeypatch.chdir(PYCAFFE_DATA)
    found = detector.detect_selective_search([name])
    np.testing.assert_allclose(np.array([d["prediction"] for d in found]), PYCAFFE_EXPECTED["detector/windows"],
                               rtol=1e-5, atol=1e-7)
