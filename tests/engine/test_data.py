"""The data layers, the LMDB and LevelDB readers/writers and the data tools: behaviour and clear errors."""
import os
import subprocess

import cv2
import numpy as np
import pytest

import caffe
from caffe.formats.db.backends import DBError
from caffe.formats.db.readers import LevelDB, LMDB, open_db
from caffe.formats.db.writers import new_db
from caffe.formats.image_list import ListFileError
from caffe.formats.protoio import parse_prototxt
from caffe.layer_modules.array_data import set_input_arrays
from caffe.proto import caffe_pb2
from caffe.tools import flags as gflags
from tests.engine.conftest import data_net, datum, make_db, tool


@pytest.fixture
def five(tmp_path):
    """An LMDB of 5 records with labels 0..4 and float labels (i, -i)."""
    return make_db(tmp_path / "db", [datum(10 * i, i, (i, -i)) for i in range(5)])


def test_data_cycles_over_the_records(five):
    net = data_net(five)
    labels = [net.forward()["label"].tolist() for _ in range(4)]
    assert labels == [[0, 1], [2, 3], [4, 0], [1, 2]]


def test_label_num_top_and_data_only(five):
    net = data_net(five, batch=3, data_param="label_num: 2")
    assert net.blobs["label"].shape == (3, 2, 1, 1)
    np.testing.assert_array_equal(net.forward()["label"][:, :, 0, 0], [[0, 0], [1, -1], [2, -2]])
    assert data_net(five).blobs["label"].shape == (2,)
    net = data_net(five, tops=("data",))
    assert list(net.blobs) == ["data"] and net.forward()["data"].shape == (2, 3, 4, 5)


def test_corrupt_record_names_its_key(tmp_path):
    source = make_db(tmp_path / "db", [datum(1), datum(2), b"\xff\x01garbage"])
    net = data_net(source, batch=3)
    with pytest.raises(DBError, match=r"db: record '00000002_item': not a Datum"):
        net.forward()


def test_wrong_sized_record_names_its_key(tmp_path):
    short = datum(1)
    short.data = short.data[:-1]
    other = datum(1, shape=(3, 5, 5))
    for bad, what in ((short, "holds 59 bytes"), (other, "3x5x5 uint8 image; the first record's is 3x4x5")):
        source = make_db(tmp_path / what[:6], [datum(1), bad])
        with pytest.raises(DBError, match=rf"record '00000001_item'.*{what}"):
            data_net(source).forward()


