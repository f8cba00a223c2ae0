"""The shape of the stage-1 records the benches make, read from the committed nets (never written
by hand): the deploy net's input side and the training Data layers' label_num."""
import os

from caffe.formats.protoio import read_prototxt
from caffe.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
DEPLOY = os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt")
TRAIN_NET = os.path.join(ROOT, "models", "deeppose", "deeppose_train_test.prototxt")


def stage1_shape():
    """(side, labels): stage 1's square input side and its number of regressed values."""
    (rows, cols), = [tuple(l.input_param.shape[0].dim[2:4])
                     for l in read_prototxt(DEPLOY, caffe_pb2.NetParameter).layer if l.type == "Input"]
    labels = {l.data_param.label_num for l in read_prototxt(TRAIN_NET, caffe_pb2.NetParameter).layer
              if l.type == "Data"}
    if rows != cols or len(labels) != 1:
        raise ValueError(f"{DEPLOY}, {TRAIN_NET}: the benches need a square input ({rows}x{cols}) and "
                         f"one label_num ({sorted(labels)})")
    return int(rows), labels.pop()


SIZE, LABELS = stage1_shape()
