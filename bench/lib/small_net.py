"""The small net (2 convolutions, 2 inner products, 3x32x32 inputs, 10 regressed values) and its
LMDB of random records: what bench_distributed.py trains under torchrun and gpu_proof.py on
several GPUs."""
import os

import numpy as np

from caffe.formats.db.writers import LMDBWriter
from caffe.proto import caffe_pb2

NET = """name: "small"
layer {{ name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{lmdb}" batch_size: {batch} backend: LMDB label_num: 10 }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 32 kernel_size: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param {{ num_output: 32 kernel_size: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
  inner_product_param {{ num_output: 64 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu3" type: "ReLU" bottom: "fc1" top: "fc1" }}
layer {{ name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "fc2" bottom: "label" top: "loss" }}
"""
SOLVER = """net: "{net}" base_lr: 0.001 momentum: 0.9 weight_decay: 0.0005 lr_policy: "fixed"
max_iter: {iters} iter_size: {iter_size} display: 5 random_seed: 1 solver_mode: CPU snapshot_after_train: false
"""


def make_lmdb(path, records):
    """An LMDB at `path` of `records` random 3x32x32 images with 10 float labels each."""
    rng = np.random.default_rng(0)
    with LMDBWriter(path) as db:
        for i in range(records):
            datum = caffe_pb2.Datum(channels=3, height=32, width=32,
                                    data=rng.integers(0, 256, (3, 32, 32), np.uint8).tobytes())
            datum.float_data.extend(rng.normal(size=10).astype(np.float32))
            db.put(f"{i:06d}", datum.SerializeToString())


def write_solver(folder, batch, iters, iter_size):
    """The small net reading folder/lmdb at `batch` (net.prototxt) and a CPU solver of `iters`
    iterations of `iter_size` (solver_<iter_size>.prototxt) in `folder`; the solver's path."""
    net = os.path.join(folder, "net.prototxt")
    with open(net, "w") as f:
        f.write(NET.format(lmdb=os.path.join(folder, "lmdb"), batch=batch))
    path = os.path.join(folder, f"solver_{iter_size}.prototxt")
    with open(path, "w") as f:
        f.write(SOLVER.format(net=net, iters=iters, iter_size=iter_size))
    return path