def test_mirror_is_seeded_and_crop_is_random_at_train_central_at_test(five):
    def first_batches(phase, seed, transform):
        caffe.set_random_seed(seed)
        net = data_net(five, phase, batch=5, transform=transform)
        return np.concatenate([net.forward()["data"] for _ in range(4)])

    plain = first_batches(caffe.TRAIN, 1, "")
    mirrored = first_batches(caffe.TRAIN, 1, "mirror: true")
    np.testing.assert_array_equal(mirrored, first_batches(caffe.TRAIN, 1, "mirror: true"))
    flipped = [(m == p[..., ::-1]).all() for m, p in zip(mirrored, plain)]
    kept = [(m == p).all() for m, p in zip(mirrored, plain)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    test_mirrored = first_batches(caffe.TEST, 1, "mirror: true")  # Caffe mirrors at TEST too
    assert any((m == p[..., ::-1]).all() and not (m == p).all() for m, p in zip(test_mirrored, plain))
    crops = first_batches(caffe.TEST, 2, "crop_size: 3")
    np.testing.assert_array_equal(crops, plain[:, :, 0:3, 1:4])  # (4 - 3) // 2, (5 - 3) // 2
    crops = first_batches(caffe.TRAIN, 3, "crop_size: 3")
    offsets = {int(np.argmax((plain[i, 0, :, 0] == crops[i, 0, 0, 0]))) for i in range(len(crops))}
    assert crops.shape[2:] == (3, 3) and offsets == {0, 1}


def test_encoded_records_decode_and_force_gray(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    source = make_db(tmp_path / "db", [caffe_pb2.Datum(data=png, encoded=True, label=3)])
    np.testing.assert_array_equal(data_net(source, batch=1).forward()["data"][0], img.transpose(2, 0, 1))
    gray = data_net(source, batch=1, transform="force_gray: true").forward()["data"]
    assert gray.shape == (1, 1, 6, 7)


def test_mean_value_and_scale(five):
    out = data_net(five, batch=1, transform="scale: 0.5 mean_value: 1 mean_value: 2 mean_value: 3").forward()
    np.testing.assert_array_equal(out["data"][0, :, 0, 1], (np.array([0, 0, 0]) - [1, 2, 3]) * 0.5)



def test_transformer_from_prototxt_is_the_data_layers(tmp_path, five):
    """transformer_from_prototxt builds the DataTransformer the net's data layer of that phase
    builds (same output on the same records); ambiguous or missing layers are errors naming the file."""
    from caffe.data_transformer import TransformError, transformer_from_prototxt
    layer = ('layer {{ name: "{n}" type: "Data" top: "data" top: "label" include {{ phase: {p} }} '
             'transform_param {{ {t} }} data_param {{ source: "{s}" batch_size: 5 backend: LMDB }} }}\n')
    path = tmp_path / "net.prototxt"
    path.write_text(layer.format(n="train", p="TRAIN", t="scale: 2", s=five)
                    + layer.format(n="test", p="TEST", t="scale: 0.5 mean_value: 3 crop_size: 3", s=five))
    want = caffe.Net(str(path), caffe.TEST).forward()["data"]
    raw = data_net(five, caffe.TEST, batch=5).forward()["data"].astype(np.uint8)
    transformer = transformer_from_prototxt(path, caffe.TEST)
    np.testing.assert_array_equal(transformer(raw), want)
    assert transformer_from_prototxt(path, caffe.TRAIN).scale == 2
    path.write_text(layer.format(n="a", p="TEST", t="scale: 2", s=five) + layer.format(n="b", p="TEST", t="", s=five))
    with pytest.raises(TransformError, match=f"{path}: the TEST data layers 'a', 'b' have different transform_params"):
        transformer_from_prototxt(path, caffe.TEST)
    with pytest.raises(TransformError, match=f"{path}: no Data / ImageData / WindowData / MemoryData layer in phase TRAIN"):
        transformer_from_prototxt(path, caffe.TRAIN)

def test_backend_selects_the_database_kind(tmp_path):
    """data_param.backend as in Caffe: unset it is LEVELDB (the schema's default), LMDB reads an
    LMDB; the same records give the same batches from either. Pointed at the other kind, the
    error names the path and the setting to use."""
    records = [datum(10 * i, i, (i, -i)) for i in range(5)]
    leveldb = make_db(tmp_path / "ldb", records, "leveldb")
    lmdb = make_db(tmp_path / "mdb", records, "lmdb")
    batches = {}
    for name, source, backend in (("unset", leveldb, None), ("LEVELDB", leveldb, "LEVELDB"), ("LMDB", lmdb, "LMDB")):
        caffe.set_random_seed(5)
        net = data_net(source, batch=3, data_param="label_num: 2", transform="mirror: true crop_size: 3",
                       backend=backend)
        batches[name] = [[a.copy() for a in net.forward().values()] for _ in range(3)]
        del net
    for name in ("LEVELDB", "LMDB"):
        np.testing.assert_equal(batches[name], batches["unset"])
    with pytest.raises(caffe.net.NetError, match=f"{lmdb}: not a LevelDB: it holds an LMDB .*no backend, so "
                                                 r"LEVELDB \(Caffe's default\): set `backend: LMDB`"):
        data_net(lmdb, backend=None)
    with pytest.raises(caffe.net.NetError, match=f"{leveldb}: not an LMDB: it holds a LevelDB .*backend: LMDB: "
                                                 "set `backend: LEVELDB`"):
        data_net(leveldb)


def test_missing_source_is_a_clear_error_and_creates_nothing(tmp_path):
    with pytest.raises(caffe.net.NetError, match="nowhere: not an LMDB"):
        data_net(str(tmp_path / "nowhere"))
    with pytest.raises(caffe.net.NetError, match=r"nowhere: not a LevelDB \(no CURRENT in that directory\)"):
        data_net(str(tmp_path / "nowhere"), backend=None)
    assert not os.path.exists(tmp_path / "nowhere")  # LevelDB would have made the directory


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_writer_makes_a_new_database(tmp_path, backend):
    path = make_db(tmp_path / "db", [datum(i) for i in range(5)], backend)
    with pytest.raises(DBError, match="already exists"):
        new_db(path, backend)
    with open_db(path, backend) as db:
        assert len(db) == 5
    with new_db(tmp_path / "other", backend) as w:  # closed inside the block, then by its end
        w.put("a", b"x")
        w.close()
        with open_db(tmp_path / "other", backend) as db:
            assert len(db) == 1
    with pytest.raises(RuntimeError, match="stop"), new_db(tmp_path / "failed", backend) as w:
        w.put("a", b"x")
        w.commit()
        raise RuntimeError("stop")
    assert sorted(os.listdir(tmp_path)) == ["db", "other"]  # no half database, no lock file left


def test_leveldb_records_in_bytewise_key_order_and_one_opener_per_process(tmp_path):
    """Keys come back sorted bytewise (as Caffe's LevelDB comparator and LMDB's sort them),
    whatever the order of writing; readers in one process share the open database."""
    keys = [b"b", b"a\xff", b"a", b"B", b"\x00z", b"ab"]
    with new_db(tmp_path / "db", "leveldb") as w:
        for k in keys:
            w.put(k, k)
    with LevelDB(tmp_path / "db") as second:
        with LevelDB(tmp_path / "db") as first:
            assert [k for k, _ in first.records()] == sorted(keys) == [k for k, _ in second.records()]
        assert second.first() == (b"\x00z", b"\x00z")  # still open after the first closed


def test_leveldb_data_layer_resumes_exactly(tmp_path):
    """read_position/seek (what a snapshot keeps) on a LevelDB: a new layer continues from the
    same record (wrapping included) with the same random transformation."""
    source = make_db(tmp_path / "db", [datum(10 * i, i) for i in range(5)], "leveldb")
    caffe.set_random_seed(3)
    first = data_net(source, batch=2, transform="mirror: true crop_size: 3", backend=None)
    for _ in range(2):
        first.forward()
    position = first.layers[0].module.read_position()
    want = [[a.copy() for a in first.forward().values()] for _ in range(4)]
    caffe.set_random_seed(11)
    second = data_net(source, batch=2, transform="mirror: true crop_size: 3", backend=None)
    second.layers[0].module.seek(position)
    got = [[a.copy() for a in second.forward().values()] for _ in range(4)]
    np.testing.assert_equal(got, want)
    assert [labels.tolist() for _, labels in got] == [[4, 0], [1, 2], [3, 4], [0, 1]]


def test_convert_imageset_and_compute_image_mean_on_either_backend(tmp_path, capfd):
    """-backend leveldb writes and reads a LevelDB with the records and mean of the LMDB; the mean
    tool pointed at the other kind says which flag to pass."""
    from caffe.tools import compute_image_mean, convert_imageset
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 5, 3), 30 * i, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{i}.png {i}\n" for i in range(3)))
    for backend in ("lmdb", "leveldb"):
        assert convert_imageset.main(["-backend", backend, f"{tmp_path}/", str(tmp_path / "list.txt"),
                                      str(tmp_path / backend)]) == 0
        assert compute_image_mean.main(["-backend", backend, str(tmp_path / backend),
                                        str(tmp_path / f"{backend}.binaryproto")]) == 0
    with LevelDB(tmp_path / "leveldb") as leveldb, LMDB(tmp_path / "lmdb") as lmdb:
        assert list(leveldb.records()) == list(lmdb.records())
    assert (tmp_path / "leveldb.binaryproto").read_bytes() == (tmp_path / "lmdb.binaryproto").read_bytes()
    capfd.readouterr()
    assert compute_image_mean.main([str(tmp_path / "leveldb")]) == 1
    assert f"{tmp_path / 'leveldb'}: not an LMDB: it holds a LevelDB (CURRENT): pass -backend leveldb" \
        in capfd.readouterr().err


def test_image_data_missing_image_names_the_line(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 5, 3), np.uint8))
    (tmp_path / "list.txt").write_text("a.png 1\nmissing.png 2\n")
    text = f"""layer {{ name: "img" type: "ImageData" top: "data" top: "label"
      image_data_param {{ source: "{tmp_path}/list.txt" root_folder: "{tmp_path}/" batch_size: 2 }} }}"""
    net = caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TRAIN)
    assert net.blobs["data"].shape == (2, 3, 4, 5)
    with pytest.raises(ListFileError, match=r"list.txt:2: could not open or find image .*missing.png"):
        net.forward()
    (tmp_path / "list.txt").write_text("gone.png 1\n")
    with pytest.raises(caffe.net.NetError, match=r"list.txt:1: could not open or find image .*gone.png"):
        caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TRAIN)


