"""Bad input and faults, as a user meets them: each case runs the real command on a tiny input and
checks the exit status, that the message names the place (file:line, database, option), and that
nothing was lost or half-written.

This module holds the application and data-tool cases (make_synthetic_k2hpd, get_stage, the
model scripts, the driver's report check, convert_imageset(_multilabel),
compute_image_mean, the Data layer); the engine's cases are in tests/engine/test_bad_input.py.
"""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.formats.db.readers import LMDB
from caffe.formats.db.writers import LMDBWriter
from caffe.formats.protoio import parse_prototxt
from caffe.proto import caffe_pb2
from deeppose import preprocess
from deeppose.datasets import K2HPD
from deeppose.dataset import write_annotations
from deeppose.synth import render_sample
from deeppose.synth.kinect import to_mm16
from tests import conftest
from tests.conftest import deploy_input_shape

ROOT = Path(conftest.ROOT)
BIN = Path(sys.executable).parent
DATA = Path(K2HPD.root)
IMAGES = DATA / K2HPD.image_dir


def run(args, cwd=None, limit_file_size=None):
    """Run a command; with `limit_file_size` its files cannot grow past that many bytes (a full
    disk: writes fail with EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit if limit_file_size else None, timeout=120)


def tool(name):
    return BIN / name


def snapshot(folder):
    """Every file under `folder` with its bytes (to check that nothing changed)."""
    folder = Path(folder)
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def failed(r, *names):
    """The command failed with status 1, naming each of `names`, in a message without a traceback."""
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out, out
    for name in names:
        assert str(name) in out, f"{name!r} not in:\n{out}"
    return out


# -- make_synthetic_k2hpd.py -------------------------------------------------------------------------
SYNTH = [sys.executable, ROOT / "tools/make_synthetic_k2hpd.py", "--workers", "1"]


def test_synthetic_generator_refuses_to_overwrite_a_data_set(tmp_path):
    out = tmp_path / "K2HPD"
    assert run(SYNTH + ["--out", out, "--train", 2, "--test", 1]).returncode == 0
    before = snapshot(out)
    r = run(SYNTH + ["--out", out, "--train", 3, "--test", 1, "--seed", 5])
    failed(r, out, K2HPD.train_annotations, K2HPD.test_annotations, "3 files in depth_data/depth_images", "--force")
    assert snapshot(out) == before
    r = run(SYNTH + ["--out", out, "--train", 3, "--test", 1, "--seed", 5, "--force"])
    assert r.returncode == 0 and "stale" in r.stdout
    assert (out / K2HPD.train_annotations).read_bytes() != before[Path(K2HPD.train_annotations)]
    assert not list(out.glob(".tmp-*"))


def test_synthetic_generator_refuses_images_without_annotations(tmp_path):
    """Images copied in before their annotations are a data set too."""
    (tmp_path / K2HPD.image_dir).mkdir(parents=True)
    (tmp_path / K2HPD.image_dir / "real.png").write_bytes(b"mine")
    failed(run(SYNTH + ["--out", tmp_path, "--train", 1, "--test", 1]), "1 files in depth_data/depth_images", "--force")
    assert (tmp_path / K2HPD.image_dir / "real.png").read_bytes() == b"mine"
    assert not (tmp_path / K2HPD.train_annotations).exists()


def test_synthetic_generator_clears_what_an_interrupted_run_left(tmp_path):
    orphan = tmp_path / ".tmp-synthetic-killed" / K2HPD.image_dir
    orphan.mkdir(parents=True)
    (orphan / "00000000.png").write_bytes(b"half")
    assert run(SYNTH + ["--out", tmp_path, "--train", 1, "--test", 1]).returncode == 0
    assert not list(tmp_path.glob(".tmp-*"))
    assert sorted(p.name for p in (tmp_path / K2HPD.image_dir).iterdir()) == ["00000000.png", "00000001.png"]


@pytest.mark.parametrize("args, name", [(["--train", "-5", "--test", "1"], "--train"),
                                        (["--train", "2", "--test", "0"], "--test"),
                                        (["--train", "x", "--test", "1"], "--train"),
                                        (["--train", "2", "--test", "1", "--size", "0x4"], "--size")])
def test_synthetic_generator_refuses_bad_counts(tmp_path, args, name):
    r = run(SYNTH + ["--out", tmp_path / "out"] + args)
    assert r.returncode == 2 and name in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# -- get_stage.py --stage 1 ----------------------------------------------------------------------------
def dataset(root, n_train=4, n_test=2, images=None):
    """A K2HPD-layout set in `root` (the working directory of the commands): n_train + n_test
    distinct 8-bit images (or `images`) and annotations, with the repository's dataset choice and
    nets (which get_stage.py reads)."""
    for f in ["globalvar.py", *(p.relative_to(ROOT) for p in ROOT.glob("models/*/*.prototxt"))]:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes((ROOT / f).read_bytes())
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n_train + n_test):
        image = images[i] if images else rng.integers(1, 255, (K2HPD.height, K2HPD.width), dtype=np.uint8)
        cv2.imwrite(str(root / IMAGES / K2HPD.image_name(i)), image)
        items.append((K2HPD.image_name(i), rng.uniform(20, 200, (K2HPD.num_joints, 2))))
    write_annotations(root / DATA / K2HPD.train_annotations, items[:n_train])
    write_annotations(root / DATA / K2HPD.test_annotations, items[n_train:])
    return items


STAGE1 = [sys.executable, ROOT / "data/K2HPD/get_stage.py", "--stage", "1", "--val-fraction", "0.25"]


def test_mirror_images_follow_their_source(tmp_path):
    """A mirror made from an earlier image (a regenerated set, a dataset copied over) is remade."""
    dataset(tmp_path)
    assert run(STAGE1, cwd=tmp_path).returncode == 0
    mirrors = sorted((tmp_path / IMAGES).glob("*m.png"))
    assert len(mirrors) == 3
    new = np.random.default_rng(1).integers(0, 255, (K2HPD.height, K2HPD.width), dtype=np.uint8)
    source = mirrors[0].with_name(mirrors[0].name.replace("m.png", ".png"))
    cv2.imwrite(str(source), new)
    mirrors[1].write_bytes(b"damaged")
    assert run(STAGE1, cwd=tmp_path).returncode == 0
    for mirror in mirrors:
        original = cv2.imread(str(mirror.with_name(mirror.name.replace("m.png", ".png"))), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(mirror), cv2.IMREAD_UNCHANGED), cv2.flip(original, 1))
    assert not list((tmp_path / IMAGES).glob(".tmp-*"))


def test_nan_coordinates_are_refused_with_file_and_line(tmp_path):
    dataset(tmp_path)
    annotations = tmp_path / DATA / K2HPD.train_annotations
    lines = annotations.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(" ")[1].split(",")[0], "nan", 1)
    annotations.write_text("\n".join(lines) + "\n")
    failed(run(STAGE1, cwd=tmp_path), f"{DATA / K2HPD.train_annotations}:2", "'nan'")
    assert not (tmp_path / DATA / "stage1").exists()


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_annotation_file_is_refused(tmp_path, split):
    dataset(tmp_path)
    name = K2HPD.train_annotations if split == "train" else K2HPD.test_annotations
    (tmp_path / DATA / name).write_text("")
    failed(run(STAGE1, cwd=tmp_path), DATA / name, "no annotation lines")
    assert not (tmp_path / DATA / "stage1").exists()


@pytest.mark.parametrize("index", [0, 5])  # a training image, a test image
def test_16bit_training_image_is_refused(tmp_path, index):
    """convert_imageset would read it as value/256: the stage lists refuse it, naming it."""
    dataset(tmp_path)
    name = K2HPD.image_name(index)
    cv2.imwrite(str(tmp_path / IMAGES / name), np.full((K2HPD.height, K2HPD.width), 3000, np.uint16))
    failed(run(STAGE1, cwd=tmp_path), IMAGES / name, "16-bit", "8-bit")
    assert not (tmp_path / DATA / "stage1").exists()


# -- the model scripts ----------------------------------------------------------------------------------
def test_16bit_depth_png_is_read_at_its_real_depth(tmp_path):
    """A raw 16-bit millimetre PNG gives the description's 8-bit encoding, not value/256."""
    sample = render_sample(K2HPD, 0, 3)
    cv2.imwrite(str(tmp_path / "raw.png"), to_mm16(sample.depth))
    cv2.imwrite(str(tmp_path / "grey.png"), sample.image)
    raw, grey = preprocess.load_image(tmp_path / "raw.png", K2HPD), preprocess.load_image(tmp_path / "grey.png", K2HPD)
    assert raw.shape == grey.shape == (K2HPD.height, K2HPD.width, 3) and raw.dtype == np.uint8
    assert np.abs(raw.astype(int) - grey).max() <= 1  # millimetre rounding
    assert np.abs(cv2.imread(str(tmp_path / "raw.png")).astype(int) - grey).max() > 100  # what OpenCV alone gives


