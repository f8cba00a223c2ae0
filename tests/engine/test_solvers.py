"""Solvers against a plain float64 numpy implementation of Caffe's formulas, plus the solver's
bookkeeping: lr policies, history layout, test nets, logs, snapshots (atomic, resumable in a new
process bit for bit), NaN guard."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe
from caffe.filelock import LockedError
from caffe.solvers import SolverError, learning_rate
from caffe.proto import caffe_pb2
from tests.conftest import ROOT

NET = """
name: "ref"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 5 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "x" top: "h"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.3 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "fc2" type: "InnerProduct" bottom: "h" top: "out"
  param { lr_mult: 0.5 decay_mult: 2 } param { lr_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 }
                        bias_filler { type: "constant" value: -0.2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "y" top: "loss"
  loss_param { normalization: FULL } }
layer { name: "loss2" type: "EuclideanLoss" bottom: "out" bottom: "y" top: "loss2" loss_weight: 0.5
  include { phase: TEST stage: "val" } }
"""
LR_MULT, DECAY_MULT = (1.0, 2.0, 0.5), (1.0, 0.0, 2.0)  # W1, b1, W2 (b2 is frozen: lr_mult 0)
BASE = dict(base_lr=0.05, momentum=0.9, weight_decay=0.02, lr_policy="fixed", max_iter=10, display=0,
            random_seed=7, snapshot_after_train=False, solver_mode="CPU", net="net.prototxt")


def solver_text(**fields):
    out = []
    for key, value in {**BASE, **fields}.items():
        for v in value if isinstance(value, list) else [value]:
            raw = key in ("lr_policy", "net", "type", "regularization_type", "snapshot_prefix")
            out.append(f'{key}: "{v}"' if raw else f"{key}: {str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(out) + "\n"


@pytest.fixture
def make_solver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def make(**fields):
        """A solver from BASE + fields, written as s.prototxt (with net.prototxt) in the current folder."""
        with open("net.prototxt", "w") as f:
            f.write(NET)
        with open("s.prototxt", "w") as f:
            f.write(solver_text(**fields))
        return caffe.get_solver("s.prototxt")
    return make


def batch(i):
    rng = np.random.RandomState(100 + i)
    return rng.randn(4, 5).astype(np.float32), rng.randn(4, 3).astype(np.float32)


def feed(solver):
    x, y = batch(solver.iter)
    solver.net.blobs["x"].data[...] = x
    solver.net.blobs["y"].data[...] = y


def weights(net):
    return [net.params[n][i].data.copy() for n in ("fc1", "fc2") for i in (0, 1)]


# -- the numpy reference ----------------------------------------------------------------------------
def ref_lr(c, it, step):
    base, gamma, power = c["base_lr"], c.get("gamma", 0.0), c.get("power", 0.0)
    policy = c["lr_policy"]
    if policy == "multistep":
        values = c.get("stepvalue", [])
        if step < len(values) and it >= values[step]:
            step += 1
    return {"fixed": base, "step": base * gamma ** (it // c.get("stepsize", 1)), "exp": base * gamma ** it,
            "inv": base * (1 + gamma * it) ** -power, "multistep": base * gamma ** step,
            "poly": base * (1 - it / c["max_iter"]) ** power,
            "sigmoid": base / (1 + np.exp(-gamma * (it - c.get("stepsize", 0))))}[policy], step


def ref_grads(w, x, y):
    w1, b1, w2, b2 = w
    h = x @ w1.T + b1
    d = (h @ w2.T + b2 - y) / y.size
    dh = d @ w2
    return [dh.T @ x, dh.sum(0), d.T @ h]


def reference(c, w0, n):
    """Weights after each of n iterations and the final history, by Caffe's formulas in float64."""
    c = {**BASE, **c}
    kind, iter_size = c.get("type", "SGD"), c.get("iter_size", 1)
    w = [a.astype(np.float64) for a in w0]
    hist = [[np.zeros_like(a) for a in w] for _ in range(2)]
    out, step = [], 0
    for it in range(n):
        g = [iter_size * a for a in ref_grads(w, *batch(it))]  # iter_size identical passes
        rate, step = ref_lr(c, it, step)
        norm = np.sqrt(sum((a * a).sum() for a in g))
        if c.get("clip_gradients", -1) >= 0 and norm > c["clip_gradients"]:  # before normalising
            g = [a * c["clip_gradients"] / norm for a in g]
        g = [a / iter_size for a in g]
        for i in range(3):
            reg = np.sign(w[i]) if c.get("regularization_type") == "L1" else w[i]
            g[i] = g[i] + c["weight_decay"] * DECAY_MULT[i] * reg
            lr, mom, delta, h, u = rate * LR_MULT[i], c["momentum"], c.get("delta", 1e-8), hist[0], hist[1]
            if kind == "SGD":
                h[i] = mom * h[i] + lr * g[i]
                upd = h[i]
            elif kind == "Nesterov":
                old = h[i]
                h[i] = mom * h[i] + lr * g[i]
                upd = (1 + mom) * h[i] - mom * old
            elif kind == "AdaGrad":
                h[i] = h[i] + g[i] ** 2
                upd = lr * g[i] / (np.sqrt(h[i]) + delta)
            elif kind == "RMSProp":
                d = c.get("rms_decay", 0.99)
                h[i] = d * h[i] + (1 - d) * g[i] ** 2
                upd = lr * g[i] / (np.sqrt(h[i]) + delta)
            elif kind == "AdaDelta":
                h[i] = mom * h[i] + (1 - mom) * g[i] ** 2
                upd = g[i] * np.sqrt((u[i] + delta) / (h[i] + delta))
                u[i] = mom * u[i] + (1 - mom) * upd ** 2
                upd = lr * upd
            elif kind == "Adam":
                b2, t = c.get("momentum2", 0.999), it + 1
                h[i] = mom * h[i] + (1 - mom) * g[i]
                u[i] = b2 * u[i] + (1 - b2) * g[i] ** 2
                upd = lr * np.sqrt(1 - b2 ** t) / (1 - mom ** t) * h[i] / (np.sqrt(u[i]) + delta)
            w[i] = w[i] - upd
        out.append([a.copy() for a in w])
    return out, hist


