"""Snapshots are written from the weights' own memory (no copy of the net's params on the way to
the file), in the bytes protobuf serialises: a .caffemodel as Net::ToProto, a .solverstate as
SolverState with its history."""
import numpy as np

import caffe
from caffe.formats.caffemodel import blob_chunks, caffemodel_chunks, message_chunks
from caffe.formats.protoio import array_to_blobproto
from caffe.net.weights import blobs_of, layers_proto
from caffe.proto import caffe_pb2

NET = """name: "t" input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { lr_mult: 1 } param { lr_mult: 2 }
        include { phase: TEST } convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" }
        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "c" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "r" type: "ReLU" bottom: "ip" top: "ip" }
"""


def joined(chunks):
    return b"".join(chunks.parts)


def test_a_caffemodel_is_the_bytes_of_net_to_proto(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = caffe.Net(str(path), caffe.TEST)
    assert joined(caffemodel_chunks(layers_proto(net), blobs_of(net))) == net.to_proto().SerializeToString()
    expected = net.to_proto()
    for layer, view in zip(expected.layer, net.layers):
        for i, blob in enumerate(view.blobs):
            blob.diff[...] = np.arange(blob.diff.size).reshape(blob.diff.shape)
            layer.blobs[i].CopyFrom(array_to_blobproto(blob.data, blob.diff))
    assert joined(caffemodel_chunks(layers_proto(net), blobs_of(net, diff=True))) == expected.SerializeToString()


def test_a_caffemodel_is_written_from_the_weights_memory(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = caffe.Net(str(path), caffe.TEST)
    weight = net.layers[list(net._layer_names).index("ip")].blobs[0].param
    parts = caffemodel_chunks(layers_proto(net), blobs_of(net)).parts
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), weight.detach().numpy()) for p in parts)


def test_a_solverstate_is_the_bytes_of_solver_state():
    history = [np.random.rand(3, 4).astype(np.float32), np.zeros(0, np.float32), np.float32(3),
               np.random.rand(7)]
    for step in (0, 5):
        head = caffe_pb2.SolverState(iter=12, learned_net="x.caffemodel", current_step=step)
        expected = caffe_pb2.SolverState()
        expected.CopyFrom(head)
        expected.history.extend(array_to_blobproto(h) for h in history)
        assert joined(message_chunks(head, 3, [blob_chunks(h) for h in history])) == expected.SerializeToString()