def test_16bit_colour_png_is_refused_by_pytest_py(tmp_path):
    cv2.imwrite(str(tmp_path / "colour16.png"), np.full((8, 8, 3), (1000, 2000, 3000), np.uint16))
    r = run([sys.executable, ROOT / "models/deeppose/pytest.py", tmp_path / "w.caffemodel", tmp_path / "colour16.png"],
            cwd=ROOT)
    failed(r, tmp_path / "colour16.png", "16-bit colour")


@pytest.fixture
def app(tmp_path):
    """A working directory with the stage-1 model files and a tiny data set."""
    for name in ("deeppose.prototxt", "deeppose_train_test.prototxt", "pyaccuracy.py"):
        (tmp_path / "models/deeppose").mkdir(parents=True, exist_ok=True)
        (tmp_path / "models/deeppose" / name).write_bytes((ROOT / "models/deeppose" / name).read_bytes())
    dataset(tmp_path, 2, 2)
    shape = deploy_input_shape(ROOT / "models/deeppose/deeppose.prototxt")
    mean = caffe.io.array_to_blobproto(np.full((1, *shape[1:]), 100, np.float32))
    (tmp_path / "models/deeppose/train_mean.binaryproto").write_bytes(mean.SerializeToString())
    return tmp_path


def unrelated_weights(path):
    """The caffemodel of a net sharing no layer name with DeepPose's."""
    net = caffe.Net.from_param(parse_prototxt(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } }\n'
        'layer { name: "other" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }',
        caffe_pb2.NetParameter()), caffe.TEST)
    net.save(str(path))
    return path


