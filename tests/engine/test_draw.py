"""caffe.draw and the draw_net tool: pycaffe's graph of a net, rendered by Graphviz's dot."""
import os
import shutil
import subprocess
import sys

import pydot
import pytest
from google.protobuf import text_format

import caffe
import caffe.draw
from caffe.proto import caffe_pb2
from tests.engine.conftest import PYCAFFE_DATA

LENET = os.path.join(PYCAFFE_DATA, "net_spec_lenet.prototxt")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def lenet():
    with open(LENET) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    net.name = "LeNetSpec"
    return net


def normalised(dot_text):
    return pydot.graph_from_dot_data(dot_text)[0].to_string()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's parser on new pyparsing
@pytest.mark.parametrize("expected, kwargs", [
    ("draw_lenet_TB_TEST_lrm.dot", dict(rankdir="TB", phase=caffe.TEST, display_lrm=True)),
    ("draw_lenet_LR.dot", dict(rankdir="LR")),
])
def test_graph_is_pycaffes(expected, kwargs):
    """The dot source BVLC's python/caffe/draw.py wrote for the same net (see data/pycaffe/README.md)."""
    ours = caffe.draw.get_pydot_graph(lenet(), kwargs.pop("rankdir"), **kwargs).to_string()
    with open(os.path.join(PYCAFFE_DATA, expected)) as f:
        assert normalised(ours) == normalised(f.read())


def test_phase_filter_and_labels():
    graph = caffe.draw.get_pydot_graph(lenet(), "LR", phase=caffe.TRAIN)
    names = [n.get_name() for n in graph.get_nodes()]
    assert not any("Accuracy" in n for n in names)  # include { phase: TEST }
    assert '"pool1\\n(Pooling MAX)\\nkernel size: 2\\nstride: 2\\npad: 0"' in names
    labels = {(e.get_source(), e.get_destination()): e.get("label") for e in graph.get_edges()}
    assert labels[('"ip2\\n(InnerProduct)"', "ip2")] == "10"
    bad = lenet()
    bad.layer[1].exclude.add(phase=caffe.TEST)
    bad.layer[1].include.add(phase=caffe.TRAIN)
    with pytest.raises(ValueError, match="layer conv1 has both include and exclude"):
        caffe.draw.get_pydot_graph(bad, "LR", phase=caffe.TEST)


@needs_dot
def test_draw_net_renders_png_and_svg(tmp_path):
    png = caffe.draw.draw_net(lenet(), "LR")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    caffe.draw.draw_net_to_file(lenet(), str(tmp_path / "net.svg"), "TB")
    assert "<svg" in (tmp_path / "net.svg").read_text()
    with pytest.raises(RuntimeError, match="dot cannot render the net as 'xyz': Format: \"xyz\" not recognized"):
        caffe.draw.draw_net_to_file(lenet(), str(tmp_path / "net.xyz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.svg"]


@needs_dot
def test_draw_net_tool(tmp_path):
    out = tmp_path / "lenet.png"
    run = subprocess.run([sys.executable, "-m", "caffe.tools.draw_net", "--rankdir", "TB", "--phase", "TEST",
                          "--display_lrm", LENET, str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"Drawing net to {out}\n" and out.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: 'a' typo: 1 }\n")
    run = subprocess.run([sys.executable, "-m", "caffe.tools.draw_net", str(bad), str(tmp_path / "x.png")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and f"{bad}:1:" in run.stderr and "typo" in run.stderr
    assert not (tmp_path / "x.png").exists()
    run = subprocess.run([sys.executable, "-m", "caffe.tools.draw_net", LENET, str(tmp_path / "no" / "x.png")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr == f"draw_net: cannot write {tmp_path / 'no' / 'x.png'}: No such file or directory\n"


def test_draw_net_without_dot_says_so(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="Graphviz's `dot`"):
        caffe.draw.draw_net(lenet(), "LR")
