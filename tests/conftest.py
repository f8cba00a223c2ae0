"""Shared test fixtures: the golden set (its location, a writable copy of its files), the one
builder of small nets, DeepPose stage nets shaped like the committed ones, the worst-error report,
a command run as the user runs it."""
import collections
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe import accel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository
GOLDEN = os.path.join(HERE, "golden")  # what the real Caffe computed (golden/README.md)
DATA = os.path.join(HERE, "data")  # the other expected files (pycaffe/, legacy/, tools/ ...)
# the suite does not pay torch.compile's time: the inference fast path stays eager (also in the
# tools the tests start); tests/engine/test_fastpath.py turns it on where it tests it
os.environ["CAFFE_COMPILE"] = "0"

# for tests that check an acceleration is used (caffe.accel): none is with CAFFE_REFERENCE=1
ACCELERATED = pytest.mark.skipif(accel.reference(), reason="tests an acceleration: the reference switch is on")

# worst relative error per golden category, reported at the end of the run
WORST = collections.defaultdict(lambda: (0.0, ""))


def record_error(category, case, err):
    if err >= WORST[category][0]:
        WORST[category] = (err, case)


def pytest_terminal_summary(terminalreporter):
    if WORST:
        terminalreporter.section("golden conformance: worst error relative to the array's scale")
        for category, (err, case) in sorted(WORST.items()):
            terminalreporter.write_line(f"{category:10s} {err:.3g}  ({case})")


sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def test_device():
    """CAFFE_TEST_DEVICE=gpu: the tests' nets and solvers compute on CUDA device 0 (bench/gpu_proof.py)."""
    if os.environ.get("CAFFE_TEST_DEVICE", "cpu") != "gpu":
        yield
        return
    import caffe
    caffe.set_mode_gpu()
    yield
    caffe.set_mode_cpu()


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


# -- small nets --------------------------------------------------------------------------------
def input_layers(inputs):
    """Prototxt text of one Input layer per entry of `inputs` ({blob name: shape})."""
    text = ""
    for blob, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        text += f'layer {{ name: "{blob}_in" type: "Input" top: "{blob}" input_param {{ shape {{ {dims} }} }} }}\n'
    return text


def write_net(path, text, force_backward=False):
    """Write a net prototxt (`text` dedented, `force_backward: true` first if asked); its path as str."""
    with open(path, "w") as f:
        f.write(("force_backward: true\n" if force_backward else "") + textwrap.dedent(text))
    return os.fspath(path)


def net_from(tmp_path, inputs, layers, phase=None, force_backward=True, name="net.prototxt"):
    """A Net (TRAIN unless `phase`) of one Input layer per entry of `inputs` ({name: shape})
    followed by `layers` (prototxt text), written to tmp_path/name."""
    import caffe
    path = write_net(tmp_path / name, input_layers(inputs) + layers, force_backward)
    return caffe.Net(path, caffe.TRAIN if phase is None else phase)


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


def deploy_input_shape(deploy):
    """(N, C, H, W) of a deploy prototxt's Input layer."""
    from caffe.formats import protoio
    from caffe.proto import caffe_pb2
    net = protoio.read_prototxt(deploy, caffe_pb2.NetParameter)
    return tuple(int(d) for l in net.layer if l.type == "Input" for d in l.input_param.shape[0].dim)


@pytest.fixture
def stage_nets(tmp_path, monkeypatch):
    """(stage 1, refiner) ModelFiles of small nets in tmp_path (the working directory) with the
    committed nets' input shapes and outputs for K2HPD (read from models/ and the description):
    an average pooling and `predict`, random weights (<name>.caffemodel) and a mean file."""
    import caffe
    from caffe.formats import protoio
    from deeppose import nets
    from deeppose.datasets import K2HPD
    shapes = [deploy_input_shape(os.path.join(ROOT, f.deploy)) for f in (nets.STAGE1, nets.REFINE)]
    monkeypatch.chdir(tmp_path)
    files = []
    for name, (batch, channels, rows, cols), outputs in (("s1", shapes[0], 2 * K2HPD.num_joints),
                                                         ("s2", shapes[1], 2)):
        mean = np.full((1, channels, rows, cols), 100, np.float32)
        protoio.write_binary_proto(f"{name}_mean.binaryproto", protoio.array_to_blobproto(mean, legacy=True))
        body = ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                'pooling_param { pool: AVE kernel_size: 16 stride: 16 } }\n'
                f'layer {{ name: "predict" type: "InnerProduct" bottom: "pool" top: "predict" inner_product_param {{ '
                f'num_output: {outputs} weight_filler {{ type: "gaussian" std: 1 }} bias_filler {{ type: "constant" value: 1 }} }} }}\n')
        write_net(f"{name}.prototxt", input_layers({"data": (batch, channels, rows, cols)}) + body)
        write_net(f"{name}_train.prototxt", 
                  f'layer {{ name: "data" type: "Data" top: "data" top: "label" transform_param {{ mean_file: "{name}_mean.binaryproto" '
                  f'scale: 0.00390625 }} data_param {{ source: "x" batch_size: 1 backend: LMDB label_num: {outputs} }} }}\n' + body)
        caffe.Net(f"{name}.prototxt", caffe.TEST).save(f"{name}.caffemodel")
        files.append(nets.ModelFiles(f"{name}.prototxt", f"{name}_train.prototxt", f"{name}_solver.prototxt"))
    return files


# -- commands ------------------------------------------------------------------------------------
def run_command(args, cwd=None, limit_file_size=None):
    """Run a command; with `limit_file_size` its files cannot grow past that many bytes (a full
    disk: writes fail with EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit if limit_file_size else None, timeout=120)


def failed(r, *names):
    """The command failed with status 1, naming each of `names`, in a message without a traceback."""
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out, out
    for name in names:
        assert str(name) in out, f"{name!r} not in:\n{out}"
    return out