CONFIGS = {
    "sgd_fixed": {},
    "sgd_step": dict(lr_policy="step", gamma=0.5, stepsize=3),
    "sgd_exp": dict(lr_policy="exp", gamma=0.9),
    "sgd_inv": dict(lr_policy="inv", gamma=0.1, power=0.75),
    "sgd_multistep": dict(lr_policy="multistep", gamma=0.5, stepvalue=[2, 5, 6]),
    "sgd_poly": dict(lr_policy="poly", power=2.0),
    "sgd_sigmoid": dict(lr_policy="sigmoid", gamma=0.5, stepsize=4),
    "sgd_l1": dict(regularization_type="L1"),
    "sgd_clip_iter_size": dict(clip_gradients=0.05, iter_size=2),
    "nesterov": dict(type="Nesterov", lr_policy="step", gamma=0.5, stepsize=3),
    "adagrad": dict(type="AdaGrad", momentum=0.0, delta=1e-6),
    "rmsprop": dict(type="RMSProp", momentum=0.0, rms_decay=0.95, delta=1e-6),
    "adadelta": dict(type="AdaDelta", base_lr=1.0, momentum=0.95, delta=1e-6),
    "adam": dict(type="Adam", base_lr=0.01, momentum2=0.999, lr_policy="inv", gamma=0.1, power=0.75),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_against_numpy(name, make_solver):
    cfg = CONFIGS[name]
    solver = make_solver(**cfg)
    assert type(solver).__name__ == cfg.get("type", "SGD") + "Solver"
    views = [solver.net.params[n][i].data for n in ("fc1", "fc2") for i in (0, 1)]
    w0 = weights(solver.net)
    n = 8
    ref_w, ref_hist = reference(cfg, w0, n)
    step = 0
    for it in range(n):
        rate, step = ref_lr({**BASE, **cfg}, it, step)
        np.testing.assert_allclose(solver.lr, rate, rtol=1e-6, err_msg=f"{name} lr at iteration {it}")
        feed(solver)
        solver.step(1)
        assert solver.iter == it + 1
        for k, (ours, ref) in enumerate(zip(weights(solver.net), ref_w[it])):
            np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-6, err_msg=f"{name} param {k} after {it + 1}")
    np.testing.assert_array_equal(views[3], w0[3])  # lr_mult 0: frozen
    for view, now in zip(views, weights(solver.net)):  # the numpy views follow the updates
        np.testing.assert_array_equal(view, now)
    # history: Caffe's layout, one blob per parameter (frozen ones too) per slot, slot-major
    slots = 2 if cfg.get("type") in ("AdaDelta", "Adam") else 1
    assert len(solver.history) == 4 * slots
    for s in range(slots):
        for k in range(3):
            np.testing.assert_allclose(solver.history[4 * s + k].numpy(), ref_hist[s][k], rtol=1e-4, atol=1e-6)
        assert not solver.history[4 * s + 3].any()