@pytest.mark.slow
def test_pyaccuracy_refuses_an_unrelated_nets_weights_and_keeps_the_last_report(app):
    weights = unrelated_weights(app / "other.caffemodel")
    report = app / "models/deeppose/accuracy.json"
    report.write_text('{"images": 2, "stages": {"stage 1": {}}}\n')
    before = report.read_bytes()
    r = run([sys.executable, "models/deeppose/pyaccuracy.py", weights.name, "--out", report], cwd=app)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "other.caffemodel" in r.stdout + r.stderr
    assert report.read_bytes() == before  # not emptied, not half-written
    assert not list(report.parent.glob(".tmp-*"))


def test_an_incomplete_accuracy_report_does_not_count_as_done(tmp_path):
    """The driver's check (its use is tested in test_e2e.py): emptied, cut or foreign JSON."""
    from deeppose.evaluate import read_report, write_report
    report = tmp_path / "accuracy.json"
    for content in ["", '{"images": 2, "stag', '{"images": 2}', "[]"]:
        report.write_text(content)
        with pytest.raises(ValueError, match=f"{report}: not a complete accuracy report"):
            read_report(report)
    report.write_text(json.dumps({"images": 2, "stages": {"stage 1": {"pcp": 0.5}}}))
    assert read_report(report)["images"] == 2
    write_report(report, {"images": 3, "seconds": 1.5, "stages": {"stage 1": {"pcp": 0.25}}})
    assert read_report(report) == {"images": 3, "stages": {"stage 1": {"pcp": 0.25}}}  # no timing


