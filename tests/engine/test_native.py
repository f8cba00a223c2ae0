"""The C kernels (caffe.accel.native) against the PyTorch implementations they replace."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from caffe.accel import native
from caffe.layer_modules import norm
from caffe.solvers.solver import Solver
from caffe.solvers.sgd import SGDSolver
from tests.engine.conftest import ACCELERATED

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler: the kernels are not built")
pytestmark = ACCELERATED


def _lrn_both(x, top_diff, size, alpha, beta, k):
    """(top, bottom diff) of the C kernels and of the PyTorch LRN."""
    out = []
    for fn in (lambda t: norm._NativeLRN.apply(t, size, alpha, beta, k),
               lambda t: norm._AcrossChannelsLRN.apply(t, size, alpha, beta, k, False)):
        t = x.detach().clone().requires_grad_()
        top = fn(t)
        (grad,) = torch.autograd.grad(top, t, top_diff)
        out.append((top.detach(), grad))
    return out


@needs_native
@pytest.mark.parametrize("size,beta", [(5, 0.75), (3, 0.5), (5, 1.0), (7, 0.6)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_lrn_kernels_match_the_pytorch_lrn(size, beta, channels_last):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(2, 11, 5, 4, generator=g) * 20
    top_diff = torch.randn(2, 11, 5, 4, generator=g)
    if channels_last:
        x, top_diff = (t.contiguous(memory_format=torch.channels_last) for t in (x, top_diff))
    (top, grad), (ref_top, ref_grad) = _lrn_both(x, top_diff, size, 1e-2, beta, 2.0)
    np.testing.assert_allclose(top.numpy(), ref_top.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=1e-5, atol=1e-6)
    # without a gradient the kernel keeps no scale; the top is the same
    np.testing.assert_array_equal(native.lrn_forward(x, size, 1e-2, beta, 2.0).numpy(), top.numpy())


@needs_native
@pytest.mark.parametrize("shape,size,beta", [((3, 70, 9, 11), 5, 0.75), ((2, 5, 1, 1), 3, 0.6), ((2, 9, 13, 13), 7, 1.0)])
def test_kernels_keep_the_layout_they_are_given_and_compute_the_same_values(shape, size, beta):
    """No layout converted: the LRN and BatchNorm write their tops in their bottom's layout, the
    LRN's bottom diff from a top diff in either layout. The LRN and the BatchNorm top are the same bits either way (the
    same operations per element); the statistics and the BatchNorm backward's channel sums agree
    to rounding and with float64."""
    g = torch.Generator().manual_seed(size)
    x, d = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g)
    rows = [t.contiguous(memory_format=torch.channels_last) for t in (x, d)]
    spatial = shape[2] * shape[3] > 1
    tops = [native.lrn_forward(a, size, 5e-3, beta, 2.0) for a in (x, rows[0])]
    assert torch.equal(tops[0], tops[1]) and tops[0].is_contiguous()
    assert not spatial or tops[1].is_contiguous(memory_format=torch.channels_last) and not tops[1].is_contiguous()
    diffs = [native.lrn_backward(b, a, size, 5e-3, beta, 2.0) for a, b in ((x, d), (x, rows[1]), rows)]
    assert diffs[0].is_contiguous() and diffs[1].is_contiguous() and (not spatial or not diffs[2].is_contiguous())
    assert torch.equal(diffs[0], diffs[1]) and torch.equal(diffs[0], diffs[2])
    stats = [native.bn_stats(a) for a in (x, rows[0])]
    x64 = x.double()
    for mean, var in stats:
        np.testing.assert_allclose(mean.double(), x64.mean((0, 2, 3)), rtol=0, atol=1e-6)
        np.testing.assert_allclose(var.double(), x64.var((0, 2, 3), unbiased=False), rtol=1e-6)
    mean, var = stats[0]
    std, gamma, beta_ = torch.sqrt(var + 1e-5), torch.rand(shape[1], generator=g) + 0.5, torch.randn(shape[1], generator=g)
    for relu in (0, 1):
        tops = [native.bn_scale_forward(a, mean, std, gamma, beta_, relu) for a in (x, rows[0])]
        assert torch.equal(tops[0], tops[1]) and tops[0].is_contiguous()
        back = [native.bn_scale_backward(b, a, mean, std, gamma, beta_, relu) for a, b in ((x, d), rows)]
        assert back[0][0].is_contiguous()
        for planes, row in zip(*back):
            np.testing.assert_allclose(planes, row, rtol=1e-5, atol=1e-5)


def _caffe_max_pool(x, kernel, stride, pad, out):
    """pooling_layer.cpp's MAX loops in Python: (top, mask) of a float32 array."""
    n, c, height, width = x.shape
    top, mask = np.zeros((n, c) + out, np.float32), np.zeros((n, c) + out, np.int64)
    for i, j, ph, pw in np.ndindex(n, c, *out):
        hs, ws = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
        he, we = min(hs + kernel[0], height), min(ws + kernel[1], width)
        best, at = -np.finfo(np.float32).max, -1
        for h in range(max(hs, 0), he):
            for w in range(max(ws, 0), we):
                if x[i, j, h, w] > best:
                    best, at = x[i, j, h, w], h * width + w
        top[i, j, ph, pw], mask[i, j, ph, pw] = best, at
    return top, mask


