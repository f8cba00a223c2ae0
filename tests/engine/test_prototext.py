"""The text of a message, byte for byte as the real Caffe writes it (tests/data/pycaffe/text_cases.py;
the expected files were written by the real pycaffe and C++ tools with
`(source /opt/seed-caffe/env.sh; $SEED_PY tests/data/pycaffe/make_text.py tests/data/pycaffe)`):
`str(message)` as pycaffe's (fields in caffe.proto's declaration order, UTF-8 as is), a written
prototxt as C++'s WriteProtoToTextFile (fields by number, non-ASCII escaped), and both read back
to the same message and printed again unchanged."""
import os

import pytest
from google.protobuf import text_format

from caffe import io as caffe_io
from caffe.formats.prototext import prototxt_text
from tests.engine.conftest import PYCAFFE_DATA
import text_cases  # tests/data/pycaffe, on sys.path by tests/engine/conftest.py


def expected(name):
    with open(os.path.join(PYCAFFE_DATA, name), encoding="utf-8", newline="") as f:
        return f.read()


@pytest.mark.parametrize("name", sorted(text_cases.CASES))
def test_str_is_pycaffes_and_reads_back(name):
    ours, theirs = text_cases.CASES[name](), expected(f"text_{name}.prototxt")
    assert str(ours) == theirs
    back = text_format.Parse(theirs, type(ours)())
    assert back == ours and str(back) == theirs


@pytest.mark.parametrize("name", ["every_kind", "solver"])
def test_written_prototxt_is_caffes_and_reads_back(name, tmp_path):
    ours, theirs = text_cases.CASES[name](), expected(f"cpp_{name}.prototxt")
    assert prototxt_text(ours) == theirs
    caffe_io.write_prototxt(tmp_path / "written.prototxt", ours)
    assert (tmp_path / "written.prototxt").read_text(encoding="utf-8") == theirs
    back = text_format.Parse(theirs, type(ours)())
    assert back == ours and prototxt_text(back) == theirs


def test_stride_before_group():
    """The issue's case: an AlexNet-style convolution, `group` (field 5) after `stride` (field 6)
    as caffe.proto declares them, in pycaffe's text; C++ writes them by number."""
    conv = text_cases.every_kind().layer[1].convolution_param
    assert str(conv).index("stride:") < str(conv).index("group:")
    assert prototxt_text(conv).index("group:") < prototxt_text(conv).index("stride:")
