"""OpenCV's Caffe importer (cv2.dnn) as an independent reader of the caffemodels we write, and
ours of caffemodels written by the real Caffe."""
import os

import cv2
import numpy as np
import pytest

import caffe
from tests.conftest import DATA, GOLDEN, ROOT

NETS = {
    "stage1": os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt"),
    "stage2": os.path.join(ROOT, "models", "deeppose_refine", "deeppose_refine.prototxt"),
    "every_layer": os.path.join(DATA, "opencv_layers.prototxt"),
}


def randomize(net, rng):
    """Random weights that keep activations in a sane range; positive variances and scale factors."""
    for name, blobs in net.params.items():
        kind = net.layers[net._layer_names.index(name)].type
        for i, blob in enumerate(blobs):
            if kind == "BatchNorm":
                blob.data[...] = rng.uniform(0.5, 2.0, blob.shape) if i else rng.normal(0, 0.1, blob.shape)
            elif kind in ("Scale", "PReLU") and i == 0:
                blob.data[...] = rng.uniform(0.5, 1.5, blob.shape)
            else:
                fan_in = max(1, blob.count // blob.shape[0]) if blob.shape else 1
                blob.data[...] = rng.normal(0, 1.0 / np.sqrt(fan_in), blob.shape)


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(NETS))
def test_opencv_reads_our_caffemodel(which, tmp_path):
    prototxt = NETS[which]
    net = caffe.Net(prototxt, caffe.TEST)
    rng = np.random.default_rng(0)
    randomize(net, rng)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    cv_net = cv2.dnn.readNetFromCaffe(prototxt, weights)
    x = rng.uniform(-1, 1, net.blobs[net.inputs[0]].shape).astype(np.float32)
    ours = net.forward(**{net.inputs[0]: x})
    cv_net.setInput(x)
    names = list(ours)
    theirs = cv_net.forward(names)
    for name, value in zip(names, theirs):
        assert rel_err(ours[name], value.reshape(ours[name].shape)) < 1e-4, name


def test_caffe_written_caffemodel_runs_like_caffe_and_opencv():
    """tiny.caffemodel was written by the real Caffe's net.save."""
    files = os.path.join(GOLDEN, "files")
    io = np.load(os.path.join(files, "tiny_io.npz"))
    net = caffe.Net(os.path.join(files, "tiny.prototxt"), os.path.join(files, "tiny.caffemodel"), caffe.TEST)
    out = net.forward(data=io["input"])
    name = net.outputs[0]
    assert rel_err(out[name], io["output"]) < 1e-4
    cv_net = cv2.dnn.readNetFromCaffe(os.path.join(files, "tiny.prototxt"), os.path.join(files, "tiny.caffemodel"))
    cv_net.setInput(io["input"])
    assert rel_err(out[name], cv_net.forward().reshape(out[name].shape)) < 1e-4
