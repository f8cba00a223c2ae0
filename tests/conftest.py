"""Shared test fixtures: the golden set's location and the worst-error report."""
import collections
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
ROOT = os.path.dirname(HERE)

# worst relative error per golden category, reported at the end of the run
WORST = collections.defaultdict(lambda: (0.0, ""))


def record_error(category, case, err):
    if err >= WORST[category][0]:
        WORST[category] = (err, case)


RTOL, ATOL = 1e-4, 1e-5  # golden float results (the set's README); integer results must be exact


def compare(category, case, what, ours, ref, exact=False):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{case} {what}: shape {ours.shape}, Caffe {ref.shape}"
    scale = max(np.abs(ref).max(initial=0.0), 1e-12)
    record_error(category, f"{case} {what}", float(np.abs(ours - ref).max(initial=0.0) / scale))
    if exact:
        np.testing.assert_array_equal(ours, ref, err_msg=f"{case} {what}")
    else:
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL, err_msg=f"{case} {what}")


def pytest_terminal_summary(terminalreporter):
    if WORST:
        terminalreporter.section("golden conformance: worst error relative to the array's scale")
        for category, (err, case) in sorted(WORST.items()):
            terminalreporter.write_line(f"{category:10s} {err:.3g}  ({case})")


sys.path.insert(0, ROOT)
