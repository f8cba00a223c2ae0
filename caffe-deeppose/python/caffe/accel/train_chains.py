"""BatchNorm with batch statistics, Scale and ReLU in place on one blob (the conv blocks of the
DeepPose net) as one C kernel pass each way in training (caffe.accel.native): two passes over the blob
forward (statistics, then the normalised, scaled and rectified top) and two backward, where the
three layers take ten.

pycaffe's semantics stay: the blob holds the chain's top after the forward and, as in Caffe with
in-place layers, the diff of its first version (the BatchNorm bottom's) after the backward; the
Scale diffs accumulate; BatchNorm counts its statistics once. The three layers' own graphs, which a
backward over a range of layers (or with hooks) needs, are recomputed from the chain's bottom by
`replay` (BatchNorm then does not count again). A chain runs this way where its
bottom already has a gradient (so its diff is that version's), on a CPU float32 4-d blob with
more than one value per channel; otherwise its layers run one by one.
"""
import torch

from . import active, native
from ..layer_modules.activation import ReLU
from ..layer_modules.norm import BatchNorm
from ..layer_modules.scale import Scale


def _in_place(module, i, name):
    w = module.wiring[i]
    return not w.is_input and w.bottoms == [name] and w.tops == [name] and not any(w.detach)


def _chain(module, i, end):
    """(BatchNorm, Scale, relu?, last layer) of a chain starting at layer i, or None."""
    bn = module.layers[i]
    if type(bn) is not BatchNorm or bn.use_global_stats or i + 1 > end:
        return None
    name = module.wiring[i].tops[0] if module.wiring[i].tops else None
    scale = module.layers[i + 1]
    if not (_in_place(module, i, name) and _in_place(module, i + 1, name) and type(scale) is Scale
            and not scale.two_bottoms and scale.axis in (1, -3) and scale.blobs[0].dim() == 1):
        return None
    last = i + 1
    relu = (last < end and type(module.layers[last + 1]) is ReLU and not module.layers[last + 1].negative_slope
            and _in_place(module, last + 1, name) and active("train_chains", module.layers[last + 1]))
    return bn, scale, relu, last + relu


def _fits(x, bn):
    return (x.requires_grad and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
            and x.shape[0] * x.shape[2] * x.shape[3] > 1 and x.shape[1] == bn.blobs[0].shape[0])


class _BatchNormScale(torch.autograd.Function):
    """top = [relu](gamma (x - mean) / std + beta) with the batch's mean and std given; keeps x
    (the backward recomputes what it needs of the top from it)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, mean, std, relu):
        x, _ = native.dense(x)
        beta = beta.detach() if beta is not None else torch.zeros_like(gamma)
        top = native.bn_scale_forward(x, mean, std, gamma.detach(), beta, relu)
        ctx.save_for_backward(x, mean, std, gamma, beta)
        ctx.relu = relu
        return top

    @staticmethod
    def backward(ctx, top_diff):
        x, mean, std, gamma, beta = ctx.saved_tensors
        bottom_diff, d_gamma, d_beta = native.bn_scale_backward(top_diff, x, mean, std, gamma, beta, ctx.relu)
        needs = ctx.needs_input_grad
        return (bottom_diff if needs[0] else None, d_gamma if needs[1] else None, d_beta if needs[2] else None,
                None, None, None)


def _forward_chain(bn, scale, relu, x):
    """The chain's top; BatchNorm counts the batch's statistics."""
    m = x.numel() // x.shape[1]
    mean, var = native.bn_stats(x.detach())
    bn.count_statistics(mean, var * (m / (m - 1)))
    std = torch.sqrt(var + bn.eps)
    gamma = scale.blobs[0]
    beta = scale.blobs[-1] if scale.bias_term else None
    return _BatchNormScale.apply(x, gamma, beta, mean, std, relu)


def run(module, env, start, end, after):
    """`module.run(env, start, end, after=after)` with the chains of layers start..end computed by
    the kernels; returns the chains' (first, last, inputs) for `replay`."""
    if not active("train_chains"):
        module.run(env, start, end, after=after)
        return []
    replays, pending, i = [], start, start
    while i <= end:
        chain = _chain(module, i, end)
        if chain is None:
            i += 1
            continue
        if pending < i:
            module.run(env, pending, i - 1, after=after)
        bn, scale, relu, last = chain
        name = module.wiring[i].tops[0]
        x = env[name]
        if _fits(x, bn):
            env[name] = _forward_chain(bn, scale, relu, x)
            replays.append((i, last, [(name, x.detach(), True)]))
            pending = i = last + 1
        else:
            pending, i = i, i + 1
    if pending <= end:
        module.run(env, pending, end, after=after)
    return replays


def replay(module, replays, start, end, after):
    """Recompute eagerly the chains of the last forward that overlap layers start..end, calling
    `after(i, bottoms, tops)` for each of their layers (to rebuild its records); BatchNorm does
    not count its statistics again."""
    for first, last, inputs in replays:
        if last < start or first > end:
            continue
        layers = module.layers[first:last + 1]
        for layer in layers:
            layer.replaying = True
        try:
            with torch.enable_grad():
                module.run({name: t.detach().requires_grad_(grad) for name, t, grad in inputs}, first, last, after=after)
        finally:
            for layer in layers:
                layer.replaying = False
