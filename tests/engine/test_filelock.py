"""caffe.filelock: one writer per resource, released when the holder dies however it dies."""
import os
import signal
import subprocess
import sys

import pytest

from caffe.filelock import LockedError, check_free, hold

HOLDER = "import sys, time; from caffe.filelock import hold; l = hold(sys.argv[1], 'db'); print('held', flush=True); time.sleep(60)"


def _holder(path):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    p = _holder(tmp_path / "db")
    try:
        with pytest.raises(LockedError, match=rf"db '.*db' is in use by process {p.pid}"):
            hold(tmp_path / "db", "db")
        with pytest.raises(LockedError):
            hold(tmp_path / "db", "db", shared=True)
    finally:
        p.kill()
        p.wait()


def test_sigkill_frees_the_lock(tmp_path):
    p = _holder(tmp_path / "db")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with hold(tmp_path / "db", "db"):
        pass


def test_readers_share_and_exclude_a_writer(tmp_path):
    with hold(tmp_path / "x", "db", shared=True), hold(tmp_path / "x", "db", shared=True):
        with pytest.raises(LockedError, match="in use by another process"):
            hold(tmp_path / "x", "db")
    with hold(tmp_path / "x", "db"):
        pass


def test_release_removes_the_lock_file(tmp_path):
    lock = tmp_path / "db.lock"
    with hold(tmp_path / "db", "db"):
        assert lock.exists()
    assert not lock.exists()
    with hold(tmp_path / "x", "db", shared=True):
        with hold(tmp_path / "x", "db", shared=True):
            pass
        assert (tmp_path / "x.lock").exists()  # the other sharer still holds it
    assert not (tmp_path / "x.lock").exists()  # the last one removed it


def test_a_killed_holders_file_is_removed_by_the_next(tmp_path):
    p = _holder(tmp_path / "db")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (tmp_path / "db.lock").exists()
    with hold(tmp_path / "db", "db"):  # the file stays, harmless: the lock died with its holder
        pass
    assert not (tmp_path / "db.lock").exists()
    p = _holder(tmp_path / "db")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    check_free(tmp_path / "db", "db")  # a reader's check removes it too
    assert not (tmp_path / "db.lock").exists()


RACER = """
import os, sys
from caffe.filelock import LockedError, check_free, hold
path, inside, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = 0
while held < rounds:
    try:
        lock = hold(path, "db", shared=held % 3 == 2)
    except LockedError:
        continue
    with lock:
        if held % 3 != 2:  # an exclusive holder: no one else may be inside
            try:
                fd = os.open(inside, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                sys.exit("two holders at once")
            os.close(fd)
            os.unlink(inside)
    held += 1
print(held)
"""


def test_racing_holders_never_hold_it_together(tmp_path):
    """Three processes take and release the lock (exclusively, now and then shared) as fast as
    they can, each release removing the file: an exclusive holder is always alone."""
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "db"), str(tmp_path / "inside"),
                               "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "300", err
    assert os.listdir(tmp_path) == []


def test_a_forked_child_leaves_its_parents_lock(tmp_path):
    with hold(tmp_path / "db", "db") as lock:
        pid = os.fork()
        if pid == 0:  # the child shares the parent's open lock file: releasing its copy only closes it
            lock.release()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert (tmp_path / "db.lock").exists()
        with pytest.raises(LockedError, match=f"in use by process {os.getpid()}"):
            hold(tmp_path / "db", "db")
    assert not (tmp_path / "db.lock").exists()