def test_memory_data_feeds_numpy_arrays():
    text = """layer { name: "m" type: "MemoryData" top: "data" top: "label"
      memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }"""
    net = caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TEST)
    with pytest.raises(RuntimeError, match="set_input_arrays"):
        net.forward()
    data = np.arange(24, dtype=np.float32).reshape(4, 1, 2, 3)
    set_input_arrays(net, data, np.arange(4, dtype=np.float32))
    for first in (0, 2, 0):
        out = net.forward()
        np.testing.assert_array_equal(out["data"], data[first:first + 2])
        np.testing.assert_array_equal(out["label"].ravel(), [first, first + 1])
    with pytest.raises(ValueError, match="multiple of the batch size 2"):
        set_input_arrays(net, data[:3], np.zeros(3, np.float32))


def test_dummy_data_shapes_and_fillers():
    text = """layer { name: "x" type: "DummyData" top: "a" top: "b"
      dummy_data_param { num: 2 channels: 3 height: 1 width: 1 num: 4 channels: 1 height: 1 width: 1
        data_filler { type: "constant" value: 7 } data_filler { type: "gaussian" std: 1 } } }"""
    net = caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TEST)
    out = net.forward()
    assert out["a"].shape == (2, 3, 1, 1) and (out["a"] == 7).all()
    first = out["b"].copy()
    assert out["b"].shape == (4, 1, 1, 1) and not np.array_equal(first, net.forward()["b"])


