"""caffe.NetSpec / caffe.layers / caffe.params / caffe.to_proto: the NetParameter pycaffe writes."""
import os

import pytest
from google.protobuf import text_format

import caffe
from caffe import layers as L, params as P
from caffe.proto import caffe_pb2
from tests.engine.conftest import PYCAFFE_DATA, PYCAFFE_EXPECTED
import net_specs  # tests/data/pycaffe, on sys.path by tests/engine/conftest.py


def test_names_are_pycaffes():
    import caffe.net_spec
    assert caffe.layers is caffe.net_spec.layers and caffe.params is caffe.net_spec.params
    assert caffe.NetSpec is caffe.net_spec.NetSpec and caffe.to_proto is caffe.net_spec.to_proto
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX and P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM


@pytest.mark.parametrize("name", sorted(net_specs.CASES))
def test_spec_writes_pycaffes_message_and_text(name):
    """The real pycaffe wrote the same message (bytes) and the same text (`str()`, byte for byte),
    which parses to our message."""
    ours = net_specs.CASES[name]()
    assert ours.SerializeToString(deterministic=True) == PYCAFFE_EXPECTED[f"net_spec/{name}"].tobytes()
    with open(os.path.join(PYCAFFE_DATA, f"net_spec_{name}.prototxt"), encoding="utf-8") as f:
        text = f.read()
    assert str(ours) == text
    assert text_format.Parse(text, caffe_pb2.NetParameter()) == ours


@pytest.mark.parametrize("name", ["lenet", "anon", "multi_top", "unnamed_middle"])
def test_round_trip_through_caffe_net(name, tmp_path):
    """spec -> prototxt -> caffe.Net builds it with the layers and blobs written."""
    proto = net_specs.CASES[name]()
    path = tmp_path / "net.prototxt"
    path.write_text(str(proto))
    net = caffe.Net(str(path), caffe.TEST)
    expected_layers = [l.name for l in proto.layer
                       if not any(r.HasField("phase") and r.phase != caffe.TEST for r in l.include)]
    assert list(net._layer_names) == expected_layers
    tops = {t for l in proto.layer if l.name in expected_layers for t in l.top}
    assert tops <= set(net.blobs)
    net.forward()
    assert text_format.Parse(path.read_text(), caffe_pb2.NetParameter()) == proto


def test_in_place_multi_top_and_auto_names():
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[1, 2]), dict(dim=[1])], ntop=2)
    n.relu = L.ReLU(n.data, in_place=True)
    hidden = L.InnerProduct(n.relu, num_output=3)
    n.out = L.Sigmoid(L.InnerProduct(hidden, num_output=2))
    L.Silence(n.label, ntop=0)  # not assigned: not written
    layers = n.to_proto().layer
    assert [(l.name, list(l.bottom), list(l.top)) for l in layers] == [
        ("data", [], ["data", "label"]),
        ("relu", ["data"], ["data"]),
        ("InnerProduct1", ["data"], ["InnerProduct1"]),
        ("InnerProduct2", ["InnerProduct1"], ["InnerProduct2"]),
        ("out", ["InnerProduct2"], ["out"]),
    ]
    assert isinstance(L.Silence(n.out, ntop=0), caffe.net_spec.Function)
    assert [l.name for l in caffe.to_proto(n.out).layer] == ["DummyData1", "ReLU1", "InnerProduct1",
                                                            "InnerProduct2", "Sigmoid1"]


def test_keywords_go_to_the_type_param_or_the_layer():
    conv = L.Convolution(L.Input(shape=dict(dim=[1, 1, 4, 4])), kernel_size=3, num_output=2,
                         pad=[1], name="c", loss_weight=1, param=[dict(lr_mult=0)],
                         include=dict(phase=caffe.TRAIN))
    layer = conv.to_proto().layer[1]
    assert list(layer.convolution_param.kernel_size) == [3] and layer.convolution_param.num_output == 2
    assert layer.name == "c" and list(layer.loss_weight) == [1.0] and layer.param[0].lr_mult == 0
    assert layer.include[0].phase == caffe.TRAIN


def test_errors():
    data = L.DummyData(ntop=2)
    with pytest.raises(TypeError, match=r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"):
        L.Silence(data, ntop=0)
    with pytest.raises(AttributeError, match="'kernel_sise' is not a field of LayerParameter or convolution_param"):
        L.Convolution(data[0], kernel_sise=3).to_proto()
    with pytest.raises(AttributeError, match=r"'stride' is not a field of LayerParameter \(a Deconvolution layer"):
        L.Deconvolution(data[0], stride=2).to_proto()  # as in pycaffe: Deconvolution's fields go in convolution_param
    with pytest.raises(AttributeError, match="NetSpec has no top named 'nope'"):
        caffe.NetSpec().nope
