"""The stage-1 nets, weights and records the benches make from the committed ones: the deploy and
train nets with Input layers at a batch size and a CPU solver (write_nets), random weights, the
FLOPs of a forward, and an LMDB of random records with the train net and a solver reading it
(make_lmdb, write_solver)."""
import os

import numpy as np

from caffe.formats.db.writers import LMDBWriter
from caffe.formats.protoio import array_to_blobproto, read_prototxt, write_binary_proto, write_prototxt
from caffe.proto import caffe_pb2

from .stage1_shape import DEPLOY, LABELS, ROOT, SIZE, TRAIN_NET

SOLVER = os.path.join(ROOT, "models", "deeppose", "deeppose_solver.prototxt")


def write_nets(folder, batch):
    """The deploy net and the train net (TRAIN phase, Input layers for data and label) at `batch`,
    and a CPU solver for the train net; returns their paths."""
    deploy = read_prototxt(DEPLOY, caffe_pb2.NetParameter)
    deploy.layer[0].input_param.shape[0].dim[0] = batch
    train = read_prototxt(TRAIN_NET, caffe_pb2.NetParameter)
    keep = [lp for lp in train.layer if lp.type != "Data"]
    del train.layer[:]
    for name, shape in (("data", (batch, 3, SIZE, SIZE)), ("label", (batch, LABELS))):
        lp = train.layer.add(name=name, type="Input", top=[name])
        lp.input_param.shape.add(dim=shape)
    train.layer.extend(keep)
    solver = read_prototxt(SOLVER, caffe_pb2.SolverParameter)
    solver.solver_mode, solver.display, solver.snapshot = caffe_pb2.SolverParameter.CPU, 0, 0
    solver.snapshot_after_train = False
    for field in ("test_iter", "test_interval"):
        solver.ClearField(field)
    paths = {k: os.path.join(folder, f"{k}_{batch}.prototxt") for k in ("deploy", "train", "solver")}
    solver.net = paths["train"]
    for key, msg in (("deploy", deploy), ("train", train), ("solver", solver)):
        write_prototxt(paths[key], msg)
    return paths


def flops_per_image(net):
    """Multiply-adds x 2 of the convolution and inner-product layers, from the blob shapes."""
    total = 0
    for name, blobs in net.params.items():
        kind = net.layers[net._layer_names.index(name)].type
        top = net.blobs[net.top_names[name][0]].shape
        if kind == "Convolution":
            total += 2 * blobs[0].count * int(np.prod(top[2:]))
        elif kind == "InnerProduct":
            total += 2 * blobs[0].count
    return total


def random_weights(net, seed=0):
    """Fill the params with random values (1-axis ones in [0.5, 1), others N(0, 0.02)); returns the generator."""
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.uniform(0.5, 1.0, b.shape) if b.data.ndim <= 1 else rng.normal(0, 0.02, b.shape)
    return rng


def make_lmdb(folder, records):
    """Random stage-1 BGR records and labels, as convert_imageset_multilabel writes them, and their mean."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (records, 3, SIZE, SIZE), dtype=np.uint8)
    labels = rng.normal(0, 50, (records, LABELS)).astype(np.float32)
    with LMDBWriter(os.path.join(folder, "train_data_lmdb")) as db:
        for i in range(records):
            datum = caffe_pb2.Datum(channels=3, height=SIZE, width=SIZE, data=images[i].tobytes())
            datum.float_data.extend(labels[i])
            db.put(f"{i:08d}_img{i}.png", datum.SerializeToString())
    mean = images.mean(axis=0, dtype=np.float64)[None]
    write_binary_proto(os.path.join(folder, "train_mean.binaryproto"), array_to_blobproto(mean, legacy=True))
    return images, labels, mean.astype(np.float32)


def write_solver(folder, batch, iters):
    """The committed train net with its paths in `folder`, TRAIN phase only, and a solver timing it."""
    net = read_prototxt(TRAIN_NET, caffe_pb2.NetParameter)
    keep = [layer for layer in net.layer if not any(r.phase == caffe_pb2.TEST for r in layer.include)]
    del net.layer[:]
    net.layer.extend(keep)
    data = net.layer[0]
    data.data_param.source = os.path.join(folder, "train_data_lmdb")
    data.data_param.batch_size = batch
    data.transform_param.mean_file = os.path.join(folder, "train_mean.binaryproto")
    write_prototxt(os.path.join(folder, "train.prototxt"), net)
    solver = read_prototxt(SOLVER, caffe_pb2.SolverParameter)
    solver.net = os.path.join(folder, "train.prototxt")
    solver.max_iter, solver.display, solver.solver_mode = iters, 2, caffe_pb2.SolverParameter.CPU
    solver.snapshot, solver.snapshot_after_train = 0, False
    solver.snapshot_prefix = os.path.join(folder, "snapshot")  # `caffe train` locks it even without snapshots
    solver.ClearField("test_iter")
    solver.ClearField("test_interval")
    path = os.path.join(folder, "solver.prototxt")
    write_prototxt(path, solver)
    return path
