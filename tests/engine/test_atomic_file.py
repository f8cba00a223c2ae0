"""caffe.atomic_file.atomic_write: the whole new content or the old file, never a half one."""
import os

import pytest

from caffe.atomic_file import atomic_write


def test_replaces_the_file_with_the_usual_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    atomic_write(path, "new")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert path.read_text() == "new" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic_write(path, 3)  # neither bytes nor str: fails while writing
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
