"""extract_features: blobs of a trained net, batch after batch, into databases of Datums (Caffe's tool).

    extract_features PRETRAINED_NET_PARAM FEATURE_EXTRACTION_PROTO BLOB1[,BLOB2,...]
                     DATASET1[,DATASET2,...] NUM_MINI_BATCHES DB_TYPE [CPU/GPU] [DEVICE_ID=0]

The net is built in the TEST phase with the weights of PRETRAINED_NET_PARAM; each of
NUM_MINI_BATCHES forward passes stores every item of each named blob as one Datum (the item's
values in `float_data`, channels/height/width from the blob's legacy shape) under the keys
0000000000, 0000000001, ... of a NEW database per blob (DB_TYPE lmdb or leveldb). Each database is written under a
temporary name and renamed into place when complete, so a failed run leaves none behind.
"""
import os
import sys

import numpy as np

from .. import common, glog
from ..formats.db.backends import DBError, backend_name
from ..formats.db.writers import COMMIT_EVERY, new_db
from ..net import TEST, Net
from ..proto import caffe_pb2
from .flags import parse_or_exit

_CPP = "extract_features.cpp"
USAGE = ("This program takes in a trained network and an input data layer, and then extract features of the "
         "input data produced by the net.\nUsage: extract_features  pretrained_net_param  "
         "feature_extraction_proto_file  extract_feature_blob_name1[,name2,...]  "
         "save_feature_dataset_name1[,name2,...]  num_mini_batches  db_type  [CPU/GPU] [DEVICE_ID=0]\n"
         "Note: you can extract multiple features in one pass by specifying multiple feature blob names and "
         "dataset names separated by ','. The names cannot contain white space characters and the number of "
         "blobs and datasets must be equal.")


class FeatureError(ValueError):
    """Arguments or a net that extract_features cannot work with."""


def _legacy_dims(shape, blob):
    """(channels, height, width) as Caffe's Blob::LegacyShape gives them (1 past the last axis)."""
    if len(shape) > 4:
        raise FeatureError(f"blob {blob!r} has {len(shape)} axes {tuple(shape)}; a Datum holds at most 4")
    return tuple(shape[i] if i < len(shape) else 1 for i in (1, 2, 3))


def _set_mode(args):
    if args and args[0] == "GPU":
        device = int(args[1]) if len(args) > 1 else 0
        if device < 0:
            raise FeatureError(f"DEVICE_ID must be >= 0, got {device}")
        glog.error(_CPP + ":52", "Using GPU")
        glog.error(_CPP + ":58", f"Using Device_id={device}")
        common.set_device(device)
        common.set_mode_gpu()
    else:
        glog.error(_CPP + ":62", "Using CPU")
        common.set_mode_cpu()


def extract(weights, proto, blob_names, dataset_names, num_batches, db_type):
    """Run the extraction; returns {blob: number of records written}."""
    blobs, datasets = blob_names.split(","), dataset_names.split(",")
    if len(blobs) != len(datasets):
        raise FeatureError(f"the number of blob names ({len(blobs)}) and dataset names ({len(datasets)}) "
                           "must be equal")
    backend = backend_name(db_type, "db_type")
    for path in datasets:
        if os.path.exists(path):
            raise DBError(f"{path}: already exists; extract_features writes a NEW database (remove it first)")
    net = Net(proto, TEST)
    net.copy_from(weights)
    for blob in blobs:
        if blob not in net.blobs:
            raise FeatureError(f"Unknown feature blob name {blob} in the network {proto}")
    writers = []
    try:
        for path in datasets:
            glog.info(_CPP + ":125", f"Opening dataset {path}")
            writers.append(new_db(path, backend))  # built under a temporary name, renamed by close()
        glog.error(_CPP + ":133", "Extracting Features")
        counts = [0] * len(blobs)
        datum = caffe_pb2.Datum()
        for _ in range(num_batches):
            net.forward()
            for i, (blob, writer) in enumerate(zip(blobs, writers)):
                data = np.asarray(net.blobs[blob].data, np.float32)
                datum.channels, datum.height, datum.width = _legacy_dims(data.shape, blob)
                for item in data.reshape(data.shape[0], -1):
                    del datum.float_data[:]
                    datum.float_data.extend(item.tolist())
                    writer.put(f"{counts[i]:010d}", datum.SerializeToString())
                    counts[i] += 1
                    if counts[i] % COMMIT_EVERY == 0:
                        writer.commit()
                        glog.error(_CPP + ":165", f"Extracted features of {counts[i]} query images for feature "
                                                  f"blob {blob}")
        for blob, writer, count in zip(blobs, writers, counts):
            writer.close()
            glog.error(_CPP + ":176", f"Extracted features of {count} query images for feature blob {blob}")
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    glog.error(_CPP + ":181", "Successfully extracted the features!")
    return dict(zip(blobs, counts))


def main(argv=None):
    _, args = parse_or_exit(sys.argv[1:] if argv is None else argv, {}, "extract_features", USAGE)
    if len(args) < 6:
        glog.error(_CPP + ":35", USAGE)
        return 1
    try:
        num_batches = int(args[4])
        if num_batches < 0:
            raise ValueError
    except ValueError:
        glog.log("F", _CPP + ":115", f"num_mini_batches must be a whole number >= 0, got {args[4]!r}")
        return 1
    try:
        _set_mode(args[6:])
        extract(args[0], args[1], args[2], args[3], num_batches, args[5])
    except (FeatureError, DBError, ValueError, OSError, RuntimeError) as e:
        glog.log("F", _CPP + ":115", str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
