"""Small C kernels the engine compiles for this machine on first use (the system's C compiler,
-O3 -march=native, OpenMP) and calls through ctypes on CPU float32 tensors. Built once per
source and machine into the user's cache (CAFFE_NATIVE_CACHE, default ~/.cache/caffe-deeppose),
written atomically; without a compiler `library()` is None (one warning says why). Callers ask
`caffe.accel.active(...)` first (CAFFE_NATIVE=0 or the reference switch: their PyTorch
implementation, nothing built).

Kernels (C99) on 4-d blobs in either layout: rows (channels-last: each pixel a run of C channels)
or planes (NCHW: each channel of each item a run of pixels), the functions at the end of this
module taking a blob in the layout it has (`memory_format`) and writing their results in it, so
that no layout is converted:
- lrn_forward / lrn_backward: Caffe's LRN across channels, scale = k + alpha/n * window sum of
  x^2 (zeros past the ends), top = x * scale^-beta; bottom_diff = top_diff * scale^-beta
  - 2 alpha beta / n * x * window sum(top_diff * top / scale), with scale and top recomputed from
  x exactly as the forward computed them (cheaper than keeping them). scale^-beta is computed with IEEE sqrt and division
  for beta 0.75, 0.5 and 1 (within 2 ulp of powf), with powf otherwise.
- sgd_update: one pass of Caffe's SGD step over a param (sgd_solver.cpp with L2 decay, its BLAS
  calls' fused multiply-adds as in OpenBLAS's kernels): diff' = decay * w + diff (axpy),
  history = rate * diff' + momentum * history (scal, axpy), w = w - history.
- bn_stats / bn_scale_forward / bn_scale_backward: BatchNorm with the batch's statistics, Scale
  and ReLU in place (caffe.accel.train_chains).
- max_pool / max_pool_backward (planes only): Caffe's MAX pooling with its int32 mask (torch's
  keeps int64 indices, and reads NCHW several times slower than channels-last).
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import threading

import torch

from .. import glog
from . import kernels_planes, kernels_pooling, kernels_rows

SOURCE = kernels_rows.SOURCE + kernels_planes.SOURCE + kernels_pooling.SOURCE


FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared"]
_lock = threading.Lock()
_loaded = []  # [library or None], set once


def _compiler():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    return shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")


def _build(cc):
    """Compile SOURCE into the cache (once per source, flags, compiler and machine); the path."""
    key = hashlib.sha256("\0".join([SOURCE, *FLAGS, cc, platform.machine(), platform.node()]).encode()).hexdigest()[:16]
    folder = os.path.expanduser(os.environ.get("CAFFE_NATIVE_CACHE", "~/.cache/caffe-deeppose"))
    path = os.path.join(folder, f"kernels-{key}.so")
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = os.path.join(tmp, "kernels.c"), os.path.join(tmp, "kernels.so")
        with open(src, "w") as f:
            f.write(SOURCE)
        subprocess.run([cc, *FLAGS, src, "-o", out, "-lm"], check=True, capture_output=True, text=True)
        os.replace(out, path)  # atomic: a concurrent build of the same key writes the same bytes
    return path


def _declare(lib):
    f, i, p, l = ctypes.c_float, ctypes.c_int, ctypes.c_void_p, ctypes.c_long
    lib.lrn_forward.argtypes = [p, p, l, i, i, f, f, f, i]
    lib.lrn_backward.argtypes = [p, p, p, l, i, i, f, f, f, i]
    lib.sgd_update.argtypes = [p, p, p, l, f, f, f, i]
    lib.bn_stats.argtypes = [p, l, i, p, p, i]
    lib.bn_scale_forward.argtypes = [p, p, l, i, p, p, p, p, i, i]
    lib.bn_scale_backward.argtypes = [p, p, l, i, p, p, p, p, i, p, p, p, i]
    lib.lrn_forward_planes.argtypes = [p, p, l, i, l, i, f, f, f, i]
    lib.lrn_backward_planes.argtypes = [p, p, p, l, i, l, i, f, f, f, i, i]
    lib.bn_stats_planes.argtypes = [p, l, i, l, p, p, i]
    lib.bn_scale_forward_planes.argtypes = [p, p, l, i, l, p, p, p, p, i, i]
    lib.bn_scale_backward_planes.argtypes = [p, p, l, i, l, p, p, p, p, i, p, p, p, i]
    lib.max_pool_planes.argtypes = [p, p, p, l] + [i] * 11
    lib.max_pool_backward_planes.argtypes = [p, p, p, l, l, l, i]
    for fn in (lib.lrn_forward, lib.lrn_backward, lib.sgd_update, lib.bn_stats, lib.bn_scale_forward,
               lib.bn_scale_backward, lib.lrn_forward_planes, lib.lrn_backward_planes, lib.bn_stats_planes,
               lib.bn_scale_forward_planes, lib.bn_scale_backward_planes, lib.max_pool_planes,
               lib.max_pool_backward_planes):
        fn.restype = None
    return lib


def library():
    """The compiled kernels (a ctypes library), or None where they cannot be built."""
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            lib, cc = None, _compiler()
            try:
                if cc is None:
                    raise OSError("no C compiler found (set CC)")
                lib = _declare(ctypes.CDLL(_build(cc)))
            except (OSError, subprocess.CalledProcessError) as e:
                detail = getattr(e, "stderr", "") or str(e)
                glog.warning("native.py", f"native kernels unavailable, using the PyTorch implementations: {detail.strip()}")
            _loaded.append(lib)
    return _loaded[0]


def memory_format(t):
    """The layout the kernels read a 4-d `t` in: channels-last if it is (the compiled inference's
    convolutions write it), else NCHW."""
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(t, like=None):
    """`t` in the layout of `like` (default: its own, `memory_format`), and its pixels per plane (0: rows)."""
    fmt = memory_format(t if like is None else like)
    return t.contiguous(memory_format=fmt), (t.shape[2] * t.shape[3] if fmt is torch.contiguous_format else 0)


def lrn_forward(x, size, alpha, beta, k):
    """The top of Caffe's across-channels LRN of `x` (4-d float32, either layout), in x's layout."""
    x, planes = dense(x)
    top, lib, threads = torch.empty_like(x), library(), torch.get_num_threads()
    if planes:
        lib.lrn_forward_planes(x.data_ptr(), top.data_ptr(), x.shape[0], x.shape[1], planes, size, alpha, beta, k,
                               threads)
    else:
        lib.lrn_forward(x.data_ptr(), top.data_ptr(), x.numel() // x.shape[1], x.shape[1], size, alpha, beta, k,
                        threads)
    return top


def lrn_backward(top_diff, x, size, alpha, beta, k):
    """The LRN's bottom diff (in x's layout) from the forward's bottom; the top diff in either layout."""
    x, planes = dense(x)
    top_diff, diff_planes = dense(top_diff, like=None if planes else x)
    bottom_diff, lib, threads = torch.empty_like(x), library(), torch.get_num_threads()
    if planes:
        lib.lrn_backward_planes(top_diff.data_ptr(), x.data_ptr(), bottom_diff.data_ptr(), x.shape[0], x.shape[1],
                                planes, size, alpha, beta, k, int(not diff_planes), threads)
    else:
        lib.lrn_backward(top_diff.data_ptr(), x.data_ptr(), bottom_diff.data_ptr(), x.numel() // x.shape[1],
                         x.shape[1], size, alpha, beta, k, threads)
    return bottom_diff


