"""The committed generated module matches caffe.proto; the schema is Caffe's wire format."""
import os
import shutil
import subprocess

from caffe.proto import caffe_pb2

PROTO_DIR = os.path.dirname(caffe_pb2.__file__)


def test_generated_module_matches_proto(tmp_path):
    """Regenerating with the command in caffe.proto's header reproduces the committed module."""
    protoc = shutil.which("protoc")
    assert protoc, "protoc is needed (Debian: apt-get install protobuf-compiler; .ci/run installs it)"
    subprocess.run([protoc, f"--proto_path={PROTO_DIR}", f"--python_out={tmp_path}", "caffe.proto"], check=True)
    with open(os.path.join(PROTO_DIR, "caffe_pb2.py"), "rb") as f:
        committed = f.read()
    assert (tmp_path / "caffe_pb2.py").read_bytes() == committed, \
        "caffe_pb2.py is stale: regenerate it (see caffe.proto's header)"


def test_wire_compatible_field_numbers():
    """A few of BVLC Caffe's field numbers, and the DeepPose extension."""
    def number(msg, field):
        return msg.DESCRIPTOR.fields_by_name[field].number

    assert number(caffe_pb2.NetParameter, "layer") == 100
    assert number(caffe_pb2.LayerParameter, "convolution_param") == 106
    assert number(caffe_pb2.LayerParameter, "batch_norm_param") == 139
    assert number(caffe_pb2.BlobProto, "shape") == 7
    assert number(caffe_pb2.Datum, "float_data") == 6
    assert number(caffe_pb2.SolverParameter, "type") == 40
    assert number(caffe_pb2.SolverState, "history") == 3
    assert number(caffe_pb2.DataParameter, "label_num") == 11
