"""`type: "Python"` layers (pycaffe's `caffe.Layer`): training against the built-in layers they
mirror, a Python data layer under `caffe train`, learnable blobs through snapshots, errors that
name the layer; and the pycaffe Net surface around them (hooks, ranged backward, share_with,
clear_param_diffs in place)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import caffe
from tests.conftest import write_net
from tests.engine.conftest import tool

LAYERS = '''
import numpy as np
import caffe


class EuclideanLoss(caffe.Layer):
    """Caffe's examples/pycaffe/layers/pyloss.py, scaled by the top diff (the loss_weight)."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i, sign in enumerate((1, -1)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num


class Scalar(caffe.Layer):
    """top = w * bottom with one learnable w (initially param_str)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class LineData(caffe.Layer):
    """x ~ U(-1, 1), y = 3x - 1, with a batch size cycling through 2..5 (tops reshaped each time)."""

    def setup(self, bottom, top):
        self.rng = np.random.RandomState(int(self.param_str))
        self.calls = 0

    def reshape(self, bottom, top):
        n = 2 + self.calls % 4
        top[0].reshape(n, 1)
        top[1].reshape(n, 1)

    def forward(self, bottom, top):
        self.calls += 1
        top[0].data[...] = self.rng.uniform(-1, 1, top[0].shape)
        top[1].data[...] = 3 * top[0].data - 1


class GlobalNoise(caffe.Layer):
    """x ~ N(0, 1) and y = 2x + noise, drawn from numpy's global RNG (seeded once, in setup)."""

    def setup(self, bottom, top):
        np.random.seed(int(self.param_str))

    def reshape(self, bottom, top):
        top[0].reshape(4, 1)
        top[1].reshape(4, 1)

    def forward(self, bottom, top):
        top[0].data[...] = np.random.normal(size=top[0].shape)
        top[1].data[...] = 2 * top[0].data + 0.1 * np.random.normal(size=top[1].shape)


class Raises(caffe.Layer):
    def setup(self, bottom, top):
        self.where = self.param_str

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        if self.where == "forward":
            1 / 0
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        raise KeyError("no backward today")