def bn_stats(x):
    """(mean, biased variance) per channel of `x` (4-d float32, either layout)."""
    x, planes = dense(x)
    channels = x.shape[1]
    mean, var = torch.empty(channels), torch.empty(channels)
    if planes:
        library().bn_stats_planes(x.data_ptr(), x.shape[0], channels, planes, mean.data_ptr(), var.data_ptr(),
                                  torch.get_num_threads())
    else:
        library().bn_stats(x.data_ptr(), x.numel() // channels, channels, mean.data_ptr(), var.data_ptr(),
                           torch.get_num_threads())
    return mean, var


def bn_scale_forward(x, mean, std, gamma, beta, relu):
    """[relu](gamma (x - mean) / std + beta), in x's layout."""
    x, planes = dense(x)
    top, args = torch.empty_like(x), (mean.data_ptr(), std.data_ptr(), gamma.data_ptr(), beta.data_ptr(), relu,
                                      torch.get_num_threads())
    if planes:
        library().bn_scale_forward_planes(x.data_ptr(), top.data_ptr(), x.shape[0], x.shape[1], planes, *args)
    else:
        library().bn_scale_forward(x.data_ptr(), top.data_ptr(), x.numel() // x.shape[1], x.shape[1], *args)
    return top


def bn_scale_backward(top_diff, x, mean, std, gamma, beta, relu):
    """(bottom diff in x's layout, d_gamma, d_beta) of bn_scale_forward."""
    x, planes = dense(x)
    top_diff, _ = dense(top_diff, like=x)
    bottom_diff = torch.empty_like(x)
    d_gamma, d_beta = torch.empty_like(gamma), torch.empty_like(gamma)
    args = (mean.data_ptr(), std.data_ptr(), gamma.data_ptr(), beta.data_ptr(), relu, bottom_diff.data_ptr(),
            d_gamma.data_ptr(), d_beta.data_ptr(), torch.get_num_threads())
    if planes:
        library().bn_scale_backward_planes(top_diff.data_ptr(), x.data_ptr(), x.shape[0], x.shape[1], planes, *args)
    else:
        library().bn_scale_backward(top_diff.data_ptr(), x.data_ptr(), x.numel() // x.shape[1], x.shape[1], *args)
    return bottom_diff, d_gamma, d_beta


def max_pool(x, kernel, stride, pad, out):
    """(top, int32 mask) of Caffe's MAX pooling of `x` (NCHW float32; made contiguous) into `out`
    (h, w): the mask holds each window's argmax as h W + w in its plane, -1 for none."""
    x = x.contiguous()
    n, c, h, w = x.shape
    top = x.new_empty((n, c) + tuple(out))
    mask = torch.empty(top.shape, dtype=torch.int32)
    library().max_pool_planes(x.data_ptr(), top.data_ptr(), mask.data_ptr(), n * c, h, w, *out, *kernel, *stride,
                              *pad, torch.get_num_threads())
    return top, mask


def max_pool_backward(top_diff, mask, shape):
    """The bottom diff (NCHW, `shape`) of max_pool: each top cell's diff added at its mask's cell."""
    top_diff = top_diff.contiguous()
    bottom_diff = top_diff.new_empty(shape)
    library().max_pool_backward_planes(top_diff.data_ptr(), mask.data_ptr(), bottom_diff.data_ptr(),
                                       shape[0] * shape[1], shape[2] * shape[3], mask[0, 0].numel(),
                                       torch.get_num_threads())
    return bottom_diff
