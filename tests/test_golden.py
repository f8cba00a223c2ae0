"""Conformance with the real Caffe: every case of tests/golden (see its README.md) passes.

One test per case, no per-case code; tolerances as the set's README gives them.
"""
import json
import os

import numpy as np
import pytest

import caffe
from conftest import GOLDEN, RTOL, ATOL, compare

EXACT_TYPES = {"ArgMax", "Accuracy", "Threshold"}
# layers whose TRAIN output depends on Caffe's RNG: checked by their rule, not by value
STOCHASTIC = {"Dropout"}

LAYERS = json.load(open(os.path.join(GOLDEN, "layers", "index.json")))


def check_dropout(case, arrays, net):
    """Caffe's rule for Dropout TRAIN: each top is 0 or x / (1 - ratio); the gradient uses the same mask."""
    x, top = arrays["bottom_0"], net.blobs["top_0"].data
    kept = top != 0
    ratio = net.layers[-1].module.ratio
    np.testing.assert_allclose(top[kept], x[kept] / (1 - ratio), rtol=RTOL, atol=ATOL)
    assert 0 < kept.mean() < 1
    return kept / (1 - ratio)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer(case):
    info = LAYERS[case]
    arrays = np.load(os.path.join(GOLDEN, "layers", case + ".npz"))
    phase = caffe.TEST if info["phase"] == "TEST" else caffe.TRAIN
    net = caffe.Net(os.path.join(GOLDEN, "layers", case + ".prototxt"), phase)
    bottoms = sorted(k for k in arrays.files if k.startswith("bottom_"))
    for k in bottoms:
        net.blobs[k].data[...] = arrays[k]
    layer_blobs = net.params.get("layer", [])
    for i, blob in enumerate(layer_blobs):
        blob.data[...] = arrays[f"param_{i}"]
    net.forward()
    stochastic = info["type"] in STOCHASTIC and phase == caffe.TRAIN
    mask = check_dropout(case, arrays, net) if stochastic else None
    exact = info["type"] in EXACT_TYPES
    for k in sorted(k for k in arrays.files if k.startswith("top_")):
        if not stochastic:
            compare("layers", case, k, net.blobs[k].data, arrays[k], exact)
    for i, blob in enumerate(layer_blobs):
        if f"param_after_{i}" in arrays.files:
            compare("layers", case, f"param_after_{i}", blob.data, arrays[f"param_after_{i}"])
    if not info["backward"]:
        return
    for k in sorted(k for k in arrays.files if k.startswith("topdiff_")):
        net.blobs["top_" + k.split("_")[1]].diff[...] = arrays[k]
    for k in bottoms:
        net.blobs[k].diff[...] = 0
    for blob in layer_blobs:
        blob.diff[...] = 0
    net.backward()
    for k in sorted(k for k in arrays.files if k.startswith("bottomdiff_")):
        ref = arrays["topdiff_0"] * mask if stochastic else arrays[k]
        compare("layers", case, k, net.blobs["bottom_" + k.split("_")[1]].diff, ref)
    for i, blob in enumerate(layer_blobs):
        compare("layers", case, f"paramdiff_{i}", blob.diff, arrays[f"paramdiff_{i}"])
