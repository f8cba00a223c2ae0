"""extract_features and parse_log against the real Caffe's tools on the same inputs
(expected outputs in tests/data/tools, written by tests/data/tools/make_expected.sh)."""
import os
import shutil

import numpy as np
import pytest

from caffe.formats.db.readers import open_db
from caffe.proto import caffe_pb2
from caffe.tools import extract_features
from tests.conftest import DATA, GOLDEN
from tests.engine.conftest import glog_lines

TOOLS = os.path.join(DATA, "tools")


def read_datums(path, backend):
    with open_db(path, backend) as db:
        return [(k.decode(), caffe_pb2.Datum.FromString(v)) for k, v in db.records()]


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_extract_features_as_caffe(golden_files, capfd, backend):
    """The same features (from Caffe's run with lmdb) in either kind of database (DB_TYPE)."""
    proto = os.path.join(TOOLS, "features_net.prototxt")
    capfd.readouterr()
    assert extract_features.main(["tiny.caffemodel", proto, "fc,pool", "fc_db,pool_db", "2", backend, "CPU"]) == 0
    log = [line for line in glog_lines(capfd.readouterr().err)
           if not line.startswith("I ") and "extract_features.cpp" in line]
    assert log == open(os.path.join(TOOLS, "extract_features_expected.log")).read().splitlines()
    expected = np.load(os.path.join(TOOLS, "extract_features_expected.npz"))
    for blob in ("fc", "pool"):
        records = read_datums(f"{blob}_db", backend)
        assert [k for k, _ in records] == list(expected[blob + "_keys"])
        assert [(d.channels, d.height, d.width) for _, d in records] == [tuple(x) for x in expected[blob + "_dims"]]
        values = np.array([d.float_data for _, d in records], np.float32)
        np.testing.assert_allclose(values, expected[blob + "_values"], rtol=1e-4, atol=1e-5)
    assert not [name for name in os.listdir(".") if name.startswith(".tmp")]


def test_extract_features_refusals(golden_files, capfd):
    proto = os.path.join(TOOLS, "features_net.prototxt")
    before = sorted(os.listdir("."))
    for args, message in (
            (["tiny.caffemodel", proto, "fc", "a_lmdb,b_lmdb", "1", "lmdb"], "must be equal"),
            (["tiny.caffemodel", proto, "nope", "a_lmdb", "1", "lmdb"], "Unknown feature blob name nope"),
            (["tiny.caffemodel", proto, "fc", "a_lmdb", "1", "rocksdb"], "unknown database backend 'rocksdb'"),
            (["tiny.caffemodel", proto, "fc", "multilabel_lmdb", "1", "lmdb"], "already exists"),
            (["tiny.caffemodel", proto, "fc", "a_lmdb", "two", "lmdb"], "num_mini_batches"),
            (["tiny.caffemodel", proto, "fc"], "Usage: extract_features")):
        capfd.readouterr()
        assert extract_features.main(args) == 1
        assert message in capfd.readouterr().err
        assert sorted(os.listdir(".")) == before


def test_extract_features_failure_leaves_nothing(golden_files, monkeypatch):
    """A failure in the middle (here: the second forward) leaves no database, complete or not."""
    from caffe import net as net_module
    calls = []
    real = net_module.Net.forward

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(self, *a, **k)

    monkeypatch.setattr(net_module.Net, "forward", failing)
    before = sorted(os.listdir("."))
    assert extract_features.main(["tiny.caffemodel", os.path.join(TOOLS, "features_net.prototxt"), "fc",
                                  "fc_lmdb", "2", "lmdb"]) == 1
    assert sorted(os.listdir(".")) == before  # the lock file too


@pytest.mark.parametrize("log", ["train_classic.log", "rollover.log"])
def test_parse_log_as_caffe(log, tmp_path, capsys):
    from caffe.tools import parse_log
    shutil.copy(os.path.join(TOOLS, log), tmp_path)
    assert parse_log.main(["--verbose", str(tmp_path / log), str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"Wrote {tmp_path / log}.train", f"Wrote {tmp_path / log}.test"]
    for suffix in (".train", ".test"):
        with open(tmp_path / (log + suffix), newline="") as ours, \
                open(os.path.join(TOOLS, "parse_log_expected", log + suffix), newline="") as ref:
            assert ours.read() == ref.read()


def test_parse_log_reads_glog_lines_with_the_year(tmp_path):
    """The newer glog stamp (I20261124 ...) gives the same tables as the classic one (I1124 ...)."""
    from caffe.tools.parse_log import parse_log
    assert parse_log(os.path.join(GOLDEN, "files", "train.log")) == \
        parse_log(os.path.join(TOOLS, "train_classic.log"))


def test_parse_log_refusals(tmp_path, capsys):
    from caffe.tools import parse_log
    (tmp_path / "empty.log").write_text("I0101 00:00:00.000000  1 caffe.cpp:197] Use CPU.\n")
    assert parse_log.main([str(tmp_path / "empty.log"), str(tmp_path)]) == 1
    assert "no 'Solving' line" in capsys.readouterr().err
    assert parse_log.main([os.path.join(TOOLS, "rollover.log"), str(tmp_path / "nowhere")]) == 1
    assert parse_log.main(["only_one"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["empty.log"]


@pytest.mark.parametrize("x", ["NumIters", "Seconds"])
def test_plot_training_log(x, tmp_path, capsys):
    import cv2
    from caffe.tools import parse_log
    log = tmp_path / "rollover.log"
    shutil.copy(os.path.join(TOOLS, "rollover.log"), log)
    assert parse_log.main_plot([f"-x={x}", str(log), "loss", "accuracy"]) == 0
    png = tmp_path / "rollover_loss_accuracy.png"
    assert capsys.readouterr().out.strip() == str(png)
    image = cv2.imread(str(png))
    assert image.shape == (440, 640, 3)
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert len(colours) > 10  # axes, labels and three coloured series (train loss, test loss, accuracy)
    assert parse_log.main_plot([str(log), "top5"]) == 1
    assert "no column top5 in its tables (columns: LearningRate, accuracy, loss)" in capsys.readouterr().err
