"""Top shapes come from the layers' own shape rules, not from a forward on PyTorch's meta device
(whose first use imports torch._dynamo, seconds per process): on every golden layer net they equal
what a meta forward gives and what the real forward makes, and a net is built, run forward and
backward, and reshaped without importing torch._dynamo."""
import os
import subprocess
import sys
import textwrap

import pytest

import caffe
from caffe.layer_modules.base import LayerModule
from tests.conftest import GOLDEN
from tests.engine.conftest import golden_index

LAYERS = golden_index("layers")
# forwards with effects (files, recurrent state, the user's code) or data-dependent top shapes
NO_META_FORWARD = {"Python", "Filter", "LSTM", "RNN", "HDF5Output"}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_top_shapes_match_meta_and_real_forward(case, monkeypatch):
    monkeypatch.chdir(os.path.join(GOLDEN, "layers"))
    net = caffe.Net(case + ".prototxt", caffe.TEST if LAYERS[case]["phase"] == "TEST" else caffe.TRAIN)
    built = {name: tuple(blob.shape) for name, blob in net.blobs.items()}
    for layer, wiring in zip(net.module.layers, net.module.wiring):
        if wiring.bottoms and not layer.host_source and layer.type_name not in NO_META_FORWARD:
            shapes = [net.blobs[b].shape for b in wiring.bottoms]
            assert layer.top_shapes(shapes) == LayerModule.top_shapes(layer, shapes), layer.type_name
    net.forward()
    if LAYERS[case]["type"] != "Filter":  # its tops keep the items the (here all-zero) selector picks
        assert {name: tuple(blob.shape) for name, blob in net.blobs.items()} == built


NET = """
name: "tiny"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "lrn" type: "LRN" bottom: "conv" top: "lrn" lrn_param { local_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "lrn" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "cat" type: "Concat" bottom: "pool" bottom: "pool" top: "cat" }
layer { name: "drop" type: "Dropout" bottom: "cat" top: "cat" }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
"""


def test_building_and_running_a_net_does_not_import_dynamo(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    script = textwrap.dedent("""
        import sys
        import caffe
        net = caffe.Net("net.prototxt", caffe.TRAIN)
        net.forward_backward()
        net.blobs["x"].reshape(3, 3, 9, 9)
        net.blobs["y"].reshape(3, 4)
        net.reshape()
        net.forward_backward()
        print(net.blobs["fc"].shape, "torch._dynamo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False", out.stdout
    assert "(3, 4)" in out.stdout