# -- convert_imageset(_multilabel) ------------------------------------------------------------------
def images(folder, shapes=((6, 5, 3),) * 3):
    folder.mkdir(exist_ok=True)
    for i, shape in enumerate(shapes):
        cv2.imwrite(str(folder / f"{i}.png"), np.full(shape, 40 * i % 256, np.uint8))
    return [f"{i}.png" for i in range(len(shapes))]


def leftovers(folder, db):
    """The database and any temporary folder a writer left beside it."""
    return [p.name for p in Path(folder).iterdir() if p.name == db or p.name.startswith(f".tmp-{db}")]


@pytest.mark.parametrize("lines, bad_line, words", [
    (["0.png 1 2 3", "1.png 4 5 6", "2.png 7 8"], 3, ["2 labels", "line 1 has 3"]),
    (["0.png 1 2", "1.png nan 2", "2.png 3 4"], 2, ["'nan'", "not a finite"]),
    (["0.png 1 2", "1.png 1 2", "2.png 3 -inf"], 3, ["'-inf'", "not a finite"]),
    (["0.png 1 2", "1.png 1 x"], 2, ["expected"]),
])
def test_bad_list_lines_are_refused_before_writing(tmp_path, lines, bad_line, words):
    images(tmp_path / "img")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    r = run([tool("convert_imageset_multilabel"), f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"])
    failed(r, f"{tmp_path / 'list.txt'}:{bad_line}", *words)
    assert leftovers(tmp_path, "db") == []


@pytest.mark.parametrize("multilabel", [False, True])
def test_a_list_of_missing_images_writes_no_database(tmp_path, multilabel):
    (tmp_path / "list.txt").write_text("a.png 1\nb.png 2\n")
    name = "convert_imageset_multilabel" if multilabel else "convert_imageset"
    r = run([tool(name), f"{tmp_path}/nowhere/", tmp_path / "list.txt", tmp_path / "db"])
    failed(r, f"{tmp_path / 'list.txt'}:1", "missing")
    assert leftovers(tmp_path, "db") == []


def test_check_size_failure_leaves_nothing_and_the_rerun_works(tmp_path):
    names = images(tmp_path / "img", ((6, 5, 3), (6, 5, 3), (7, 5, 3)))
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    args = [tool("convert_imageset"), f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"]
    failed(run(args + ["-check_size"]), f"{tmp_path / 'list.txt'}:3", "-check_size")
    assert leftovers(tmp_path, "db") == []
    assert run(args).returncode == 0 and len(LMDB(tmp_path / "db")) == 3


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_a_full_disk_leaves_no_database(tmp_path, backend):
    big = images(tmp_path / "img", ((200, 200, 3),) * 40)
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(big)))
    r = run([tool("convert_imageset"), "-backend", backend, f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"],
            limit_file_size=1 << 20)  # 40 records of 120 kB do not fit in 1 MB
    failed(r, tmp_path / "db", "writing the database failed")
    assert leftovers(tmp_path, "db") == []


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_an_interrupted_conversion_leaves_no_database(tmp_path, monkeypatch, backend):
    """Ctrl-C half-way (KeyboardInterrupt at the second image)."""
    from caffe.tools import convert_imageset
    names = images(tmp_path / "img")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    read = convert_imageset.image_datum
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return read(*args)
    monkeypatch.setattr(convert_imageset, "image_datum", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_imageset.main(["-backend", backend, f"{tmp_path}/img/", str(tmp_path / "list.txt"),
                               str(tmp_path / "db")])
    assert leftovers(tmp_path, "db") == []


def test_a_killed_writers_leftovers_are_cleared(tmp_path):
    names = images(tmp_path / "img")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    (tmp_path / ".tmp-db-killed").mkdir()
    (tmp_path / ".tmp-db-killed" / "data.mdb").write_bytes(b"half")
    assert run([tool("convert_imageset"), f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"]).returncode == 0
    assert leftovers(tmp_path, "db") == ["db"]


HOLDER = ("import sys, time; from caffe.filelock import hold; l = hold(sys.argv[1], 'database'); "
          "print('held', flush=True); time.sleep(60)")


@pytest.fixture
def writer(tmp_path):
    """Starts another process writing the database tmp_path/db (holding its lock)."""
    started = []

    def start():
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "db")], stdout=subprocess.PIPE, text=True)
        started.append(p)
        assert p.stdout.readline().strip() == "held"
        return p
    yield start
    for p in started:
        p.kill()
        p.wait()


def test_a_second_writer_of_a_database_is_refused(tmp_path, writer):
    names = images(tmp_path / "img")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    other = writer()
    r = run([tool("convert_imageset"), f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"])
    failed(r, tmp_path / "db", f"in use by process {other.pid}")
    assert leftovers(tmp_path, "db") == []


# -- readers: compute_image_mean and the Data layer ----------------------------------------------------
def small_lmdb(path, n=50):
    with LMDBWriter(path) as db:
        for i in range(n):
            datum = caffe.io.array_to_datum(np.full((3, 20, 20), i % 256, np.uint8), i)
            db.put(f"{i:08d}", datum.SerializeToString())
    return path


def data_net_file(folder, source, batch):
    path = folder / "net.prototxt"
    path.write_text(f'layer {{ name: "d" type: "Data" top: "data" top: "label" '
                    f'data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }} }}\n')
    return path


def test_compute_image_mean_refuses_a_database_being_written(tmp_path, writer):
    small_lmdb(tmp_path / "db")  # as a tool that writes in place would leave it half-way
    other = writer()
    failed(run([tool("compute_image_mean"), tmp_path / "db", tmp_path / "mean.binaryproto"]),
           tmp_path / "db", f"in use by process {other.pid}", "being written")
    assert not (tmp_path / "mean.binaryproto").exists()


def test_the_data_layer_refuses_a_database_being_written(tmp_path, writer):
    small_lmdb(tmp_path / "db")
    net = data_net_file(tmp_path, tmp_path / "db", 5)
    writer()
    failed(run([tool("caffe"), "time", "-model", net, "-iterations", 1]), tmp_path / "db", "being written")


def damage(db):
    """Overwrite a page of the LMDB in the middle (it then reads as MDB_CORRUPTED)."""
    with open(db / "data.mdb", "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek((size // 4096 // 2) * 4096)
        f.write(b"\xff" * 4096)


def test_compute_image_mean_names_a_damaged_database(tmp_path):
    damage(small_lmdb(tmp_path / "db", n=400))
    failed(run([tool("compute_image_mean"), tmp_path / "db", tmp_path / "mean.binaryproto"]), tmp_path / "db", "damaged")
    assert not (tmp_path / "mean.binaryproto").exists()


def test_a_leveldb_open_in_another_process_is_named(tmp_path):
    """LevelDB lets one process open a database (Caffe's too): the second is told so, by path."""
    names = images(tmp_path / "img")
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    args = [tool("convert_imageset"), "-backend", "leveldb", f"{tmp_path}/img/", tmp_path / "list.txt", tmp_path / "db"]
    assert run(args).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, plyvel; d = plyvel.DB(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(60)", str(tmp_path / "db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        failed(run([tool("compute_image_mean"), "-backend", "leveldb", tmp_path / "db"]), tmp_path / "db",
               "failed to open leveldb", "another has it open")
    finally:
        holder.kill()
        holder.wait()


def test_the_data_layer_names_a_damaged_database(tmp_path):
    damage(small_lmdb(tmp_path / "db", n=400))
    net = data_net_file(tmp_path, tmp_path / "db", 100)
    failed(run([tool("caffe"), "time", "-model", net, "-iterations", 4]), tmp_path / "db", "damaged")
