"""Conformance with the real Caffe: every case of tests/golden (see its README.md) passes.

One parametrised test per category, one test per case, no per-case code (a file case names its
check and the check's arguments); tolerances are RTOL/ATOL of tests/engine/conftest.py, as the
set's README gives them, and the worst error per category is reported at the end of the run.

- layers: each layer's forward and backward (and BatchNorm's updated blobs) on recorded inputs;
- solvers: each solver's trajectory from recorded weights, and restores of Caffe's snapshots
  (paths in the solver files are relative to the current directory, as in Caffe, so each case
  runs in a copy of the folder);
- files: our readers read what Caffe's tools wrote; our tools, run on the same images and list
  files, write the same records and mean; our Data layer yields the recorded batches.
"""
import glob
import os
import shutil

import cv2
import h5py
import numpy as np
import pytest

import caffe
from caffe import libc_rand
from caffe.formats.db.backends import parse_datum
from caffe.formats.db.readers import open_db
from caffe.formats.image_list import read_list, to_chw
from caffe.formats.protoio import read_binary_proto
from caffe.proto import caffe_pb2
from caffe.tools import compute_image_mean, convert_imageset
from tests.conftest import GOLDEN
from tests.engine.conftest import ATOL, RTOL, compare, golden_index


# ---------------------------------------------------------------------------------------- layers
EXACT_TYPES = {"ArgMax", "Accuracy", "Threshold"}
# layers whose TRAIN output depends on Caffe's RNG: checked by their rule, not by value
STOCHASTIC = {"Dropout"}

LAYERS = golden_index("layers")


def check_dropout(case, arrays, net):
    """Caffe's rule for Dropout TRAIN: each top is 0 or x / (1 - ratio); the gradient uses the same mask."""
    x, top = arrays["bottom_0"], net.blobs["top_0"].data
    kept = top != 0
    ratio = net.layers[-1].module.ratio
    np.testing.assert_allclose(top[kept], x[kept] / (1 - ratio), rtol=RTOL, atol=ATOL)
    assert 0 < kept.mean() < 1
    return kept / (1 - ratio)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer(case, monkeypatch):
    info = LAYERS[case]
    monkeypatch.chdir(os.path.join(GOLDEN, "layers"))  # paths inside the prototxts are relative to it
    arrays = np.load(case + ".npz")
    phase = caffe.TEST if info["phase"] == "TEST" else caffe.TRAIN
    net = caffe.Net(case + ".prototxt", phase)
    bottoms = sorted(k for k in arrays.files if k.startswith("bottom_"))
    for k in bottoms:
        net.blobs[k].data[...] = arrays[k]
    layer_blobs = net.params.get("layer", [])
    for i, blob in enumerate(layer_blobs):
        blob.data[...] = arrays[f"param_{i}"]
    net.forward()
    stochastic = info["type"] in STOCHASTIC and phase == caffe.TRAIN
    mask = check_dropout(case, arrays, net) if stochastic else None
    exact = info["type"] in EXACT_TYPES
    for k in sorted(k for k in arrays.files if k.startswith("top_")):
        if not stochastic:
            compare("layers", case, k, net.blobs[k].data, arrays[k], exact)
    for i, blob in enumerate(layer_blobs):
        if f"param_after_{i}" in arrays.files:
            compare("layers", case, f"param_after_{i}", blob.data, arrays[f"param_after_{i}"])
    if not info["backward"]:
        return
    for k in sorted(k for k in arrays.files if k.startswith("topdiff_")):
        net.blobs["top_" + k.split("_")[1]].diff[...] = arrays[k]
    for k in bottoms:
        net.blobs[k].diff[...] = 0
    for blob in layer_blobs:
        blob.diff[...] = 0
    net.backward()
    for k in sorted(k for k in arrays.files if k.startswith("bottomdiff_")):
        ref = arrays["topdiff_0"] * mask if stochastic else arrays[k]
        compare("layers", case, k, net.blobs["bottom_" + k.split("_")[1]].diff, ref)
    for i, blob in enumerate(layer_blobs):
        compare("layers", case, f"paramdiff_{i}", blob.diff, arrays[f"paramdiff_{i}"])


@pytest.mark.parametrize("case", sorted(c for c in LAYERS if LAYERS[c]["backward"]))
def test_layer_backward_layer_by_layer(case, monkeypatch):
    """The same cases with a backward hook set, so the net back-propagates layer by layer (the
    path of hooks and `backward(start=, end=)`) instead of in one autograd pass."""
    build = caffe.Net.__init__

    def hooked(net, *args, **kwargs):
        build(net, *args, **kwargs)
        net.after_backward(lambda i: None)

    monkeypatch.setattr(caffe.Net, "__init__", hooked)
    test_layer(case, monkeypatch)


