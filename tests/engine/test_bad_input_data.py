"""Bad input and faults of the engine's data tools and readers, as a user meets them: each case
runs the real command (convert_imageset(_multilabel), compute_image_mean, `caffe time` on a Data
layer) on a tiny input and checks the exit status, that the message names the place (file:line,
database, option), and that nothing was left half-written. (The engine's other commands:
test_bad_input.py; the application's: tests/app/test_bad_input.py.)
"""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.formats.db.readers import LMDB
from caffe.formats.db.writers import LMDBWriter
from tests.conftest import failed, run_command as run
from tests.engine.conftest import tool


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
