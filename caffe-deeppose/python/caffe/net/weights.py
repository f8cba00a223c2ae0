"""A net's weights in files (Caffe's CopyTrainedLayersFrom and ToProto): copied in by layer name
from a .caffemodel (binary or HDF5), shapes checked as Caffe checks them; written out with the
net's layers."""
import os

import numpy as np
import torch

from .. import glog
from ..formats import hdf5
from ..formats.caffemodel import read_weights, write_caffemodel
from ..formats.protoio import array_to_blobproto
from ..proto import caffe_pb2
from .errors import NetError


def copy_blob(param, src, legacy, values, what, hint=""):
    """Copy `values` of shape `src` into the tensor `param` if the shapes match as in Caffe's
    Blob::ShapeEquals (a `legacy` 4-axis num/channels/height/width shape matches with leading 1s)."""
    target = tuple(param.shape)
    match = (tuple(src) == (1,) * (4 - len(target)) + target) if legacy and len(target) <= 4 else tuple(src) == target
    if not match or values.size != param.numel():
        raise NetError(f"{what}: shape mismatch, source {tuple(src)} ({values.size} values), target {target}.{hint}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(values).reshape(target)))


def copy_from(net, path):
    """Copy weights from a .caffemodel (binary, or HDF5 as `load_hdf5`) by layer name, as Caffe's
    CopyTrainedLayersFrom (layers not in this net are ignored, and logged). Stricter than Caffe:
    a file that sets no layer with blobs of this net is an error, and each such layer it leaves
    alone gets a warning."""
    path = os.fspath(path)
    mine = {name: view for name, view in zip(net._layer_names, net.layers)}
    if hdf5.is_hdf5(path):
        copied = load_hdf5(net, path)
    else:
        copied = set()
        for name, blobs in read_weights(path):
            view = mine.get(name)
            if view is None:
                glog.info("net.cpp:746", f"Ignoring source layer {name}")
                continue
            copied.add(name)
            if len(blobs) != len(view.blobs):
                raise NetError(f"{path}: layer {name!r} has {len(blobs)} blobs, the net's "
                               f"{view.type} layer has {len(view.blobs)}")
            for i, ((src, legacy, values), blob) in enumerate(zip(blobs, view.blobs)):
                copy_blob(blob.param, src, legacy, values, f"{path}: cannot copy param {i} of layer {name!r}",
                          " To learn this layer from scratch instead, rename it in the prototxt.")
    with_blobs = [(name, view) for name, view in mine.items() if view.blobs]
    if with_blobs and not copied.intersection(name for name, _ in with_blobs):
        names = ", ".join(repr(name) for name, _ in with_blobs[:5]) + (", ..." if len(with_blobs) > 5 else "")
        raise NetError(f"{path}: sets no layer of net {net.name!r}: no layer of the file is named like a "
                       f"layer with weights here ({names}); is it the weights of another net?")
    for name, view in with_blobs:
        if name not in copied:
            glog.warning("net.cpp", f"{path} has no layer {name!r}: the {len(view.blobs)} blob(s) of this "
                                    f"{view.type} layer keep their initial (filler) values")


def load_hdf5(net, path):
    """Copy weights from an HDF5 caffemodel (Caffe's CopyTrainedLayersFromHDF5); returns the
    names of the layers it copied."""
    try:
        return hdf5.load_weights(net, path)
    except hdf5.HDF5Error as e:
        raise NetError(str(e)) from None


def layers_proto(net):
    """The net's NetParameter with its layers as declared (no blobs)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net._param)
    del out.layer[:]
    for lp in net._layer_params:
        layer = out.layer.add()
        layer.CopyFrom(lp)
        del layer.blobs[:]
    return out


def to_proto(net):
    """The net with its weights as a NetParameter."""
    out = caffe_pb2.NetParameter.FromString(layers_proto(net).SerializeToString())
    for layer, view in zip(out.layer, net.layers):
        for blob in view.blobs:
            layer.blobs.append(array_to_blobproto(blob.param.detach().cpu().numpy()))
    return out


def save(net, path):
    """Write the weights as a binary .caffemodel (Caffe's Net::ToProto), atomically."""
    write_caffemodel(path, layers_proto(net), blobs_of(net))


def blobs_of(net, diff=False):
    """Each layer's blobs as (data, diff or None) arrays sharing the net's memory."""
    return [[(b.data, b.diff) if diff else (b.param.detach().cpu().numpy(), None) for b in view.blobs]
            for view in net.layers]