def test_flags_parse_like_gflags():
    spec = {"gray": gflags.Flag(False, ""), "resize_width": gflags.Flag(0, ""), "backend": gflags.Flag("lmdb", "")}
    values, args = gflags.parse(["-gray", "", "--resize_width=8", "list", "-backend", "x", "db"], spec)
    assert values == {"gray": True, "resize_width": 8, "backend": "x"} and args == ["", "list", "db"]
    assert gflags.parse(["-nogray", "-gray=false"], spec)[0]["gray"] is False
    with pytest.raises(gflags.FlagError, match="unknown command line flag 'colour'"):
        gflags.parse(["-colour"], spec)


def test_convert_imageset_skips_an_unreadable_image(tmp_path):
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.full((4, 5, 3), 9, np.uint8))
    (tmp_path / "list.txt").write_text("a.png 1\nnot_there.png 2\nc.png 3\n")
    run = subprocess.run([tool("convert_imageset"), "-gray",
                          f"{tmp_path}/", str(tmp_path / "list.txt"), str(tmp_path / "db")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["a.png", "c.png", "db", "list.txt"]  # no db.lock left
    error = [line for line in run.stderr.splitlines() if line.startswith("E")]
    assert len(error) == 1 and "not_there.png (line 2 of" in error[0]
    assert "Processed 2 files." in run.stderr
    recs = [(k.decode(), caffe_pb2.Datum.FromString(v)) for k, v in LMDB(tmp_path / "db").records()]
    assert [k for k, _ in recs] == ["00000000_a.png", "00000002_c.png"]
    assert [(d.channels, d.label) for _, d in recs] == [(1, 1), (1, 3)]


def test_prefetch_holds_at_most_depth_batches_with_the_one_handed_out():
    """As Caffe's `prefetch` batches: the thread starts on another batch only once the consumer
    has asked for the batch after the one it holds (no batch more in the thread's hands)."""
    import time
    from caffe.prefetch import Prefetcher
    made = []

    def load():
        made.append(len(made))
        return (np.full(3, len(made) - 1, np.float32),)

    def settled(count):
        deadline = time.monotonic() + 10
        while len(made) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # time for a batch too many
        return len(made)

    prefetcher = Prefetcher(load, 2)
    try:
        assert settled(2) == 2
        assert int(prefetcher.get()[0][0]) == 0 and settled(2) == 2  # batch 0 is in use
        assert int(prefetcher.get()[0][0]) == 1 and settled(3) == 3  # batch 0 is done with
    finally:
        prefetcher.stop()