class WrongShape(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = np.ones((7, 7))


class NotALayer(object):
    pass
'''


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working directory holding the layer module (imported from there, as Caffe does)."""
    name = f"pylayers_{os.path.basename(tmp_path)}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(LAYERS)
    monkeypatch.chdir(tmp_path)
    yield tmp_path, name
    sys.modules.pop(name, None)


def regression_net(module, loss):
    return f'''
    name: "reg"
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 6 dim: 4 }} }} }}
    layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 6 dim: 2 }} }} }}
    layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "out"
      inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }}
                             bias_filler {{ type: "constant" value: 0.2 }} }} }}
    {loss.replace("MODULE", module)}
    '''


BUILTIN_LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "y" top: "loss" loss_weight: W }'
PYTHON_LOSS = ('layer { name: "loss" type: "Python" bottom: "out" bottom: "y" top: "loss" loss_weight: W\n'
               '  python_param { module: "MODULE" layer: "EuclideanLoss" } }')


def sgd(tmp_path, net_file, **extra):
    text = f'net: "{net_file}" base_lr: 0.1 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" ' \
           f'max_iter: 100 display: 0 random_seed: 5 snapshot_after_train: false snapshot_prefix: "snap" '
    text += " ".join(f"{k}: {v}" for k, v in extra.items())
    path = tmp_path / f"solver_{os.path.basename(net_file)}"
    path.write_text(text)
    return caffe.SGDSolver(str(path))


def test_layer_type_list_and_base_class():
    assert "Python" in caffe.layer_type_list()
    assert caffe.Layer.type == "Python"


@pytest.mark.parametrize("weight", [1, 2.5])
def test_python_loss_trains_like_builtin_euclidean_loss(here, weight):
    tmp, module = here
    rng = np.random.RandomState(0)
    x, y = rng.randn(6, 4).astype(np.float32), rng.randn(6, 2).astype(np.float32)
    solvers = []
    for name, loss in (("builtin", BUILTIN_LOSS), ("python", PYTHON_LOSS)):
        net_file = write_net(tmp / f"{name}.prototxt", regression_net(module, loss.replace("W", str(weight))))
        s = sgd(tmp, net_file)
        s.net.blobs["x"].data[...] = x
        s.net.blobs["y"].data[...] = y
        solvers.append(s)
    builtin, python = solvers
    first = [s.net.forward()["loss"].item() for s in solvers]
    assert first[1] == pytest.approx(first[0], rel=1e-6)
    for s in solvers:
        s.step(15)
    for a, b in zip(builtin.net.params["ip"], python.net.params["ip"]):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-5, atol=1e-6)
    assert not np.allclose(builtin.net.params["ip"][0].data, 0)
    assert python.net.forward()["loss"].item() == pytest.approx(builtin.net.forward()["loss"].item(), rel=1e-5)


SCALAR_NET = '''
name: "scalar"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 5 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 5 dim: 3 } } }
LAYER
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }
'''
PY_SCALAR = ('layer { name: "scale" type: "Python" bottom: "x" top: "s"\n'
             '  python_param { module: "MODULE" layer: "Scalar" param_str: "0.5" } }')
BUILTIN_SCALAR = ('layer { name: "scale" type: "Scale" bottom: "x" top: "s"\n'
                  '  scale_param { num_axes: 0 filler { type: "constant" value: 0.5 } } }')


def test_learnable_blobs_are_updated_saved_and_restored(here):
    tmp, module = here
    rng = np.random.RandomState(1)
    x = rng.randn(5, 3).astype(np.float32)
    solvers = []
    for name, layer in (("builtin", BUILTIN_SCALAR), ("python", PY_SCALAR.replace("MODULE", module))):
        s = sgd(tmp, write_net(tmp / f"{name}_scalar.prototxt", SCALAR_NET.replace("LAYER", layer)))
        s.net.blobs["x"].data[...] = x
        s.net.blobs["y"].data[...] = 3 * x
        solvers.append(s)
    for s in solvers:
        s.step(4)
    builtin, python = solvers
    w = python.net.params["scale"][0].data.copy()
    assert w.shape == (1,) and python.net.layer_dict["scale"].blobs[0] is python.net.params["scale"][0]
    np.testing.assert_allclose(w.ravel(), builtin.net.params["scale"][0].data.ravel(), rtol=1e-6)
    assert abs(w[0] - 0.5) > 0.1  # it moved towards 3

    python.snapshot()  # snap_iter_4.caffemodel + .solverstate
    python.step(3)
    after7 = python.net.params["scale"][0].data.copy()
    again = sgd(tmp, str(tmp / "python_scalar.prototxt"))
    again.net.blobs["x"].data[...] = x
    again.net.blobs["y"].data[...] = 3 * x
    again.restore("snap_iter_4.solverstate")
    assert again.iter == 4
    np.testing.assert_array_equal(again.net.params["scale"][0].data, w)
    again.step(3)  # momentum history restored too: the same three updates
    np.testing.assert_array_equal(again.net.params["scale"][0].data, after7)

    net = caffe.Net(str(tmp / "python_scalar.prototxt"), caffe.TEST, weights="snap_iter_4.caffemodel")
    np.testing.assert_array_equal(net.params["scale"][0].data, w)


def test_python_layer_gradient_reaches_earlier_layers(here):
    tmp, module = here
    body = regression_net(module, "") + PY_SCALAR.replace("MODULE", module).replace('bottom: "x"', 'bottom: "out"') + \
        '\nlayer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }'
    net = caffe.Net(write_net(tmp / "chain.prototxt", body), caffe.TRAIN)
    rng = np.random.RandomState(2)
    net.blobs["x"].data[...] = rng.randn(6, 4)
    net.blobs["y"].data[...] = rng.randn(6, 2)
    net.forward()
    net.backward()
    W, x = net.params["ip"][0].data, net.blobs["x"].data
    out = x @ W.T + net.params["ip"][1].data
    d_s = (0.5 * out - net.blobs["y"].data) / 6
    np.testing.assert_allclose(net.params["ip"][0].diff, (0.5 * d_s).T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.params["scale"][0].diff, [np.sum(d_s * out)], rtol=1e-5)


DATA_NET = '''
name: "line"
layer { name: "data" type: "Python" top: "x" top: "y"
  python_param { module: "MODULE" layer: "LineData" param_str: "3" } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "out"
  inner_product_param { num_output: 1 weight_filler { type: "constant" value: 0 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "y" top: "loss" }
'''


def test_python_data_layer_reshapes_every_forward(here):
    tmp, module = here
    net = caffe.Net(write_net(tmp / "data.prototxt", DATA_NET.replace("MODULE", module)), caffe.TRAIN)
    shapes = []
    for _ in range(4):
        net.forward()
        shapes.append(net.blobs["x"].shape)
        np.testing.assert_allclose(net.blobs["y"].data, 3 * net.blobs["x"].data - 1, rtol=1e-6)
    assert shapes == [(2, 1), (3, 1), (4, 1), (5, 1)]  # reshape runs before each forward
    assert net.layers[0].calls == 4  # net.layers[i] is the user's own object, as in pycaffe


@pytest.mark.slow
def test_resume_continues_numpy_global_rng(here):
    """numpy's global RNG, which Python layers draw from, is part of the resume state: `caffe train`
    resumed from the middle snapshot ends with the bytes of the run that was never stopped."""
    tmp, module = here
    write_net(tmp / "data.prototxt", DATA_NET.replace("LineData", "GlobalNoise").replace("MODULE", module))
    solver = ('net: "data.prototxt" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" max_iter: 8 snapshot: 4 '
              'snapshot_prefix: "{}/run" solver_mode: CPU')
    caffe_tool = tool("caffe")
    runs = {}
    for name, args in (("ref", []), ("res", ["--snapshot=ref/run_iter_4.solverstate"])):  # uninterrupted, resumed
        os.mkdir(tmp / name)
        (tmp / f"{name}.prototxt").write_text(solver.format(name))
        r = subprocess.run([caffe_tool, "train", f"--solver={name}.prototxt", *args], cwd=tmp, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = [(tmp / name / f"run_iter_8{ext}").read_bytes() for ext in (".caffemodel", ".solverstate")]
    assert runs["res"][0] == runs["ref"][0]
    assert runs["res"][1].replace(b"res/", b"ref/") == runs["ref"][1]  # (learned_net names the folder)


@pytest.mark.slow
def test_python_data_layer_feeds_caffe_train(here):
    tmp, module = here
    write_net(tmp / "data.prototxt", DATA_NET.replace("MODULE", module))
    (tmp / "solver.prototxt").write_text('net: "data.prototxt" base_lr: 0.2 momentum: 0.9 lr_policy: "fixed" '
                                         'max_iter: 150 display: 50 snapshot_prefix: "line" solver_mode: CPU')
    caffe_tool = tool("caffe")
    r = subprocess.run([caffe_tool, "train", "--solver=solver.prototxt"], cwd=tmp, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Optimization Done." in r.stderr
    net = caffe.Net(str(tmp / "data.prototxt"), caffe.TEST, weights=str(tmp / "line_iter_150.caffemodel"))
    w, b = net.params["ip"][0].data.item(), net.params["ip"][1].data.item()
    assert w == pytest.approx(3, abs=0.05) and b == pytest.approx(-1, abs=0.05)


def error_net(tmp, module, layer, param_str="", extra=""):
    return write_net(tmp / f"err_{layer}.prototxt", f'''
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
    layer {{ name: "bad" type: "Python" bottom: "x" top: "t" {extra}
      python_param {{ module: "{module}" layer: "{layer}" param_str: "{param_str}" }} }}
    ''', force_backward=True)


def test_errors_name_the_layer_module_and_class_with_the_traceback(here):
    tmp, module = here
    net = caffe.Net(error_net(tmp, module, "Raises", "forward"), caffe.TRAIN)
    with pytest.raises(RuntimeError) as e:
        net.forward()
    text = str(e.value)
    assert f"'bad' (module '{module}', class 'Raises')" in text and "forward() raised ZeroDivisionError" in text
    assert "1 / 0" in text  # the user's line, from the original traceback
    assert isinstance(e.value.__cause__, ZeroDivisionError)

    net = caffe.Net(error_net(tmp, module, "Raises", "backward"), caffe.TRAIN)
    net.forward()
    with pytest.raises(RuntimeError, match=r"'bad' .*class 'Raises'.*backward\(\) raised KeyError"):
        net.backward()

    net = caffe.Net(error_net(tmp, module, "WrongShape"), caffe.TRAIN)
    with pytest.raises(RuntimeError, match=r"class 'WrongShape'.*forward\(\) raised ValueError.*broadcast"):
        net.forward()


@pytest.mark.parametrize("module, layer, message", [
    ("no_such_module_xyz", "Layer", r"cannot import module 'no_such_module_xyz'.*working directory"),
    ("MODULE", "Missing", r"has no attribute 'Missing'"),
    ("MODULE", "NotALayer", r"NotALayer is not a class deriving from caffe.Layer"),
    ("MODULE", "", r"needs both `module` and `layer`"),
])
def test_import_errors(here, module, layer, message):
    tmp, name = here
    module = module.replace("MODULE", name)
    with pytest.raises(RuntimeError, match=message) as e:
        caffe.Net(error_net(tmp, module, layer), caffe.TRAIN)
    assert "err_" in str(e.value) and "layer 'bad'" in str(e.value)


@pytest.mark.slow
def test_caffe_train_reports_a_failing_python_layer(here):
    tmp, module = here
    error_net(tmp, module, "Raises", "forward", extra="loss_weight: 1")
    (tmp / "solver.prototxt").write_text('net: "err_Raises.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 2')
    caffe_tool = tool("caffe")
    r = subprocess.run([caffe_tool, "train", "--solver=solver.prototxt"], cwd=tmp, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    assert f"Python layer 'bad' (module '{module}', class 'Raises'): forward() raised ZeroDivisionError" in r.stderr


HOOK_NET = '''
name: "hooks"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "y" top: "loss" }
'''


def test_hooks_run_around_each_layer(tmp_path):
    net = caffe.Net(write_net(tmp_path / "h.prototxt", HOOK_NET), caffe.TRAIN)
    net.blobs["x"].data[...] = np.random.RandomState(3).randn(2, 3)
    calls, seen = [], {}
    for kind in ("before_forward", "after_forward", "before_backward", "after_backward"):
        getattr(net, kind)(lambda i, kind=kind: calls.append((kind, i)))
    net.after_backward(lambda i: seen.setdefault(i, net.params["ip"][0].diff.copy()) if i == 2 else None)
    net.forward()
    net.backward()
    n = len(net.layers)
    assert calls == [(k, i) for i in range(n) for k in ("before_forward", "after_forward")] + \
                    [(k, i) for i in reversed(range(n)) for k in ("before_backward", "after_backward")]
    assert np.abs(seen[2]).sum() > 0  # ip's param diff is there when its after_backward runs

    plain = caffe.Net(str(tmp_path / "h.prototxt"), caffe.TRAIN)  # same result without hooks
    for name in ("x", "y"):
        plain.blobs[name].data[...] = net.blobs[name].data
    plain.params["ip"][0].data[...] = net.params["ip"][0].data
    plain.forward()
    plain.backward()
    np.testing.assert_allclose(plain.params["ip"][0].diff, net.params["ip"][0].diff, rtol=1e-6)


def test_clear_param_diffs_zeroes_in_place(tmp_path):
    net = caffe.Net(write_net(tmp_path / "h.prototxt", HOOK_NET), caffe.TRAIN)
    net.blobs["x"].data[...] = 1
    net.forward()
    net.backward()
    diff = net.params["ip"][0].diff
    assert np.abs(diff).sum() > 0
    net.clear_param_diffs()
    assert not diff.any()
    net.forward()
    net.backward()
    assert np.abs(diff).sum() > 0  # the next backward writes into the same array


def test_backward_start_end_and_surface(tmp_path):
    net = caffe.Net(write_net(tmp_path / "h.prototxt", HOOK_NET, force_backward=True), caffe.TRAIN)
    rng = np.random.RandomState(4)
    net.blobs["x"].data[...] = rng.randn(2, 3)
    net.forward()
    g = rng.randn(2, 4).astype(np.float32)
    net.blobs["h"].diff[...] = g
    out = net.backward(start="relu", end="ip")
    assert set(out) == {"x"}
    mask = net.blobs["h"].data > 0
    np.testing.assert_allclose(out["x"], (g * mask) @ net.params["ip"][0].data, rtol=1e-5, atol=1e-6)
    assert list(net.layer_dict) == list(net._layer_names) and net.layer_dict["ip"] is net.layers[2]
    names = net._blob_names
    assert [names[i] for i in net._top_ids(2)] == ["h"] and [names[i] for i in net._bottom_ids(4)] == ["h", "y"]
    assert net._inputs == [names.index("x"), names.index("y")] and [names[i] for i in net._outputs] == ["loss"]
    assert net._blobs[names.index("h")] is net.blobs["h"]
    assert net._forward(0, len(net.layers) - 1) == pytest.approx(float(net.blobs["loss"].data))


def test_forward_backward_all(tmp_path):
    body = '''
    name: "lin"
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "out"
      inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
    '''
    net = caffe.Net(write_net(tmp_path / "lin.prototxt", body, force_backward=True), caffe.TEST)
    rng = np.random.RandomState(5)
    x, d = rng.randn(5, 3).astype(np.float32), rng.randn(5, 2).astype(np.float32)
    blobs, diffs = net.forward_backward_all(x=x, out=d)
    W = net.params["ip"][0].data
    assert blobs["out"].shape == (5, 2) and diffs["x"].shape == (5, 3)
    np.testing.assert_allclose(blobs["out"], x @ W.T + net.params["ip"][1].data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diffs["x"], d @ W, rtol=1e-5, atol=1e-6)


def test_share_with_shares_python_and_builtin_params(here):
    tmp, module = here
    body = SCALAR_NET.replace("LAYER", PY_SCALAR.replace("MODULE", module))
    a = caffe.Net(write_net(tmp / "a.prototxt", body), caffe.TRAIN)
    b = caffe.Net(str(tmp / "a.prototxt"), caffe.TEST)
    b.share_with(a)
    a.params["scale"][0].data[0] = 4
    b.blobs["x"].data[...] = 1
    b.forward()
    np.testing.assert_allclose(b.blobs["s"].data, 4)


def test_module_functions():
    assert caffe.__version__ == "1.0.0"
    t = caffe.Timer()
    t.start()
    t.stop()
    assert t.ms >= 0
    count, rank = caffe.solver_count(), caffe.solver_rank()
    try:
        caffe.set_solver_count(4)
        caffe.set_solver_rank(2)
        assert (caffe.solver_count(), caffe.solver_rank()) == (4, 2)
    finally:
        caffe.set_solver_count(count)
        caffe.set_solver_rank(rank)


def test_python_layer_refuses_multi_gpu_in_one_process(here):
    tmp, module = here
    caffe.set_solver_count(2)
    try:
        with pytest.raises(RuntimeError, match="multi-GPU"):
            caffe.Net(error_net(tmp, module, "Raises"), caffe.TRAIN)
        caffe.set_multiprocess(True)
        caffe.Net(error_net(tmp, module, "Raises"), caffe.TRAIN)
    finally:
        caffe.set_solver_count(1)
        caffe.set_multiprocess(False)


def test_share_in_parallel_has_no_effect(here):
    """Caffe marks python_param.share_in_parallel DEPRECATED and never reads it."""
    tmp, module = here
    outs = []
    for flag in ("false", "true"):
        body = SCALAR_NET.replace("LAYER", PY_SCALAR.replace("MODULE", module).replace(
            'param_str: "0.5"', f'param_str: "0.5" share_in_parallel: {flag}'))
        net = caffe.Net(write_net(tmp / f"sip_{flag}.prototxt", body), caffe.TRAIN)
        net.blobs["x"].data[...] = 2
        net.forward()
        net.backward()
        outs.append((net.blobs["s"].data.copy(), net.params["scale"][0].diff.copy()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_get_solver_from_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_net(tmp_path / "h.prototxt", HOOK_NET)
    s = caffe.get_solver_from_string('net: "h.prototxt" base_lr: 0.1 lr_policy: "fixed" solver_type: NESTEROV')
    assert isinstance(s, caffe.NesterovSolver) and s.lr == pytest.approx(0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_python_layer_on_gpu_matches_cpu(here):
    tmp, module = here
    body = SCALAR_NET.replace("LAYER", PY_SCALAR.replace("MODULE", module))
    results = []
    for mode in ("cpu", "gpu"):
        getattr(caffe, f"set_mode_{mode}")()
        try:
            s = sgd(tmp, write_net(tmp / f"{mode}.prototxt", body))
            s.net.blobs["x"].data[...] = np.arange(15).reshape(5, 3) / 15
            s.net.blobs["y"].data[...] = 3 * s.net.blobs["x"].data
            s.step(3)
            results.append(s.net.params["scale"][0].data.copy())
        finally:
            caffe.set_mode_cpu()
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)
