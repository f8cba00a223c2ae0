"""caffe.filelock: one writer per resource, released when the holder dies however it dies."""
import os
import signal
import subprocess
import sys

import pytest

from caffe.filelock import LockedError, hold

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