@needs_native
@pytest.mark.parametrize("shape,kernel,stride,pad", [
    ((2, 3, 11, 37), (3, 3), (2, 2), (0, 0)),  # the vectorised path: 16 windows a row, the last ones clipped
    ((1, 2, 6, 21), (2, 4), (1, 1), (0, 0)),
    ((2, 2, 9, 10), (3, 2), (2, 3), (1, 1)),  # the scalar path: padding, stride 3
    ((1, 1, 4, 4), (4, 4), (1, 1), (0, 0)),
])
def test_max_pool_kernel_is_caffes_loop(shape, kernel, stride, pad):
    """Top and mask as Caffe's loops compute them, ties (small integers) going to the first cell in
    row-major order and NaN never taken (a window of NaN: -FLT_MAX, mask -1); the backward adds
    each top diff at its mask's cell."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(-3, 4, shape, generator=g).float()
    x[0, 0, :, :3] = float("nan")
    out = tuple((-(-(size + 2 * p - k) // s) + 1) for size, k, s, p in zip(shape[2:], kernel, stride, pad))
    out = tuple(o - 1 if pad != (0, 0) and (o - 1) * s >= size + p else o
                for o, size, s, p in zip(out, shape[2:], stride, pad))
    top, mask = native.max_pool(x, kernel, stride, pad, out)
    ref_top, ref_mask = _caffe_max_pool(x.numpy(), kernel, stride, pad, out)
    np.testing.assert_array_equal(top.numpy(), ref_top)
    np.testing.assert_array_equal(mask.numpy(), ref_mask)
    top_diff = torch.randn(top.shape, generator=g)
    expected = np.zeros(shape, np.float32)
    for index in np.ndindex(*top.shape):
        if ref_mask[index] >= 0:
            expected[index[:2]].flat[ref_mask[index]] += top_diff[index]
    np.testing.assert_array_equal(native.max_pool_backward(top_diff, mask, shape).numpy(), expected)


@needs_native
def test_pooling_layer_keeps_an_int32_mask_and_matches_torch():
    """The Pooling layer runs the kernel on an NCHW blob: the same top and gradient as torch's
    pooling, with a 4-byte mask saved for the backward instead of torch's 8-byte index."""
    from caffe.layer_modules.pooling import Pooling, _NativeMaxPool
    from caffe.proto import caffe_pb2
    param = caffe_pb2.LayerParameter(name="pool", type="Pooling", bottom=["x"], top=["y"])
    param.pooling_param.kernel_size, param.pooling_param.stride = 3, 2
    layer = Pooling(param, caffe_pb2.TRAIN)
    x = torch.randn(2, 4, 13, 13, generator=torch.Generator().manual_seed(0)).requires_grad_()
    (top,) = layer(x)
    assert type(top.grad_fn).__name__ == _NativeMaxPool.__name__ + "Backward"
    assert [t.dtype for t in top.grad_fn.saved_tensors] == [torch.int32]
    ref = torch.nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
    top_diff = torch.randn(ref.shape)
    assert torch.equal(top, ref)
    assert torch.equal(torch.autograd.grad(top, x, top_diff)[0], torch.autograd.grad(ref, x, top_diff)[0])


@needs_native
def test_lrn_layer_runs_the_kernels_inside_a_compiled_graph():
    """The kernels are opaque custom ops: torch.compile calls them as they are."""
    x = torch.randn(2, 6, 4, 4).contiguous(memory_format=torch.channels_last)
    fn = torch.compile(lambda t: norm.lrn_across_channels_top(t, 5, 1e-2, 0.75, 1.0), backend="eager", fullgraph=True)
    np.testing.assert_array_equal(fn(x).numpy(), native.lrn_forward(x, 5, 1e-2, 0.75, 1.0).numpy())


def _sgd(tmp_path, weight_decay=0.01):
    """An SGD solver on a small net with two learnable blobs (its diffs set to fixed values)."""
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param {'
                   ' num_output: 5 weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" } } }\n'
                   'layer { name: "loss" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}" base_lr: 0.1 momentum: 0.9 weight_decay: {weight_decay} lr_policy: "fixed" '
                      'solver_mode: CPU random_seed: 3\n')
    return SGDSolver(str(solver))


@needs_native
def test_fused_sgd_update_matches_the_generic_update(tmp_path):
    """Three updates each way from the same state: params and history agree to rounding (the
    kernel's fused multiply-adds are those of Caffe's BLAS), the diffs read as the update."""
    results = []
    for update in (SGDSolver._update_params, Solver._update_params):
        solver = _sgd(tmp_path)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            grads = [torch.randn(p.shape, generator=g) for p in solver._params]
            with torch.no_grad():
                update(solver, grads, [0.1, 0.2])
        results.append(([p.detach().clone() for p in solver._params], [h.clone() for h in solver._slots[0]],
                        [np.array(b.diff) for b in solver.net.params["ip"]]))
    (params, history, diffs), (ref_params, ref_history, _) = results
    for a, b in zip(params + history, ref_params + ref_history):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    for diff, h in zip(diffs, history):
        np.testing.assert_array_equal(diff, h.numpy())


def test_without_native_kernels_the_engine_uses_pytorch(tmp_path):
    """CAFFE_NATIVE=0: no kernels are built, and the LRN layer runs its PyTorch implementation."""
    code = ("from caffe import accel; from caffe.layer_modules import norm; from caffe.proto import caffe_pb2; "
            "assert not accel.active('native_lrn') and accel.REGISTRY['native_lrn'].why_off() == 'CAFFE_NATIVE=0'; "
            "assert not norm.LRN(caffe_pb2.LayerParameter(type=\"LRN\"), 0).native; print('ok')")
    env = dict(os.environ, CAFFE_NATIVE="0", CAFFE_NATIVE_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert not list(tmp_path.iterdir())


def test_a_missing_compiler_is_a_warning_not_an_error(tmp_path):
    """With no C compiler, one warning names the reason and the engine goes on without kernels."""
    code = "from caffe.accel import native; assert native.library() is None; print('ok')"
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), PATH="", CAFFE_NATIVE_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert "native kernels unavailable" in out.stderr and "no C compiler" in out.stderr