# --------------------------------------------------------------------------------------- solvers
SOLVERS = os.path.join(GOLDEN, "solvers")
SOLVER_CASES = sorted(os.path.basename(f)[:-len(".solver.prototxt")]
               for f in glob.glob(os.path.join(SOLVERS, "*.solver.prototxt")))
RESTORE = "sgd_snapshot_restore"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = tmp_path / "solvers"
    shutil.copytree(SOLVERS, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    monkeypatch.chdir(folder)
    return folder


def run_steps(case, solver, arrays, steps):
    """Steps `steps` (0-based) of the golden procedure, compared with Caffe's after each one."""
    net = solver.net
    for i in steps:
        compare("solvers", case, f"lr[{i}]", solver.lr, arrays["lr"][i])
        net.blobs["x"].data[...] = arrays["x"]
        net.blobs["y"].data[...] = arrays["y"]
        solver.step(1)
        compare("solvers", case, f"loss[{i}]", net.blobs["loss"].data, arrays["loss"][i])
        compare("solvers", case, f"W[{i}]", net.params["fc"][0].data, arrays["W"][i])
        compare("solvers", case, f"b[{i}]", net.params["fc"][1].data, arrays["b"][i])


def new_solver(case, arrays):
    solver = caffe.get_solver(f"{case}.solver.prototxt")
    solver.net.params["fc"][0].data[...] = arrays["W0"]
    solver.net.params["fc"][1].data[...] = arrays["b0"]
    return solver


@pytest.mark.parametrize("case", SOLVER_CASES)
def test_solver(case, workdir):
    arrays = np.load(f"{case}.npz")
    solver = new_solver(case, arrays)
    assert solver.type == solver.param.type
    run_steps(case, solver, arrays, range(6))


def test_restore_caffe_snapshot(workdir):
    """Caffe's own .solverstate (relative learned_net) and .caffemodel of iteration 3, then steps 4-6."""
    arrays = np.load(f"{RESTORE}.npz")
    solver = caffe.get_solver(f"{RESTORE}.solver.prototxt")
    solver.restore(f"{RESTORE}_iter_3.solverstate")
    assert solver.iter == 3
    compare("solvers", RESTORE, "W[2] restored", solver.net.params["fc"][0].data, arrays["W"][2])
    run_steps(RESTORE, solver, arrays, range(3, 6))


def test_restore_own_snapshot_from_elsewhere(workdir, monkeypatch):
    """Our snapshot of iteration 3, restored by a new solver from another directory (learned_net is
    then found next to the .solverstate), continues exactly like Caffe."""
    arrays = np.load(f"{RESTORE}.npz")
    for name in glob.glob(f"{RESTORE}_iter_3.*"):
        os.remove(name)
    run_steps(RESTORE, new_solver(RESTORE, arrays), arrays, range(3))
    assert os.path.isfile(f"{RESTORE}_iter_3.caffemodel")
    solver = caffe.get_solver(f"{RESTORE}.solver.prototxt")
    monkeypatch.chdir(workdir.parent)
    solver.restore(os.path.join("solvers", f"{RESTORE}_iter_3.solverstate"))
    monkeypatch.chdir(workdir)
    run_steps(RESTORE, solver, arrays, range(3, 6))


def test_caffe_train_snapshot_then_final_test(golden_files, capsys):
    """files/train.log's last test (iteration 8) from Caffe's own snapshot of the BatchNorm net: the
    .solverstate holds a history blob for every parameter, BatchNorm's frozen ones included; before
    that test Caffe's final display pass ran the TRAIN net forward once more (batch 9: records 2-5),
    which moved BatchNorm's running statistics."""
    log = open("train.log").read().splitlines()
    caffe_loss = float([line for line in log if "Test net output #0" in line][-1].split()[10])
    solver = caffe.get_solver("train_solver.prototxt")
    solver.restore("snapshots/train_iter_8.solverstate")
    assert solver.iter == 8 and solver.current_step == 1 and len(solver.history) == 9
    bn = [b.data.copy() for b in solver.net.params["bn"]]
    for _ in range(8):  # move the data cursor to batch 9, then put the statistics back
        solver.net.forward()
    for blob, value in zip(solver.net.params["bn"], bn):
        blob.data[...] = value
    solver.net.forward()
    capsys.readouterr()
    solver.test(0)
    line = [x for x in capsys.readouterr().err.splitlines() if "Test net output #0" in x][0]
    compare("solvers", "train.log", "test loss at iteration 8", float(line.split()[10]), caffe_loss)


# ----------------------------------------------------------------------------------------- files
FILES = os.path.join(GOLDEN, "files")
TOOLS = {"convert_imageset": convert_imageset.main,
         "convert_imageset_multilabel": convert_imageset.main_multilabel,
         "compute_image_mean": compute_image_mean.main}


def records(path, backend="lmdb"):
    with open_db(path, backend) as db:
        return list(db.records())


def compare_records(case, ours, ref):
    """Same keys in the same order, and every record's bytes equal."""
    assert [k for k, _ in ours] == [k for k, _ in ref], f"{case}: keys differ"
    for (key, value), (_, want) in zip(ours, ref):
        compare("files", case, key.decode(), np.frombuffer(value, np.uint8), np.frombuffer(want, np.uint8),
                exact=True)


def compare_mean(case, path):
    ours = caffe.io.blobproto_to_array(read_binary_proto(path, caffe_pb2.BlobProto))
    compare("files", case, "mean", ours, np.load(os.path.join(FILES, "mean.npy")), exact=True)


def writable(tmp_path, name):
    """A copy of the golden database `name` (opening a LevelDB writes to it, as in Caffe)."""
    shutil.copytree(os.path.join(FILES, name), tmp_path / name)
    return str(tmp_path / name)


def check_db(case, tmp_path, monkeypatch, db, list_file, multilabel=False, size=0, encoded=False, backend="lmdb"):
    """Our reader: the keys, order, pixels (or file bytes) and labels of a recorded database."""
    entries = read_list(os.path.join(FILES, list_file), multilabel)
    recs = records(writable(tmp_path, db), backend)
    assert [k.decode() for k, _ in recs] == [f"{i:08d}_{e.path}" for i, e in enumerate(entries)]
    for (key, value), entry in zip(recs, entries):
        datum = parse_datum(value, db, key)
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


def leveldb_files(folder):
    """{name: bytes} of a LevelDB's files, without LevelDB's LOCK (empty) and LOG (timestamps)."""
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
            if name not in ("LOCK", "LOG")}


