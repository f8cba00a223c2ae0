"""Fixtures and helpers of the engine's tests (tests/engine): the golden set (its index, the
comparison with its worst-error report, a writable copy of its files), pycaffe's expected files,
the layers' helpers (one layer's text, forward and backward, the float64 gradient check), the
Data layer's (a record, a database, a net of one Data layer), a Python layer, glog lines, the
marker of the acceleration tests and the installed console scripts."""
import collections
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from torch.func import functional_call

import caffe
from caffe import accel
from caffe.formats.db.writers import new_db
from caffe.formats.protoio import parse_prototxt
from caffe.proto import caffe_pb2
from tests.conftest import DATA, GOLDEN, net_from

# for tests that check an acceleration is used (caffe.accel): none is with CAFFE_REFERENCE=1
ACCELERATED = pytest.mark.skipif(accel.reference(), reason="tests an acceleration: the reference switch is on")

# what the real pycaffe wrote (data/pycaffe/README.md); its case modules (io_cases, net_specs,
# text_cases) are imported by name, as its make_expected.py imports them
PYCAFFE_DATA = os.path.join(DATA, "pycaffe")
PYCAFFE_EXPECTED = np.load(os.path.join(PYCAFFE_DATA, "expected.npz"))
sys.path.insert(0, PYCAFFE_DATA)


def tool(name):
    """The path of a console script installed beside this Python (caffe, convert_imageset, ...)."""
    return os.path.join(os.path.dirname(sys.executable), name)


GLOG = re.compile(r"^([IWEF])\d+ [\d:.]+ +\d+ (.*)$")


def glog_lines(text):
    """'S file:line] message' of each glog line (time and thread masked, as make_expected.sh does)."""
    return [f"{m.group(1)} {m.group(2)}" for m in map(GLOG.match, text.splitlines()) if m]


# -- the golden set ------------------------------------------------------------------------------
RTOL, ATOL = 1e-4, 1e-5  # float results, as the set's README gives them; integer results must be exact
# worst relative error per golden category, reported at the end of the run
WORST = collections.defaultdict(lambda: (0.0, ""))


def golden_index(folder):
    """The index of a folder of golden cases ("layers", "rules"): {case: what it checks}."""
    with open(os.path.join(GOLDEN, folder, "index.json")) as f:
        return json.load(f)


def record_error(category, case, err):
    if err >= WORST[category][0]:
        WORST[category] = (err, case)


def pytest_terminal_summary(terminalreporter):
    if WORST:
        terminalreporter.section("golden conformance: worst error relative to the array's scale")
        for category, (err, case) in sorted(WORST.items()):
            terminalreporter.write_line(f"{category:10s} {err:.3g}  ({case})")


def compare(category, case, what, ours, ref, exact=False):
    """Our array against Caffe's (within RTOL/ATOL, or `exact`), its error recorded for the report."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{case} {what}: shape {ours.shape}, Caffe {ref.shape}"
    scale = max(np.abs(ref).max(initial=0.0), 1e-12)
    record_error(category, f"{case} {what}", float(np.abs(ours - ref).max(initial=0.0) / scale))
    if exact:
        np.testing.assert_array_equal(ours, ref, err_msg=f"{case} {what}")
    else:
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL, err_msg=f"{case} {what}")


@pytest.fixture
def golden_files(tmp_path, monkeypatch):
    """A writable copy of tests/golden/files as the working directory (the paths inside its
    prototxts are relative to it); returns its path."""
    folder = tmp_path / "files"
    shutil.copytree(os.path.join(GOLDEN, "files"), folder)
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            os.chmod(os.path.join(root, name), 0o755)
    monkeypatch.chdir(folder)
    return folder


# -- layers --------------------------------------------------------------------------------------
def layer(type_, bottoms, tops=("y",), extra=""):
    """Prototxt text of one layer named "layer" of `type_` (`extra`: its parameters)."""
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "layer" type: "{type_}" {b} {t} {extra} }}\n'


def forward_backward(net, diffs=None, **inputs):
    """Set the inputs, forward, set the top diffs, backward; returns the net."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    net.forward()
    for name, value in (diffs or {}).items():
        net.blobs[name].diff[...] = value
    net.backward()
    return net


def check_gradients(tmp_path, type_, params, bottoms):
    """torch's float64 gradcheck of one layer: bottoms [(shape, make(shape, generator))], the layer's
    blobs drawn in [0.1, 1.1); no gradient is checked for its no_grad_bottoms."""
    names = [f"b{i}" for i in range(len(bottoms))]
    net = net_from(tmp_path, {n: shape for n, (shape, _) in zip(names, bottoms)}, layer(type_, names, extra=params))
    module = net.layers[-1].module.double()
    g = torch.Generator().manual_seed(0)
    xs = [make(shape, g).requires_grad_(i not in module.no_grad_bottoms)
          for i, (shape, make) in enumerate(bottoms)]
    blobs = {f"blobs.{i}": (torch.rand_like(p) + 0.1).requires_grad_() for i, p in enumerate(module.blobs)}

    def f(*args):
        return functional_call(module, dict(zip(blobs, args[len(xs):])), tuple(args[:len(xs)]))

    assert torch.autograd.gradcheck(f, (*xs, *blobs.values()))


DOUBLE_LAYER = """
import caffe


class Double(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
"""


def python_double_layer(tmp_path, monkeypatch, module):
    """Write a Python layer `module`.Double (top = 2 bottom) importable for this test."""
    (tmp_path / f"{module}.py").write_text(DOUBLE_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))


# -- the Data layer ------------------------------------------------------------------------------
def datum(value, label=0, floats=(), shape=(3, 4, 5)):
    """A raw Datum whose pixels all equal `value` except pixel [c, h, w] = c + h + w (for flips)."""
    img = np.full(shape, value, np.uint8)
    img[:, :, 0] += np.arange(shape[1], dtype=np.uint8)[None]
    d = caffe.io.array_to_datum(img, label)
    d.float_data.extend(floats)
    return d


def make_db(path, values, backend="lmdb"):
    """A database of `values` (Datums or bytes) in order, at `path`; the path as str."""
    with new_db(path, backend) as w:
        for i, v in enumerate(values):
            w.put(f"{i:08d}_item", v if isinstance(v, bytes) else v.SerializeToString())
    return str(path)


def data_net(source, phase=caffe.TRAIN, batch=2, tops=("data", "label"), data_param="", transform="",
             backend="LMDB"):
    """A net of one Data layer; backend None leaves data_param.backend unset (LEVELDB)."""
    text = f"""layer {{ name: "d" type: "Data" {' '.join(f'top: "{t}"' for t in tops)}
      transform_param {{ {transform} }}
      data_param {{ source: "{source}" batch_size: {batch} {f'backend: {backend}' if backend else ''} {data_param} }} }}"""
    return caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), phase)
