"""Bad input and faults of the engine's commands (issue 12, engine side): signals during `caffe
train`, exact resume, the snapshot-prefix lock, orphan temporary files, weights that set nothing,
zero-size layers, nets without a loss, `-iterations 0`.

Each case runs the real command (the `caffe` console script, or its entry point in-process where
a refusal is all it checks) on a tiny net and LMDB, and checks the exit status, that the message
names the place, and that nothing was lost or half written.
"""
import os
import random
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest

import caffe
from caffe.filelock import hold
from caffe.formats.db.writers import new_db
from caffe.proto import caffe_pb2
from caffe.solvers import resume_state
from caffe.tools import caffe_main
from tests.conftest import GOLDEN, write_net

NET = """name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mirror: true crop_size: 6 scale: 0.0039 }
  data_param { source: "train_lmdb" batch_size: 3 backend: LMDB label_num: 1 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 6 scale: 0.0039 }
  data_param { source: "train_lmdb" batch_size: 2 backend: LMDB label_num: 1 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" dropout_param { dropout_ratio: 0.5 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
MAX_ITER, SNAPSHOT = 36, 12
SOLVER = f"""net: "net.prototxt"
test_iter: 2  test_interval: 5
base_lr: 0.05  momentum: 0.9  weight_decay: 0.001
lr_policy: "step"  gamma: 0.5  stepsize: 15
display: 1  max_iter: {MAX_ITER}
snapshot: {SNAPSHOT}  snapshot_prefix: "snap/net"
random_seed: 7  solver_mode: CPU
"""
FINAL = f"snap/net_iter_{MAX_ITER}"


def make_workdir(folder, backend="lmdb"):
    """A tiny training set-up in `folder`: a 7-record LMDB (batches of 3 wrap around it), a net with
    random crops, mirrors and Dropout, a solver with tests and periodic snapshots (the real Caffe of
    the seed runs it too). With backend "leveldb" the same records are in a LevelDB, train_leveldb,
    and the Data layers have no `backend` (LEVELDB, Caffe's default)."""
    os.makedirs(folder / "snap")
    rng = np.random.default_rng(0)
    with new_db(folder / f"train_{backend}", backend) as w:
        for i in range(7):
            datum = caffe.io.array_to_datum(rng.integers(0, 256, (1, 8, 8), dtype=np.uint8))
            datum.float_data.append(i % 2)  # the DeepPose Data layer's label (label_num: 1)
            w.put(f"{i:08d}", datum.SerializeToString())
    (folder / "net.prototxt").write_text(NET if backend == "lmdb" else
                                         NET.replace('"train_lmdb"', '"train_leveldb"').replace(" backend: LMDB", ""))
    (folder / "solver.prototxt").write_text(SOLVER)
    return folder


def caffe_cmd(cwd, *args):
    return subprocess.Popen(["caffe", *args], cwd=cwd, stderr=subprocess.PIPE, text=True)


def train_until(cwd, iteration, sig, *args, then=()):
    """Start `caffe train`, send `sig` once its log shows `Iteration <iteration>` (then each of the
    (iteration, signal) pairs of `then` likewise), and return the exit status and the log."""
    p = caffe_cmd(cwd, "train", "-solver", "solver.prototxt", *args)
    log, signals = [], [(iteration, sig), *then]
    for line in p.stderr:
        log.append(line)
        if signals and re.search(rf"\] Iteration {signals[0][0]}, lr = ", line):
            p.send_signal(signals.pop(0)[1])
            if not signals:
                break
    log.extend(p.stderr)
    return p.wait(timeout=120), "".join(log)


def run_caffe(cwd, *args):
    p = subprocess.run(["caffe", *args], cwd=cwd, stderr=subprocess.PIPE, text=True, timeout=300)
    return p.returncode, p.stderr


def snapshot_bytes(cwd, stem):
    return {ext: (cwd / f"{stem}{ext}").read_bytes() for ext in (".caffemodel", ".solverstate")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its final snapshot's bytes."""
    folder = make_workdir(tmp_path_factory.mktemp("reference"))
    rc, log = run_caffe(folder, "train", "-solver", "solver.prototxt")
    assert rc == 0, log
    return snapshot_bytes(folder, FINAL)


def latest_solverstate(folder):
    states = [f for f in os.listdir(folder / "snap") if f.endswith(".solverstate")]
    return max(states, key=lambda f: int(re.search(r"_iter_(\d+)\.", f).group(1)), default=None)


def resume_and_compare(folder, reference, log):
    state = latest_solverstate(folder)
    args = ["-snapshot", f"snap/{state}"] if state else []  # killed before any snapshot: start again
    rc, resumed = run_caffe(folder, "train", "-solver", "solver.prototxt", *args)
    assert rc == 0, resumed
    assert snapshot_bytes(folder, FINAL) == reference, f"resumed from {state} (first run's log:\n{log[-3000:]})"


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 0)])
def test_signal_then_resume_is_exact(tmp_path, reference, sig, status):
    """The kill test: stopped by SIGTERM (or Ctrl-C) at a random iteration, the run snapshots;
    resumed with -snapshot it ends with the same weights and solver state as a run never stopped,
    bit for bit (data position, crops, mirrors, Dropout masks and the test net's position included)."""
    folder = make_workdir(tmp_path / "run")
    at = random.Random().randrange(1, MAX_ITER * 2 // 3)
    rc, log = train_until(folder, at, sig)
    assert rc == status, log
    stopped = int(re.findall(r"Snapshotting solver state to binary proto file snap/net_iter_(\d+)", log)[-1])
    assert at < stopped < MAX_ITER, log  # stopped early, where the signal came, with a snapshot
    if sig == signal.SIGTERM:
        assert f"Stopped by SIGTERM at iteration {stopped}; resume with -snapshot snap/net_iter_{stopped}" in log
    resume_and_compare(folder, reference, log)


def without_sources(snapshot):
    """A snapshot's bytes with the Data layers' data_param (the database's name and kind) cleared
    from its caffemodel: the weights and the solver state."""
    net = caffe_pb2.NetParameter.FromString(snapshot[".caffemodel"])
    for layer in net.layer:
        layer.ClearField("data_param")
    return dict(snapshot, **{".caffemodel": net.SerializeToString()})


@pytest.mark.slow
def test_training_on_a_leveldb_runs_and_resumes_as_on_the_lmdb(tmp_path, reference):
    """The same records in a LevelDB read by Data layers without `backend`: the run ends with the
    LMDB run's weights and solver state, bit for bit, and so does a run resumed from its first
    snapshot (the data positions are LevelDB keys)."""
    folder = make_workdir(tmp_path / "run", backend="leveldb")
    rc, log = run_caffe(folder, "train", "-solver", "solver.prototxt")
    assert rc == 0, log
    assert "Opened leveldb train_leveldb" in log
    assert without_sources(snapshot_bytes(folder, FINAL)) == without_sources(reference)
    for name in os.listdir(folder / "snap"):
        if not name.startswith(f"net_iter_{SNAPSHOT}."):
            os.remove(folder / "snap" / name)
    rc, log = run_caffe(folder, "train", "-solver", "solver.prototxt", "-snapshot",
                        f"snap/net_iter_{SNAPSHOT}.solverstate")
    assert rc == 0, log
    assert without_sources(snapshot_bytes(folder, FINAL)) == without_sources(reference)


@pytest.mark.slow
def test_sigkill_between_snapshots_then_resume_is_exact(tmp_path, reference):
    """SIGKILL leaves only the periodic snapshots (and perhaps a half-written temporary file, here
    made by hand): the resumed run removes the orphan, keeps other files, and ends exactly."""
    folder = make_workdir(tmp_path / "run")
    rc, log = train_until(folder, SNAPSHOT + 5, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert latest_solverstate(folder) == f"net_iter_{SNAPSHOT}.solverstate"
    orphan = folder / "snap" / f".tmp-net_iter_{2 * SNAPSHOT}.caffemodelx8y2k"
    orphan.write_bytes(b"\0" * 100)
    other = folder / "snap" / ".tmp-other_iter_3.caffemodelabc"  # another prefix's: not ours to remove
    other.write_bytes(b"\0")
    resume_and_compare(folder, reference, log)
    assert not orphan.exists() and other.exists()


@pytest.mark.slow
def test_sighup_snapshots_and_sigint_effect_none_ignores(tmp_path, reference):
    """SIGHUP (-sighup_effect snapshot, Caffe's default) writes a snapshot and training goes on;
    with -sigint_effect none, Ctrl-C does nothing; the weights are those of an undisturbed run."""
    folder = make_workdir(tmp_path / "run")
    rc, log = train_until(folder, 5, signal.SIGHUP, "-sigint_effect", "none", then=[(20, signal.SIGINT)])
    assert rc == 0 and "Optimization stopped early" not in log, log
    extra = [int(n) for n in re.findall(r"binary proto file snap/net_iter_(\d+)\.solverstate", log)]
    assert extra[0] < SNAPSHOT and extra[-1] == MAX_ITER, log
    assert snapshot_bytes(folder, FINAL) == reference


def test_solverstate_keeps_caffes_fields(tmp_path, reference):
    """Our .solverstate is Caffe's message plus field 1000 (unknown to Caffe, skipped by its parser)."""
    state = caffe_pb2.SolverState.FromString(reference[".solverstate"])
    assert state.iter == MAX_ITER and state.learned_net == f"{FINAL}.caffemodel" and len(state.history) == 4
    state.DiscardUnknownFields()
    assert 0 < state.ByteSize() < len(reference[".solverstate"])


SEED_CAFFE = "/opt/seed-caffe/bin/caffe"


@pytest.mark.skipif(not os.path.exists(SEED_CAFFE), reason="the real Caffe is not built on this machine")
def test_real_caffe_resumes_from_our_solverstate(tmp_path, reference):
    folder = make_workdir(tmp_path / "run")
    for ext, data in reference.items():
        (folder / f"{FINAL}{ext}").write_bytes(data)
    (folder / "solver.prototxt").write_text(SOLVER.replace(f"max_iter: {MAX_ITER}", f"max_iter: {MAX_ITER + 2}"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([SEED_CAFFE, "train", "-solver", "solver.prototxt", "-snapshot", f"{FINAL}.solverstate"],
                       cwd=folder, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"Resuming from {FINAL}.solverstate" in p.stderr and "SGDSolver: restoring history" in p.stderr
    assert f"Iteration {MAX_ITER + 1}" in p.stderr and f"Iteration {MAX_ITER - 1}" not in p.stderr
    assert os.path.exists(folder / f"snap/net_iter_{MAX_ITER + 2}.solverstate")


@pytest.mark.slow
def test_second_train_on_a_held_prefix_refused(tmp_path, capsys):
    """A second `caffe train` with a snapshot prefix in use refuses before training, naming the prefix
    and the holder; the first one's snapshots are untouched."""
    folder = make_workdir(tmp_path / "run")
    (folder / "snap" / "net_iter_40.caffemodel").write_bytes(b"first run's")
    with hold(folder / "snap" / "net", "snapshot prefix"):  # held by this process, as by a running `caffe train`
        rc, log = run_caffe(folder, "train", "-solver", "solver.prototxt")
    assert rc == 1
    assert f"snapshot prefix 'snap/net' is in use by process {os.getpid()}" in log
    assert "Starting Optimization" not in log and "Iteration" not in log
    assert sorted(os.listdir(folder / "snap")) == ["net_iter_40.caffemodel"]  # the lock file gone with its holder
    assert (folder / "snap" / "net_iter_40.caffemodel").read_bytes() == b"first run's"


@pytest.mark.parametrize("layer", [
    'layer { name: "d" type: "Data" top: "data" top: "label" transform_param { mirror: true crop_size: 5 } '
    'data_param { source: "train_lmdb" batch_size: 3 backend: LMDB label_num: 1 rand_skip: 4 } }',
    'layer { name: "d" type: "ImageData" top: "data" top: "label" transform_param { mirror: true crop_size: 5 } '
    f'image_data_param {{ source: "{GOLDEN}/files/list_int.txt" root_folder: "{GOLDEN}/files/" batch_size: 4 '
    'shuffle: true } }'])
def test_data_layer_seek_repeats_the_batches(workdir, layer):
    """A data layer moved back to a read position gives the same batches again (the records, crops,
    mirrors and shuffled order), though its thread had read ahead."""
    caffe.set_random_seed(3)
    net = caffe.Net(write_net("data.prototxt", layer), caffe.TRAIN)
    for _ in range(2):
        net.forward()
    position = resume_state.net_positions(net)
    batches = [{k: v.copy() for k, v in net.forward().items()} for _ in range(5)]
    resume_state.seek_net(net, position, "test")
    for expected in batches:
        got = net.forward()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])


# -- refusals, run in-process ---------------------------------------------------------------------

def caffe_in_process(capsys, *argv):
    capsys.readouterr()
    rc = caffe_main.main(list(argv))
    return rc, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = make_workdir(tmp_path / "run")
    monkeypatch.chdir(folder)
    return folder


def fatal(log):
    """The message of the log's fatal line."""
    lines = [line for line in log.splitlines() if line.startswith("F")]
    assert len(lines) == 1, log
    return lines[0].split("] ", 1)[1]


def train_weights(capsys):
    """A caffemodel of the tiny net (2 training iterations)."""
    with open("solver.prototxt", "w") as f:
        f.write(SOLVER.replace(f"max_iter: {MAX_ITER}", "max_iter: 2"))
    rc, log = caffe_in_process(capsys, "train", "-solver", "solver.prototxt")
    assert rc == 0, log
    return "snap/net_iter_2.caffemodel"


@pytest.mark.parametrize("command", ["test", "time"])
def test_iterations_zero_refused(workdir, capsys, command):
    args = ["-model", "net.prototxt", "-iterations", "0"] + (["-weights", "w.caffemodel"] if command == "test" else [])
    rc, log = caffe_in_process(capsys, command, *args)
    assert rc == 1 and fatal(log) == "-iterations=0: give a positive number of iterations"


@pytest.mark.parametrize("input_dims, layer, message", [
    (3, 'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 0 } }',
     "layer 'fc' (type InnerProduct): inner_product_param.num_output must be positive, got 0"),
    (3, 'layer { name: "d" type: "DummyData" top: "z" dummy_data_param { shape { dim: 2 dim: 0 } '
        'data_filler { type: "gaussian" } } }',  # Caffe's fillers refuse an empty blob (CHECK(count))
     "layer 'd' (type DummyData): dummy_data_param: top 0 has shape (2, 0), with no elements"),
    (0, 'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }',
     "layer 'fc' (type InnerProduct): cannot fill a blob of shape (2, 0): it has no elements"),
], ids=["inner_product_num_output_0", "dummy_data_dim_0", "weights_of_an_empty_input"])
def test_zero_size_outputs_refused(workdir, capsys, input_dims, layer, message):
    write_net("zero.prototxt", f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 2 '
                               f'dim: {input_dims} }} }} }}\n{layer}\n')
    rc, log = caffe_in_process(capsys, "time", "-model", "zero.prototxt", "-iterations", "1")
    assert rc == 1 and fatal(log).startswith(f"zero.prototxt:2: {message}")


def test_train_net_without_loss_refused(workdir, capsys):
    """Caffe trains a net without a loss with loss 0 (weight decay alone moves the weights); we refuse."""
    write_net("net.prototxt", NET.replace('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
                                          'top: "loss" }', 'layer { name: "silence" type: "Silence" bottom: "label" }'))
    rc, log = caffe_in_process(capsys, "train", "-solver", "solver.prototxt")
    assert rc == 1
    assert fatal(log).startswith("the train net 'tiny' has no loss (no top has a non-zero loss_weight)")
    assert os.listdir("snap") == []  # nothing trained, nothing written, no lock left


def test_empty_caffemodel_refused(workdir, capsys):
    open("empty.caffemodel", "wb").close()
    rc, log = caffe_in_process(capsys, "test", "-model", "net.prototxt", "-weights", "empty.caffemodel")
    assert rc == 1 and fatal(log).startswith("empty.caffemodel: sets no layer of net 'tiny'")
    with pytest.raises(caffe.net.NetError, match="empty.caffemodel: sets no layer of net 'tiny'"):
        caffe.Net("net.prototxt", "empty.caffemodel", caffe.TEST)


def test_weights_of_another_net_refused(workdir, capsys):
    """A caffemodel sharing no layer name with the net: Caffe's "Ignoring source layer" for each of its
    layers, then a refusal naming the file (pycaffe's Net, copy_from, caffe test and caffe train -weights)."""
    other = caffe.Net(write_net("other.prototxt", NET.replace('name: "conv"', 'name: "conv_b"')
                                .replace('name: "ip"', 'name: "ip_b"')), caffe.TEST)
    other.save("other.caffemodel")
    rc, log = caffe_in_process(capsys, "test", "-model", "net.prototxt", "-weights", "other.caffemodel")
    assert rc == 1 and fatal(log).startswith("other.caffemodel: sets no layer of net 'tiny'")
    assert "Ignoring source layer conv_b" in log and "Ignoring source layer ip_b" in log
    net = caffe.Net("net.prototxt", caffe.TEST)
    before = net.params["ip"][0].data.copy()
    with pytest.raises(caffe.net.NetError, match="other.caffemodel: sets no layer"):
        net.copy_from("other.caffemodel")
    np.testing.assert_array_equal(net.params["ip"][0].data, before)
    rc, log = caffe_in_process(capsys, "train", "-solver", "solver.prototxt", "-weights", "other.caffemodel")
    assert rc == 1 and fatal(log).startswith("other.caffemodel: sets no layer of net 'tiny'")
    assert os.listdir("snap") == []


def test_weights_leaving_a_layer_at_its_fillers_warn(workdir, capsys):
    """Finetuning from a caffemodel without one of the net's layers works, with a warning naming it."""
    weights = train_weights(capsys)
    write_net("renamed.prototxt", NET.replace('name: "ip"', 'name: "ip_new"'))
    capsys.readouterr()
    net = caffe.Net("renamed.prototxt", weights, caffe.TEST)
    log = capsys.readouterr().err
    warnings = [line for line in log.splitlines() if line.startswith("W")]
    assert len(warnings) == 1 and warnings[0].endswith(
        f"{weights} has no layer 'ip_new': the 2 blob(s) of this InnerProduct layer keep their initial (filler) values")
    assert "Ignoring source layer ip" in log
    np.testing.assert_array_equal(net.params["conv"][0].data, caffe.Net("net.prototxt", weights, caffe.TEST)
                                  .params["conv"][0].data)


def test_solverstate_of_caffe_resumes_data_from_start(workdir, capsys):
    """A .solverstate without our field (as Caffe writes it) still resumes, saying the data restart."""
    train_weights(capsys)
    with open("snap/net_iter_2.solverstate", "rb") as f:
        state = caffe_pb2.SolverState.FromString(f.read())
    state.DiscardUnknownFields()
    with open("snap/caffes.solverstate", "wb") as f:
        f.write(state.SerializeToString())
    with open("solver.prototxt", "w") as f:
        f.write(SOLVER.replace(f"max_iter: {MAX_ITER}", "max_iter: 3"))
    rc, log = caffe_in_process(capsys, "train", "-solver", "solver.prototxt", "-snapshot", "snap/caffes.solverstate")
    assert rc == 0 and "snap/caffes.solverstate holds no data positions (written by Caffe?)" in log


def test_snapshot_prefix_folder_missing_refused(workdir, capsys):
    shutil.rmtree("snap")
    rc, log = caffe_in_process(capsys, "train", "-solver", "solver.prototxt")
    assert rc == 1 and fatal(log).startswith("Cannot write to snapshot prefix 'snap/net'")
