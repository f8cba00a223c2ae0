"""The Caffe tools' flags named in their own words: a bad value ends the tool with status 1 (as
its other errors) and a message naming the flag and the value, before anything is read or
written. (The application's options: tests/app/test_options.py.)"""
import os

import pytest


def test_convert_imageset_names_a_bad_encode_type(tmp_path, capsys):
    """Checked before anything is read or written (OpenCV's own error came from deep inside)."""
    from caffe.tools import convert_imageset
    (tmp_path / "list.txt").write_text("a.png 1\n")
    assert convert_imageset.main(["-encode_type=xyz", f"{tmp_path}/", str(tmp_path / "list.txt"),
                                  str(tmp_path / "db")]) == 1
    assert "-encode_type=xyz: OpenCV has no encoder for that type" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["list.txt"]


@pytest.mark.parametrize("delimiter", ["", ";;"])
def test_parse_log_names_a_bad_delimiter(tmp_path, capsys, delimiter):
    from caffe.tools import parse_log
    assert parse_log.main([f"-delimiter={delimiter}", "train.log", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"parse_log: -delimiter={delimiter!r}: must be one character\n"
