"""Caffe's weight fillers, from a FillerParameter, drawing from torch's global generator."""
import math

import torch


def _fans(shape):
    count = math.prod(shape)
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(filler, shape):
    fan_in, fan_out = _fans(shape)
    norm = filler.variance_norm
    FP = type(filler)
    if norm == FP.FAN_OUT:
        return fan_out
    if norm == FP.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


def fill(filler, shape):
    """A new float32 CPU tensor of `shape` filled as Caffe's filler `filler.type` does."""
    shape = tuple(int(d) for d in shape)
    kind = filler.type
    if math.prod(shape) == 0:  # Caffe's fillers CHECK(blob->count())
        raise ValueError(f"cannot fill a blob of shape {shape}: it has no elements (a size is 0)")
    t = torch.empty(shape, dtype=torch.float32)
    if kind == "constant":
        return t.fill_(filler.value)
    if kind == "uniform":
        return t.uniform_(filler.min, filler.max)
    if kind == "gaussian":
        t.normal_(filler.mean, filler.std)
        if filler.sparse >= 0:  # keep each weight with probability sparse / num_outputs
            num_outputs = shape[0] if len(shape) > 1 else 1
            keep = torch.rand(shape) < filler.sparse / num_outputs
            t *= keep
        return t
    if kind == "positive_unitball":  # uniform in [0, 1), each output's row normalised to sum 1
        t.uniform_(0, 1)
        rows = t.reshape(shape[0], -1) if shape else t.reshape(1, -1)
        rows /= rows.sum(dim=1, keepdim=True)
        return t
    if kind == "xavier":
        scale = math.sqrt(3.0 / _norm(filler, shape))
        return t.uniform_(-scale, scale)
    if kind == "msra":
        return t.normal_(0.0, math.sqrt(2.0 / _norm(filler, shape)))
    if kind == "bilinear":  # upsampling kernel for Deconvolution; every (out, in) filter the same
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(f"bilinear filler needs a square 4-d blob, got shape {shape}")
        k = shape[3]
        f = math.ceil(k / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        ramp = 1 - torch.abs(torch.arange(k, dtype=torch.float32) / f - c)
        return t.copy_((ramp[:, None] * ramp[None, :]).expand(shape))
    raise ValueError(f"unknown filler type {kind!r} (known: constant, uniform, gaussian, "
                     "positive_unitball, xavier, msra, bilinear)")