def check_tool(case, tmp_path, monkeypatch, tool, args, expect, inputs=()):
    """Our tool run on copies of the images and list files (in their directory, as Caffe's was) and
    of the golden databases `inputs` writes what Caffe's wrote (out_lmdb / out_leveldb: `expect`'s
    records; a mean: `expect`'s bytes)."""
    shutil.copytree(os.path.join(FILES, "images"), tmp_path / "images")
    for name in ("list_int.txt", "list_multilabel.txt"):
        shutil.copy(os.path.join(FILES, name), tmp_path / name)
    for name in inputs:
        writable(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    assert TOOLS[tool]([a.format(files=FILES) for a in args]) == 0
    if expect.endswith("_leveldb"):  # LevelDB's files themselves are Caffe's (its LOCK and LOG aside)
        assert leveldb_files("out_leveldb") == leveldb_files(os.path.join(FILES, expect)), f"{case}: the files differ"
    if expect.endswith(("_lmdb", "_leveldb")):
        backend = expect.rsplit("_", 1)[1]
        compare_records(case, records(f"out_{backend}", backend), records(writable(tmp_path / "golden", expect),
                                                                          backend))
    else:
        compare_mean(case, "mean.binaryproto")
        with open("mean.binaryproto", "rb") as ours, open(os.path.join(FILES, expect), "rb") as ref:
            assert ours.read() == ref.read(), f"{case}: the BlobProto bytes differ"


def check_data(case, tmp_path, monkeypatch, prototxt, phase, prefix, batches="data_layer_batches.npz"):
    """Our Data layer yields the recorded batches (paths in the prototxt are relative to files/,
    here a copy of it: opening a LevelDB writes to it)."""
    shutil.copytree(FILES, tmp_path / "files")
    monkeypatch.chdir(tmp_path / "files")
    ref = np.load(batches)
    net = caffe.Net(prototxt, phase)
    for i in range(len(ref[f"{prefix}_data"])):
        out = net.forward()
        compare("files", case, f"batch {i} data", out["data"], ref[f"{prefix}_data"][i])
        compare("files", case, f"batch {i} label", out["label"], ref[f"{prefix}_label"][i])


def h5_objects(path):
    """{name: dataset or None (a group)} of every object of an HDF5 file, and the open file."""
    f = h5py.File(path, "r")
    objects = {}
    f.visititems(lambda name, obj: objects.__setitem__(name, obj if isinstance(obj, h5py.Dataset) else None))
    return f, objects


def compare_h5(case, ours, ref, exact=False, extension=()):
    """Same groups and datasets (shape, dtype; strings: size and padding) and equal values; ours
    may hold the `extension` datasets besides (read by no Caffe code)."""
    (fo, mine), (fr, theirs) = h5_objects(ours), h5_objects(ref)
    with fo, fr:
        assert all(name in mine for name in extension), f"{case}: no {extension}"
        mine = {name: obj for name, obj in mine.items() if name not in extension}
        assert sorted(mine) == sorted(theirs), f"{case}: objects {sorted(mine)}, Caffe's {sorted(theirs)}"
        for name, want in theirs.items():
            got = mine[name]
            if want is None:
                assert got is None, f"{case}: {name} is a dataset, Caffe's is a group"
                continue
            assert (got.shape, got.dtype) == (want.shape, want.dtype), \
                f"{case}: {name} is {got.shape} {got.dtype}, Caffe's {want.shape} {want.dtype}"
            if want.dtype.kind == "S":
                assert got.id.get_type().get_strpad() == want.id.get_type().get_strpad(), f"{case}: {name} padding"
                assert got[()] == want[()], f"{case}: {name} = {got[()]!r}, Caffe's {want[()]!r}"
            else:
                compare("files", case, name, got[()], want[()], exact=exact or want.dtype.kind in "iu")


def check_hdf5_output(case, tmp_path, monkeypatch, index):
    """Our HDF5Output writes the file Caffe's wrote from the same batch (legacy 4-axis datasets)."""
    ref = np.load(os.path.join(FILES, "hdf5_io.npz"))
    monkeypatch.chdir(tmp_path)
    os.mkdir("h5")
    net = caffe.Net(os.path.join(FILES, f"hdf5_output_{index}.prototxt"), caffe.TEST)
    net.forward(data=ref[f"data{index}"], label=ref[f"label{index}"])
    compare_h5(case, f"h5/part{index}.h5", os.path.join(FILES, f"h5/part{index}.h5"), exact=True)


def check_hdf5_data(case, tmp_path, monkeypatch, prototxt, prefix):
    """Our HDF5Data yields Caffe's batches: files and rows in order, wrapping; shuffled as Caffe's
    std::random_shuffle in a fresh process (glibc's rand() from its initial state)."""
    monkeypatch.chdir(FILES)
    ref = np.load("hdf5_io.npz")
    libc_rand.srand(1)
    net = caffe.Net(prototxt, caffe.TRAIN)
    for k in range(len([n for n in ref.files if n.startswith(f"{prefix}_data_")])):
        out = net.forward()
        compare("files", case, f"batch {k} data", out["data"], ref[f"{prefix}_data_{k}"], exact=True)
        compare("files", case, f"batch {k} label", out["label"], ref[f"{prefix}_label_{k}"], exact=True)


def check_hdf5_snapshot(case, tmp_path, monkeypatch, ours):
    """Caffe's HDF5 snapshot (Adam, snapshot_diff) of iteration 3: restored here, steps 4-6 go on as
    in Caffe and its .caffemodel.h5 loads as weights; or (`ours`) our own snapshot of steps 1-3 has
    Caffe's layout and values (plus our `resume_state` dataset: data positions, random states)."""
    shutil.copytree(FILES, tmp_path / "files")
    monkeypatch.chdir(tmp_path / "files")
    arrays, prefix = np.load("h5_snapshot.npz"), "h5_snapshot_iter_3"
    if not ours:
        solver = caffe.get_solver("h5_snapshot.solver.prototxt")
        solver.restore(f"{prefix}.solverstate.h5")
        assert solver.iter == 3
        run_steps(case, solver, arrays, range(3, 6))
        net = caffe.Net("h5_solver_net.prototxt", f"{prefix}.caffemodel.h5", caffe.TEST)
        compare("files", case, "weights loaded", net.params["fc"][0].data, arrays["W"][2])
        return
    os.mkdir("caffe")
    for ext in ("caffemodel.h5", "solverstate.h5"):
        os.rename(f"{prefix}.{ext}", f"caffe/{prefix}.{ext}")
    run_steps(case, new_solver("h5_snapshot", arrays), arrays, range(3))
    for ext in ("caffemodel.h5", "solverstate.h5"):
        compare_h5(f"{case} {ext}", f"{prefix}.{ext}", f"caffe/{prefix}.{ext}",
                   extension=("resume_state",) if ext == "solverstate.h5" else ())

def check_window(case, tmp_path, monkeypatch, mirror=False):
    """Our WindowData warps the window file's one foreground and one background window as Caffe did
    (context padding, square crops, means, scale); with mirror, each item is one of Caffe's items
    (both orientations appear there) with its label."""
    monkeypatch.chdir(FILES)
    ref = np.load("window_batches.npz")
    data, label = caffe.Net(f"{case}.prototxt", caffe.TRAIN).forward().values()
    want, want_label = ref[f"{case}_data"], ref[f"{case}_label"]
    compare("files", case, "label", label, want_label, exact=True)
    for i, item in enumerate(data):
        match = [j for j in range(len(want)) if want_label[j] == label[i] and np.allclose(want[j], item)] \
            if mirror else [i]
        assert match, f"{case}: item {i} is none of Caffe's items of label {label[i]}"
        compare("files", case, f"item {i}", item, want[match[0]])

RESIZE = ["-resize_height=16", "-resize_width=16"]
FILE_CASES = {
    "read_multilabel_lmdb": (check_db, dict(db="multilabel_lmdb", list_file="list_multilabel.txt",
                                              multilabel=True, size=16)),
    "read_int_lmdb": (check_db, dict(db="int_lmdb", list_file="list_int.txt", size=16)),
    "read_encoded_lmdb": (check_db, dict(db="encoded_lmdb", list_file="list_int.txt", encoded=True)),
    "read_multilabel_leveldb": (check_db, dict(db="multilabel_leveldb", list_file="list_multilabel.txt",
                                                multilabel=True, size=16, backend="leveldb")),
    "read_int_leveldb": (check_db, dict(db="int_leveldb", list_file="list_int.txt", size=16, backend="leveldb")),
    "read_ours_multilabel_leveldb": (check_db, dict(db="ours_multilabel_leveldb", list_file="list_multilabel.txt",
                                                    multilabel=True, size=16, backend="leveldb")),
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
    "convert_imageset_multilabel_leveldb": (check_tool, dict(
        tool="convert_imageset_multilabel", expect="multilabel_leveldb",
        args=["-backend", "leveldb"] + RESIZE + ["", "list_multilabel.txt", "out_leveldb"])),
    "convert_imageset_leveldb": (check_tool, dict(
        tool="convert_imageset", expect="int_leveldb",
        args=["-backend=leveldb"] + RESIZE + ["-shuffle=false", "", "list_int.txt", "out_leveldb"])),
    "compute_image_mean": (check_tool, dict(tool="compute_image_mean", expect="mean.binaryproto",
                                            args=["{files}/multilabel_lmdb", "mean.binaryproto"])),
    "compute_image_mean_leveldb": (check_tool, dict(
        tool="compute_image_mean", expect="mean_ours_leveldb.binaryproto", inputs=["ours_multilabel_leveldb"],
        args=["-backend", "leveldb", "ours_multilabel_leveldb", "mean.binaryproto"])),
    "data_train": (check_data, dict(prototxt="data_train.prototxt", phase=caffe.TRAIN, prefix="train")),
    "data_test_crop12": (check_data, dict(prototxt="data_test_crop12.prototxt", phase=caffe.TEST,
                                          prefix="test_crop12")),
    "data_test_meanvalue": (check_data, dict(prototxt="data_test_meanvalue.prototxt", phase=caffe.TEST,
                                             prefix="test_meanvalue")),
    "data_leveldb": (check_data, dict(prototxt="data_leveldb.prototxt", phase=caffe.TRAIN, prefix="train",
                                      batches="leveldb_batches.npz")),
    "hdf5_output": (check_hdf5_output, dict(index=0)),
    "hdf5_output_3rows": (check_hdf5_output, dict(index=1)),
    "hdf5_data": (check_hdf5_data, dict(prototxt="hdf5_data.prototxt", prefix="ordered")),
    "hdf5_data_shuffle": (check_hdf5_data, dict(prototxt="hdf5_data_shuffle.prototxt", prefix="shuffled")),
    "hdf5_snapshot_restore": (check_hdf5_snapshot, dict(ours=False)),
    "hdf5_snapshot_layout": (check_hdf5_snapshot, dict(ours=True)),
    "window_warp": (check_window, {}),
    "window_square_pad": (check_window, {}),
    "window_context_mirror": (check_window, dict(mirror=True)),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_file(case, tmp_path, monkeypatch):
    check, kwargs = FILE_CASES[case]
    check(case, tmp_path, monkeypatch, **kwargs)
