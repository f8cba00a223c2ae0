"""Data layer throughput on an LMDB of DeepPose stage-1 input records (227x227x3 today), batch 32.

    python bench/bench_data.py [--records 512] [--batch 32] [--batches 48]

Makes the LMDB (random pixels, stage 1's float labels, as convert_imageset_multilabel writes) in a
temporary directory, then prints images/s for:
  reference      a plain sequential loop: read record, parse Datum, pixels to float32
  Data raw       the Data layer's forward alone, no transform
  Data mean+sc   the Data layer with mean_file + scale (DeepPose's transform_param)
  Data png       the same transform on PNG-encoded records (convert_imageset -encoded)
and, for the layer, how long forward waits per batch when the net computes 50 ms between
batches (0 means prefetching keeps up: the net never waits for data).
"""
import argparse
import os
import tempfile
import time

import cv2
import numpy as np

import caffe
from caffe.formats.db.readers import LMDB
from caffe.formats.db.writers import LMDBWriter
from caffe.formats.protoio import array_to_blobproto, parse_prototxt, write_binary_proto
from caffe.proto import caffe_pb2
from lib.stage1_shape import LABELS, SIZE


def make_db(folder, name, records, encoded):
    rng = np.random.default_rng(0)
    path = os.path.join(folder, name)
    with LMDBWriter(path) as db:
        for i in range(records):
            img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            if encoded:
                datum = caffe_pb2.Datum(data=cv2.imencode(".png", img)[1].tobytes(), encoded=True)
            else:
                chw = img.transpose(2, 0, 1)
                datum = caffe_pb2.Datum(channels=3, height=SIZE, width=SIZE, data=chw.tobytes(), encoded=False)
            datum.float_data.extend(rng.normal(size=LABELS).astype(np.float32))
            db.put(f"{i:08d}_img{i}.png", datum.SerializeToString())
    return path


def reference(path, images):
    """Images/s of a sequential read + parse + float conversion, no threads."""
    db = LMDB(path)
    cursor = db.cursor()
    start = time.perf_counter()
    for _ in range(images):
        _, value = cursor.next()
        d = caffe_pb2.Datum.FromString(value)
        np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width).astype(np.float32)
    rate = images / (time.perf_counter() - start)
    cursor.close()
    db.close()
    return rate


def data_net(path, batch, transform):
    text = f"""layer {{ name: "data" type: "Data" top: "data" top: "label"
      transform_param {{ {transform} }}
      data_param {{ source: "{path}" batch_size: {batch} backend: LMDB label_num: {LABELS} }} }}"""
    return caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TRAIN)


def layer_rate(path, batch, batches, transform):
    """Images/s of forward alone (first batch excluded), and the mean wait per forward (ms)
    when 50 ms of compute separate the forwards."""
    net = data_net(path, batch, transform)
    net.forward()
    start = time.perf_counter()
    for _ in range(batches):
        net.forward()
    rate = batch * batches / (time.perf_counter() - start)
    net = data_net(path, batch, transform)
    net.forward()
    waits = []
    for _ in range(min(batches, 10)):
        time.sleep(0.05)
        t = time.perf_counter()
        net.forward()
        waits.append(time.perf_counter() - t)
    return rate, 1000 * float(np.mean(waits))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=48)
    args = parser.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "1")
    caffe.glog.min_level = 1
    with tempfile.TemporaryDirectory() as folder:
        raw = make_db(folder, "raw_lmdb", args.records, encoded=False)
        png = make_db(folder, "png_lmdb", args.records, encoded=True)
        mean = os.path.join(folder, "mean.binaryproto")
        write_binary_proto(mean, array_to_blobproto(
            np.random.default_rng(1).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32), legacy=True))
        transform = f'mean_file: "{mean}" scale: 0.00390625'
        rows = [("reference (sequential read+decode)", reference(raw, args.batch * args.batches), None)]
        for label, path, tp in (("Data raw", raw, ""), ("Data mean_file+scale", raw, transform),
                                ("Data png, mean_file+scale", png, transform)):
            rows.append((label, *layer_rate(path, args.batch, args.batches, tp)))
    print(f"{args.records} records of 3x{SIZE}x{SIZE}, batch {args.batch}, {args.batches} batches, "
          f"{os.cpu_count()} CPUs")
    print(f"{'source':36s} {'images/s':>9s} {'wait/batch with 50 ms compute':>31s}")
    for label, rate, wait in rows:
        print(f"{label:36s} {rate:9.0f} {'' if wait is None else f'{wait:.1f} ms':>31s}")


if __name__ == "__main__":
    main()