def test_multistep_moves_one_stepvalue_at_a_time():
    p = caffe_pb2.SolverParameter(base_lr=1.0, gamma=0.5, lr_policy="multistep", stepvalue=[2, 4])
    assert learning_rate(p, 10, 0) == (0.5, 1)  # a restored run behind on current_step catches up
    assert learning_rate(p, 11, 1) == (0.25, 2)
    assert learning_rate(p, 12, 2) == (0.25, 2)


@pytest.mark.parametrize("fields, message", [
    (dict(lr_policy="cosine"), "unknown lr_policy 'cosine'"),
    (dict(lr_policy="step"), "stepsize > 0"),
    (dict(regularization_type="L3"), "regularization_type"),
    (dict(type="Adamax"), "unknown solver type 'Adamax'"),
    (dict(net="missing.prototxt"), "missing.prototxt"),
    (dict(test_iter=2), "test_interval"),
    (dict(snapshot=2, snapshot_prefix="no/such/dir/x"), "Cannot write to snapshot prefix"),
])
def test_clear_errors(make_solver, fields, message):
    with pytest.raises(ValueError, match=message):
        make_solver(**fields)


def test_legacy_solver_type_and_default_prefix(make_solver, tmp_path):
    make_solver()
    (tmp_path / "legacy.prototxt").write_text(solver_text() + "solver_type: ADAM\n")
    solver = caffe.get_solver("legacy.prototxt")
    assert isinstance(solver, caffe.AdamSolver) and solver.param.snapshot_prefix == "legacy"


def test_nan_loss_stops_before_the_update(make_solver):
    solver = make_solver()
    feed(solver)
    solver.step(1)
    before = weights(solver.net)
    solver.net.blobs["x"].data[0, 0] = np.inf
    with pytest.raises(SolverError, match="Iteration 1: the loss is (nan|inf)"):
        solver.step(1)
    assert solver.iter == 1
    for a, b in zip(before, weights(solver.net)):
        np.testing.assert_array_equal(a, b)


