"""Conformance with the files Caffe's own tools wrote (tests/golden/files, see the set's README).

One test per case, no per-case code: a case names its check and the check's arguments. Our
readers read every recorded file; our tools, run on the same images and list files, write the
same records and mean; our Data layer yields the recorded batches.
"""
import os
import shutil

import cv2
import numpy as np
import pytest

import caffe
from caffe import db as cdb
from caffe.image_list import read_list, to_chw
from caffe.proto import caffe_pb2
from caffe.protoio import read_binary_proto
from caffe.tools import compute_image_mean, convert_imageset
from conftest import GOLDEN, compare

FILES = os.path.join(GOLDEN, "files")
TOOLS = {"convert_imageset": convert_imageset.main,
         "convert_imageset_multilabel": convert_imageset.main_multilabel,
         "compute_image_mean": compute_image_mean.main}


def records(path):
    db = cdb.LMDB(path)
    try:
        return list(db.records())
    finally:
        db.close()


def compare_records(case, ours, ref):
    """Same keys in the same order, and every record's bytes equal."""
    assert [k for k, _ in ours] == [k for k, _ in ref], f"{case}: keys differ"
    for (key, value), (_, want) in zip(ours, ref):
        compare("files", case, key.decode(), np.frombuffer(value, np.uint8), np.frombuffer(want, np.uint8),
                exact=True)


def compare_mean(case, path):
    ours = caffe.io.blobproto_to_array(read_binary_proto(path, caffe_pb2.BlobProto))
    compare("files", case, "mean", ours, np.load(os.path.join(FILES, "mean.npy")), exact=True)


def check_lmdb(case, tmp_path, monkeypatch, db, list_file, multilabel=False, size=0, encoded=False):
    """Our reader: the keys, order, pixels (or file bytes) and labels of a recorded LMDB."""
    entries = read_list(os.path.join(FILES, list_file), multilabel)
    recs = records(os.path.join(FILES, db))
    assert [k.decode() for k, _ in recs] == [f"{i:08d}_{e.path}" for i, e in enumerate(entries)]
    for (key, value), entry in zip(recs, entries):
        datum = cdb.parse_datum(value, db, key)
        image = os.path.join(FILES, entry.path)
        assert datum.encoded == encoded
        if encoded:
            with open(image, "rb") as f:
                assert datum.data == f.read(), f"{case} {key}: not the file's own bytes"
        else:
            want = to_chw(cv2.resize(cv2.imread(image), (size, size), interpolation=cv2.INTER_LINEAR))
            compare("files", case, f"{key} pixels", caffe.io.datum_to_array(datum), want, exact=True)
        if multilabel:
            assert not datum.HasField("label")
            compare("files", case, f"{key} labels", np.float32(datum.float_data), np.float32(entry.label),
                    exact=True)
        else:
            assert datum.label == entry.label and not datum.float_data


def check_mean(case, tmp_path, monkeypatch):
    """mean.binaryproto read by caffe.io equals mean.npy (pycaffe's reading of it)."""
    compare_mean(case, os.path.join(FILES, "mean.binaryproto"))


def check_net(case, tmp_path, monkeypatch, prototxt, weights, arrays):
    """A net saved by Caffe, loaded with its weights: every blob of a forward pass."""
    ref = np.load(os.path.join(FILES, arrays))
    net = caffe.Net(os.path.join(FILES, prototxt), os.path.join(FILES, weights), caffe.TEST)
    out = net.forward(data=ref["input"])
    compare("files", case, "output", out[net.outputs[0]], ref["output"])
    for key in (k for k in ref.files if k.startswith("blob_")):
        compare("files", case, key, net.blobs[key[5:]].data, ref[key])


def check_tool(case, tmp_path, monkeypatch, tool, args, expect):
    """Our tool run on copies of the images and list files (in their directory, as Caffe's was)
    writes what Caffe's wrote."""
    shutil.copytree(os.path.join(FILES, "images"), tmp_path / "images")
    for name in ("list_int.txt", "list_multilabel.txt"):
        shutil.copy(os.path.join(FILES, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert TOOLS[tool]([a.format(files=FILES) for a in args]) == 0
    if expect.endswith("_lmdb"):
        compare_records(case, records("out_lmdb"), records(os.path.join(FILES, expect)))
    else:
        compare_mean(case, "mean.binaryproto")
        with open("mean.binaryproto", "rb") as ours, open(os.path.join(FILES, expect), "rb") as ref:
            assert ours.read() == ref.read(), f"{case}: the BlobProto bytes differ"


def check_data(case, tmp_path, monkeypatch, prototxt, phase, prefix):
    """Our Data layer yields the recorded batches (paths in the prototxt are relative to files/)."""
    monkeypatch.chdir(FILES)
    ref = np.load(os.path.join(FILES, "data_layer_batches.npz"))
    net = caffe.Net(prototxt, phase)
    for i in range(len(ref[f"{prefix}_data"])):
        out = net.forward()
        compare("files", case, f"batch {i} data", out["data"], ref[f"{prefix}_data"][i])
        compare("files", case, f"batch {i} label", out["label"], ref[f"{prefix}_label"][i])


RESIZE = ["-resize_height=16", "-resize_width=16"]
CASES = {
    "read_multilabel_lmdb": (check_lmdb, dict(db="multilabel_lmdb", list_file="list_multilabel.txt",
                                              multilabel=True, size=16)),
    "read_int_lmdb": (check_lmdb, dict(db="int_lmdb", list_file="list_int.txt", size=16)),
    "read_encoded_lmdb": (check_lmdb, dict(db="encoded_lmdb", list_file="list_int.txt", encoded=True)),
    "read_mean_binaryproto": (check_mean, {}),
    "tiny_net_forward": (check_net, dict(prototxt="tiny.prototxt", weights="tiny.caffemodel",
                                         arrays="tiny_io.npz")),
    "convert_imageset_multilabel": (check_tool, dict(tool="convert_imageset_multilabel", expect="multilabel_lmdb",
                                                     args=RESIZE + ["", "list_multilabel.txt", "out_lmdb"])),
    "convert_imageset": (check_tool, dict(tool="convert_imageset", expect="int_lmdb",
                                          args=RESIZE + ["-shuffle=false", "", "list_int.txt", "out_lmdb"])),
    "convert_imageset_encoded_png": (check_tool, dict(tool="convert_imageset", expect="encoded_lmdb",
                                                      args=["-encoded", "-encode_type=png", "", "list_int.txt",
                                                            "out_lmdb"])),
    "compute_image_mean": (check_tool, dict(tool="compute_image_mean", expect="mean.binaryproto",
                                            args=["{files}/multilabel_lmdb", "mean.binaryproto"])),
    "data_train": (check_data, dict(prototxt="data_train.prototxt", phase=caffe.TRAIN, prefix="train")),
    "data_test_crop12": (check_data, dict(prototxt="data_test_crop12.prototxt", phase=caffe.TEST,
                                          prefix="test_crop12")),
    "data_test_meanvalue": (check_data, dict(prototxt="data_test_meanvalue.prototxt", phase=caffe.TEST,
                                             prefix="test_meanvalue")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_file(case, tmp_path, monkeypatch):
    check, kwargs = CASES[case]
    check(case, tmp_path, monkeypatch, **kwargs)
