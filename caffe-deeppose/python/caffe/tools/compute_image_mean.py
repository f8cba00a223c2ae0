"""compute_image_mean: the per-pixel mean of an LMDB (default) or a LevelDB (-backend leveldb) of
Datums, as a BlobProto.

    compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]

Sums in float32 in record order and divides by the count, as Caffe does (so the mean is Caffe's
to the bit); writes the legacy num=1/channels/height/width BlobProto atomically, and logs each
channel's mean value.
"""
import sys

import numpy as np

from .. import glog
from ..data_transformer import DataTransformer, decode_record
from ..formats.db.backends import DBError, WrongBackend, backend_name, record_error
from ..formats.db.readers import open_db
from ..formats.protoio import ProtoFileError, array_to_blobproto, write_binary_proto
from ..proto import caffe_pb2
from .flags import Flag, parse_or_exit

FLAGS = {"backend": Flag("lmdb", "The backend {leveldb, lmdb} containing the images")}
LOG_EVERY = 10000


def image_mean(db_path, backend="lmdb"):
    """The (C, H, W) float32 mean of every record of the database at `db_path` (of kind `backend`)."""
    db = open_db(db_path, backend)
    decoder = DataTransformer(caffe_pb2.TransformationParameter(), caffe_pb2.TEST, "compute_image_mean")
    try:
        total, count = None, 0
        for key, value in db.records():
            datum, pixels = decode_record(decoder, db.name, key, value)
            if datum.encoded and total is None:
                glog.info("compute_image_mean.cpp:57", "Decoding Datum")
            if total is None:
                total = np.zeros(pixels.shape, np.float32)
                glog.info("compute_image_mean.cpp:70", "Starting iteration")
            elif pixels.shape != total.shape:
                raise record_error(db.name, key, f"incorrect data size {'x'.join(map(str, pixels.shape))}, "
                                   f"the first record's is {'x'.join(map(str, total.shape))}")
            total += pixels
            count += 1
            if count % LOG_EVERY == 0:
                glog.info("compute_image_mean.cpp:95", f"Processed {count} files.")
        if total is None:
            raise DBError(f"{db.name}: the database is empty")
        if count % LOG_EVERY:
            glog.info("compute_image_mean.cpp:101", f"Processed {count} files.")
        return total / np.float32(count)
    finally:
        db.close()


def channel_means(mean):
    """Each channel's mean value, summed in float32 in order as Caffe logs it."""
    flat = mean.reshape(mean.shape[0], -1)
    return [float(np.cumsum(row, dtype=np.float32)[-1] / np.float32(flat.shape[1])) for row in flat]


def main(argv=None):
    message = ("Compute the mean_image of a set of images given by a leveldb/lmdb\nUsage:\n"
               "    compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]\n")
    flags, args = parse_or_exit(sys.argv[1:] if argv is None else argv, FLAGS, "compute_image_mean", message)
    if not 1 <= len(args) <= 2:
        print(message, file=sys.stderr)
        return 1
    try:
        mean = image_mean(args[0], backend_name(flags["backend"], "-backend"))
        if len(args) == 2:
            glog.info("compute_image_mean.cpp:108", f"Write to {args[1]}")
            write_binary_proto(args[1], array_to_blobproto(mean[None], legacy=True))
    except WrongBackend as e:
        glog.log("F", "compute_image_mean.cpp:53", f"{e}: pass -backend {e.found.lower()}")
        return 1
    except (DBError, ProtoFileError, OSError) as e:
        glog.log("F", "compute_image_mean.cpp:53", str(e))
        return 1
    glog.info("compute_image_mean.cpp:114", f"Number of channels: {mean.shape[0]}")
    for c, value in enumerate(channel_means(mean)):
        glog.info("compute_image_mean.cpp:119", f"mean_value channel [{c}]: {value:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