def test_test_nets_states_and_logs(make_solver, capsys):
    solver = make_solver(test_iter=2, test_interval=2, test_state="{ stage: 'val' }", display=1,
                         average_loss=2, max_iter=4, test_compute_loss=True)
    test_net = solver.test_nets[0]
    assert test_net.outputs == ["loss", "loss2"] and solver.net.outputs == ["loss"]
    assert test_net.params["fc1"][0].param is solver.net.params["fc1"][0].param  # shared weights
    solver.add_callback(lambda: feed(solver), lambda: None)
    losses = []
    solver.add_callback(lambda: None, lambda: losses.append(float(solver.net.blobs["loss"].data)))
    solver.solve()
    log = [line for line in capsys.readouterr().err.splitlines() if re.match(r"[IWEF]\d{4}", line)]
    assert all(line[0] == "I" for line in log)
    messages = [line.split("] ", 1)[1] for line in log]
    assert "Solving ref" in messages and "Learning Rate Policy: fixed" in messages
    assert messages[-1] == "Optimization Done."
    fields = [line.split() for line in log if "Iteration" in line and "loss" in line and "lr" not in line]
    shown = {int(f[5]): float(f[12]) for f in fields if "iters)," in f}  # awk '{print $6,$13}'
    assert sorted(shown) == [0, 1, 2, 3]
    for it in range(1, 4):  # average_loss 2: the mean of the last two losses
        assert shown[it] == pytest.approx((losses[it - 1] + losses[it]) / 2, rel=1e-5)
    tests = [m for m in messages if m.startswith("    Test net output")]
    assert len(tests) == 3 * 2  # iterations 0, 2, 4; two outputs each
    name, value = tests[-2].split(": ", 1)[1].split(" = ", 1)
    assert name == "loss" and "(* 1 = " in value
    assert "Iteration 4, Testing net (#0)" in messages
    assert sum(m.startswith("Test loss: ") for m in messages) == 3
    assert any(m.startswith("Iteration 3, lr = 0.05") for m in messages)
    assert any(m.startswith("Iteration 4, loss = ") for m in messages)


def test_solve_holds_the_snapshot_prefix(make_solver):
    """solve() holds the snapshot prefix's lock as `caffe train` does: a second solver on the prefix
    refuses while the first solves, and may solve once the first is done."""
    os.mkdir("snaps")
    first = make_solver(snapshot_prefix="snaps/run", max_iter=2)
    second = make_solver(snapshot_prefix="snaps/run", max_iter=2)
    refusals = []

    def start_second():
        feed(first)
        if not refusals:
            with pytest.raises(LockedError, match=rf"snapshot prefix 'snaps/run' is in use by process {os.getpid()}"):
                second.solve()
            refusals.append(second.iter)

    first.add_callback(start_second, lambda: None)
    first.solve()
    assert refusals == [0] and first.iter == 2
    second.add_callback(lambda: feed(second), lambda: None)
    second.solve()
    assert second.iter == 2


def test_snapshot_files(make_solver, tmp_path):
    os.mkdir("snaps")
    solver = make_solver(type="Adam", snapshot=2, snapshot_prefix="snaps/run", max_iter=3,
                         snapshot_after_train=True, lr_policy="multistep", gamma=0.5, stepvalue=[1])
    solver.add_callback(lambda: feed(solver), lambda: None)
    solver.solve()
    assert sorted(os.listdir("snaps")) == ["run_iter_2.caffemodel", "run_iter_2.solverstate",
                                           "run_iter_3.caffemodel", "run_iter_3.solverstate"]
    state = caffe_pb2.SolverState.FromString(open("snaps/run_iter_3.solverstate", "rb").read())
    assert (state.iter, state.learned_net, state.current_step, len(state.history)) == \
        (3, "snaps/run_iter_3.caffemodel", 1, 8)
    net = caffe.Net("net.prototxt", "snaps/run_iter_3.caffemodel", caffe.TRAIN)
    for a, b in zip(weights(net), weights(solver.net)):
        np.testing.assert_array_equal(a, b)


def test_interrupted_snapshot_keeps_the_previous_one(make_solver, monkeypatch):
    solver = make_solver(snapshot=2, snapshot_prefix="run")
    solver.add_callback(lambda: feed(solver), lambda: None)
    solver.step(2)
    names = ["run_iter_2.caffemodel", "run_iter_2.solverstate"]
    saved = {n: open(n, "rb").read() for n in names}

    def crash(fd):
        raise KeyboardInterrupt("killed while writing")
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", crash)  # the data is written, the file not yet in place
        with pytest.raises(KeyboardInterrupt):
            solver.snapshot()  # the same snapshot again: must not damage the existing files
        with pytest.raises(KeyboardInterrupt):
            solver.step(2)  # iteration 4's snapshot
    assert sorted(f for f in os.listdir(".") if f.startswith(("run", ".tmp"))) == names
    for n in names:
        assert open(n, "rb").read() == saved[n]


