"""Measuring helpers the benches share (plain Python + numpy, so that the real Caffe's worker
process can import them too)."""
import time

import numpy as np


def time_slice(fn, seconds):
    """Call `fn()` repeatedly for `seconds`: (calls, elapsed seconds)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - start


def measure(runs, batch, seconds, rounds=12):
    """Images/s of each run: `rounds` interleaved slices of seconds / rounds each, median
    (interleaving spreads the machine's drift evenly over the engines). A run is a callable
    doing one batch, or an object whose `time_slice(seconds)` times its own slice (a worker
    process)."""
    rates = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            timed = getattr(fn, "time_slice", None)
            n, elapsed = timed(seconds / rounds) if timed else time_slice(fn, seconds / rounds)
            rates[name].append(n * batch / elapsed)
    return {name: float(np.median(r)) for name, r in rates.items()}


def fastest_call(runs, batch, calls):
    """Images/s of each run's fastest single call, in `calls` interleaved rounds of one call each:
    on a machine shared with bursty jobs, the calls that ran undisturbed."""
    fastest = {name: float("inf") for name in runs}
    for _ in range(calls):
        for name, fn in runs.items():
            began = time.perf_counter()
            fn()
            fastest[name] = min(fastest[name], time.perf_counter() - began)
    return {name: batch / s for name, s in fastest.items()}
