"""Fixtures and helpers both sides of the suite use (tests/engine, tests/app): where the expected
files lie, the device the tests compute on, the one builder of small nets, a command run as the
user runs it. Those of one side are in its own conftest.py."""
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository
GOLDEN = os.path.join(HERE, "golden")  # what the real Caffe computed (golden/README.md)
DATA = os.path.join(HERE, "data")  # the other expected files (pycaffe/, legacy/, tools/, ...)
# the suite does not pay torch.compile's time: the inference fast path stays eager (also in the
# tools the tests start); tests/engine/test_fastpath.py turns it on where it tests it
os.environ["CAFFE_COMPILE"] = "0"

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