RESUME = textwrap.dedent("""
    import os
    import sys
    import numpy as np
    import caffe
    sys.path.insert(0, sys.argv[1])
    from tests.engine.test_solvers import feed, weights
    for folder in sys.argv[2:]:
        os.chdir(folder)
        solver = caffe.get_solver("s.prototxt")
        solver.add_callback(lambda: feed(solver), lambda: None)
        solver.restore("snap_iter_3.solverstate")
        solver.step(3)
        np.savez("resumed.npz", *weights(solver.net), *[h.numpy() for h in solver.history], it=solver.iter)
""")
RESUMED = {"sgd_multistep": dict(type="SGD", lr_policy="multistep", gamma=0.5, stepvalue=[2, 4]),
           "adam": dict(type="Adam", base_lr=0.01)}


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_exact(make_solver, tmp_path, monkeypatch):
    """6 iterations straight == 3 iterations, snapshot, then a new process restores and does 3 more."""
    expected = {}
    for name, fields in RESUMED.items():
        monkeypatch.chdir(tmp_path)
        os.mkdir(name)
        straight = make_solver(**fields)
        straight.add_callback(lambda: feed(straight), lambda: None)
        straight.step(6)
        expected[name] = weights(straight.net) + [h.numpy() for h in straight.history]
        monkeypatch.chdir(name)
        first = make_solver(snapshot=3, snapshot_prefix="snap", **fields)
        first.add_callback(lambda: feed(first), lambda: None)
        first.step(3)
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    env = dict(os.environ, GLOG_minloglevel="1")
    subprocess.run([sys.executable, str(script), ROOT,
                    *[str(tmp_path / name) for name in RESUMED]], check=True, env=env)
    for name in RESUMED:
        resumed = np.load(tmp_path / name / "resumed.npz")
        assert resumed["it"] == 6
        for i, a in enumerate(expected[name]):
            np.testing.assert_array_equal(resumed[f"arr_{i}"], a, err_msg=f"{name} array {i}")


@pytest.mark.parametrize("handed_out", [False, True])
def test_after_the_update_the_param_diffs_hold_it(make_solver, handed_out):
    """Caffe's ApplyUpdate leaves the update (data_before - data_after) in every diff; SGD's is not
    copied there unless read, but reads the same through a `.diff` array taken before or after
    the step, and the next backward without a clear accumulates onto it."""
    solver = make_solver()
    blobs = [solver.net.params[n][i] for n in ("fc1", "fc2") for i in (0, 1)]
    early = [b.diff for b in blobs] if handed_out else None
    for _ in range(2):
        feed(solver)
        before = weights(solver.net)
        solver.step(1)
    updates = [b - a for b, a in zip(before, weights(solver.net))]
    for k, (blob, update) in enumerate(zip(blobs, updates)):
        np.testing.assert_allclose(blob.diff, update, rtol=1e-4, atol=1e-7, err_msg=f"param {k}")
        if early is not None:
            np.testing.assert_array_equal(early[k], blob.diff)
    np.testing.assert_array_equal(blobs[0].diff, solver.history[0].numpy())
    solver.net.forward()
    solver.net.backward()  # no ClearParamDiffs: the gradient adds to the update
    accumulated = blobs[2].diff.copy()
    solver.net.clear_param_diffs()
    assert not blobs[0].diff.any()
    solver.net.forward()
    solver.net.backward()
    assert np.abs(blobs[2].diff).max() > 0
    np.testing.assert_allclose(accumulated, updates[2] + blobs[2].diff, rtol=1e-5, atol=1e-7)
