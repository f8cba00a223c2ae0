"""Caffe's global state: computing mode (CPU/GPU), device and random seed, like `Caffe::Get()`."""
import ctypes
import ctypes.util
import sys
import time

import numpy as np
import torch

from . import glog

_state = {"mode": "cpu", "device_id": 0, "seed": None, "solver_count": 1, "solver_rank": 0, "multiprocess": False}


def set_mode_cpu():
    """Nets and solvers created from now on compute on the CPU."""
    _state["mode"] = "cpu"


def set_mode_gpu():
    """Nets and solvers created from now on compute on the CUDA device chosen by `set_device`."""
    if not torch.cuda.is_available():
        raise RuntimeError("set_mode_gpu: no CUDA device is available to PyTorch on this machine")
    # Caffe computes in true float32: TF32 would change results beyond Caffe's tolerances.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    _state["mode"] = "gpu"


def set_device(device_id):
    """Select the CUDA device used in GPU mode."""
    _state["device_id"] = int(device_id)


def set_random_seed(seed):
    """Seed Caffe's random generator (fillers, Dropout, data shuffling and mirroring), and numpy's
    global one, which Python layers draw from (Caffe leaves it unseeded): a seeded run is then
    reproducible, and its resume exact, with such layers too."""
    _state["seed"] = int(seed)
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % 2 ** 32)


def set_solver_count(count):
    """The number of workers training one solver together (Caffe::set_solver_count)."""
    _state["solver_count"] = int(count)


def set_solver_rank(rank):
    """This worker's rank among them; rank 0 is the root solver (logs, tests, snapshots)."""
    _state["solver_rank"] = int(rank)
    glog.root_solver = int(rank) == 0  # as Caffe's LOG_IF(INFO, Caffe::root_solver())


def set_multiprocess(multiprocess):
    """Whether the workers are processes (pycaffe's train.py, torchrun) rather than threads."""
    _state["multiprocess"] = bool(multiprocess)


def solver_count():
    return _state["solver_count"]


def solver_rank():
    return _state["solver_rank"]


def root_solver():
    """True in the worker that logs, tests and snapshots (rank 0; the only one without multi-GPU)."""
    return _state["solver_rank"] == 0


def mode():
    return _state["mode"]


def device():
    """The torch device that new nets compute on."""
    if _state["mode"] == "gpu":
        return torch.device("cuda", _state["device_id"])
    return torch.device("cpu")


def keep_large_blocks_on_heap():
    """Stop glibc from mmap-ing (and unmapping on free) every block over 32 MB: the activations
    of a batch (a 32x96x55x55 float blob is 37 MB) are freed and allocated again on every pass,
    and fresh mappings page-fault on every touch. Kept on the heap they are reused; forward of
    the DeepPose net at batch 32 runs ~30% faster (bench/bench_inference.py). The process keeps
    its peak memory, as Caffe does with its blobs. No effect outside glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)


class Timer:
    """pycaffe's Timer: `start()`, `stop()`, `ms` (the time between them; GPU work is waited for
    in GPU mode, like Caffe's Timer with CUDA events)."""

    def __init__(self):
        self._start = self._stop = None

    def _now(self):
        if _state["mode"] == "gpu":
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self):
        self._start, self._stop = self._now(), None

    def stop(self):
        if self._start is not None:
            self._stop = self._now()

    @property
    def ms(self):
        if self._start is None:
            return 0.0
        end = self._stop if self._stop is not None else self._now()
        return (end - self._start) * 1000.0
