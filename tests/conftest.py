"""Shared test fixtures: the golden set's location and the worst-error report."""
import collections
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
ROOT = os.path.dirname(HERE)
# the suite does not pay torch.compile's time: the inference fast path stays eager (also in the
# tools the tests start); tests/test_fastpath.py turns it on where it tests it
os.environ["CAFFE_COMPILE"] = "0"

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
