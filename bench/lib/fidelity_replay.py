"""A float64 replay of Caffe nets and of Caffe's SGD, in plain PyTorch, independent of the engine.

It reads a NetParameter (the prototxt, parsed by protobuf) and computes each layer with torch ops in
float64 by Caffe's rules (the formulas of Caffe 1.0's layers, gradients by autograd), so that the
real Caffe and our engine, both float32, can be measured against a result with negligible rounding
error (bench/fidelity.py). Only what the measured nets use is here: Input, Convolution, BatchNorm
(batch statistics with Caffe's moving averages, or the stored ones), Scale, ReLU, LRN across
channels, MAX Pooling, InnerProduct, Dropout (TEST only), Softmax, EuclideanLoss; SGD with momentum,
L2 decay, lr_mult / decay_mult and the fixed / step / inv / poly policies. Anything else raises.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

F64 = torch.float64


def _one(repeated, default):
    """The single value of a repeated field (Caffe's kernel_size / stride / pad), or `default`."""
    if len(repeated) > 1 and len(set(repeated)) > 1:
        raise NotImplementedError("per-axis kernel/stride/pad")
    return int(repeated[0]) if len(repeated) else default


def param_specs(lp, count):
    """(lr_mult, decay_mult) of each of a layer's `count` param blobs (Caffe: missing ParamSpecs
    are 1, 1; BatchNorm's statistics always have lr_mult 0)."""
    specs = []
    for i in range(count):
        spec = lp.param[i] if i < len(lp.param) else None
        lr = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else 1.0
        decay = spec.decay_mult if spec is not None and spec.HasField("decay_mult") else 1.0
        if lp.type == "BatchNorm":
            lr = 0.0
        specs.append((lr, decay))
    return specs


class Replay:
    """One net, in float64. `params[layer]` are the layer's blobs (leaf tensors), `forward(inputs)`
    returns every blob's value by name (in-place tops rebind the name), `phase` "TRAIN" / "TEST"."""

    def __init__(self, net_param, phase, params):
        self.net_param, self.phase = net_param, phase
        self.layers = [lp for lp in net_param.layer if self._included(lp)]
        self.params = {name: [torch.as_tensor(np.asarray(a), dtype=F64).clone().requires_grad_(True)
                              for a in blobs] for name, blobs in params.items()}

    def _included(self, lp):
        if lp.include:
            return any(r.HasField("phase") and caffe_phase(r.phase) == self.phase for r in lp.include)
        if lp.exclude:
            return not any(r.HasField("phase") and caffe_phase(r.phase) == self.phase for r in lp.exclude)
        return True

    def learnable(self):
        """[(layer, index, tensor, lr_mult, decay_mult)] in the net's order."""
        out = []
        for lp in self.layers:
            blobs = self.params.get(lp.name, [])
            for i, ((lr, decay), t) in enumerate(zip(param_specs(lp, len(blobs)), blobs)):
                out.append((lp.name, i, t, lr, decay))
        return out

    def forward(self, inputs):
        blobs = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v), dtype=F64)
                 for k, v in inputs.items()}
        for lp in self.layers:
            if lp.type == "Input":
                for top in lp.top:
                    if top not in blobs:
                        raise KeyError(f"no value for the input {top!r}")
                continue
            fn = getattr(self, "_" + lp.type, None)
            if fn is None:
                raise NotImplementedError(f"layer type {lp.type} ({lp.name})")
            outs = fn(lp, [blobs[b] for b in lp.bottom], self.params.get(lp.name, []))
            for top, value in zip(lp.top, outs):
                blobs[top] = value
        return blobs

    # -- layers (Caffe 1.0's formulas) ----------------------------------------------------------
    def _Convolution(self, lp, bottoms, w):
        p = lp.convolution_param
        if p.HasField("kernel_h") or p.HasField("stride_h") or p.HasField("pad_h") or p.axis != 1:
            raise NotImplementedError("kernel_h/stride_h/pad_h/axis")
        x, = bottoms
        bias = w[1] if p.bias_term else None
        return [F.conv2d(x, w[0], bias, stride=_one(p.stride, 1), padding=_one(p.pad, 0),
                         dilation=_one(p.dilation, 1), groups=p.group)]

    def _InnerProduct(self, lp, bottoms, w):
        p = lp.inner_product_param
        x, = bottoms
        x = x.reshape(x.shape[:p.axis] + (-1,))
        weight = w[0].t() if p.transpose else w[0]
        return [F.linear(x, weight, w[1] if p.bias_term else None)]

    def _BatchNorm(self, lp, bottoms, blobs):
        p = lp.batch_norm_param
        x, = bottoms
        use_global = p.use_global_stats if p.HasField("use_global_stats") else self.phase == "TEST"
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if use_global:
            s = blobs[2].detach()
            factor = 0.0 if float(s) == 0 else 1.0 / float(s)
            mean, var = blobs[0].detach() * factor, blobs[1].detach() * factor
        else:
            axes = [0] + list(range(2, x.dim()))
            mean = x.mean(axes)
            var = ((x - mean.reshape(shape)) ** 2).mean(axes)
            m = x.numel() // x.shape[1]
            fraction = p.moving_average_fraction
            with torch.no_grad():  # the running statistics (Caffe updates them in the forward)
                blobs[2].mul_(fraction).add_(1)
                blobs[0].mul_(fraction).add_(mean.detach())
                blobs[1].mul_(fraction).add_(var.detach() * (m / (m - 1) if m > 1 else 1.0))
        return [(x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + p.eps)]

    def _Scale(self, lp, bottoms, w):
        p = lp.scale_param
        x, = bottoms
        if len(bottoms) != 1 or p.axis != 1 or p.num_axes != 1:
            raise NotImplementedError("Scale with a second bottom / axis / num_axes")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = x * w[0].reshape(shape)
        return [y + w[1].reshape(shape) if p.bias_term else y]

    def _ReLU(self, lp, bottoms, w):
        x, = bottoms
        slope = lp.relu_param.negative_slope
        return [torch.where(x > 0, x, x * slope)]

    def _LRN(self, lp, bottoms, w):
        p = lp.lrn_param
        if p.norm_region != 0:
            raise NotImplementedError("LRN WITHIN_CHANNEL")
        x, = bottoms
        n, pre = p.local_size, (p.local_size - 1) // 2
        sq = F.pad(x * x, (0, 0, 0, 0, pre, n - 1 - pre))
        window = sum(sq[:, i:i + x.shape[1]] for i in range(n))
        return [x * (p.k + p.alpha / n * window) ** (-p.beta)]

    def _Pooling(self, lp, bottoms, w):
        p = lp.pooling_param
        x, = bottoms
        if p.pool != 0 or p.global_pooling or p.HasField("kernel_h") or p.HasField("pad_h"):
            raise NotImplementedError("only MAX pooling with square kernels")
        k, s, pad = p.kernel_size, p.stride, p.pad
        if pad:
            raise NotImplementedError("padded pooling")
        # Caffe's output size: ceil((H - k) / s) + 1 (torch's ceil_mode gives the same without padding)
        return [F.max_pool2d(x, k, s, ceil_mode=True)]

    def _Dropout(self, lp, bottoms, w):
        if self.phase != "TEST":
            raise NotImplementedError("Dropout in TRAIN (its mask is random): leave it out of the net")
        return list(bottoms)

    def _Softmax(self, lp, bottoms, w):
        return [torch.softmax(bottoms[0], lp.softmax_param.axis)]

    def _EuclideanLoss(self, lp, bottoms, w):
        a, b = bottoms
        d = a - b.reshape(a.shape)
        # the DeepPose patch: `normalization: FULL` divides by every element; stock Caffe by the batch
        norm = lp.loss_param.normalization if lp.loss_param.HasField("normalization") else 2  # BATCH_SIZE
        n = {0: a.numel(), 3: 1}.get(norm, a.shape[0])  # FULL, NONE, else the batch
        return [torch.sum(d * d) / (2 * n)]


def caffe_phase(value):
    return "TRAIN" if value == 0 else "TEST"


def losses(net_param, blobs):
    """The loss tops of the net (a loss layer's first top, weight 1, or any top with loss_weight)."""
    out = []
    for lp in net_param.layer:
        if lp.top and lp.top[0] in blobs and (lp.type.endswith("Loss") or any(lp.loss_weight)):
            weights = list(lp.loss_weight) or [1.0]
            out += [(top, wt) for top, wt in zip(lp.top, weights) if wt]
    return out


def learning_rate(solver, it):
    """Caffe's SGDSolver::GetLearningRate at iteration `it`, in double."""
    policy, base = solver.lr_policy, solver.base_lr
    if policy == "fixed":
        return base
    if policy == "step":
        return base * solver.gamma ** (it // solver.stepsize)
    if policy == "inv":
        return base * (1 + solver.gamma * it) ** (-solver.power)
    if policy == "poly":
        return base * (1 - it / solver.max_iter) ** solver.power
    if policy == "exp":
        return base * solver.gamma ** it
    raise NotImplementedError(f"lr_policy {policy}")


def sgd(net_param, solver, params, inputs, steps):
    """`steps` iterations of Caffe's SGD (momentum, L2 decay, lr_mult, decay_mult) of the TRAIN net
    from `params` ({layer: [arrays]}) on the same `inputs` every step. Returns ({layer: [arrays]}
    after the steps, [loss of each step's forward])."""
    if solver.type not in ("", "SGD") or solver.regularization_type != "L2" or solver.iter_size != 1 \
            or solver.clip_gradients > 0:
        raise NotImplementedError("only plain SGD with L2 decay, iter_size 1, no clipping")
    net = Replay(net_param, "TRAIN", params)
    learnable = net.learnable()
    history = [torch.zeros_like(t) for _, _, t, _, _ in learnable]
    seen = []
    for it in range(steps):
        rate = learning_rate(solver, it)
        for _, _, t, _, _ in learnable:
            t.grad = None
        blobs = net.forward(inputs)
        tops = losses(net_param, blobs)
        loss = sum(blobs[top] * wt for top, wt in tops)
        loss.backward()
        seen.append(float(loss.detach()))
        with torch.no_grad():
            for (_, _, t, lr, decay), h in zip(learnable, history):
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                if solver.weight_decay * decay:
                    g = g + solver.weight_decay * decay * t
                h.mul_(solver.momentum).add_(rate * lr * g)
                t.sub_(h)
    return {name: [t.detach().numpy().copy() for t in blobs] for name, blobs in net.params.items()}, seen


def forward_backward(net_param, phase, params, inputs, top_diffs):
    """One forward and one backward: the tops' diffs are `top_diffs` ({blob: array}) plus the loss
    weights of loss tops. Returns ({blob: value}, {layer: [param diffs]}, {input: diff})."""
    net = Replay(net_param, phase, params)
    leaves = {k: torch.as_tensor(np.asarray(v), dtype=F64).clone().requires_grad_(True) for k, v in inputs.items()}
    blobs = net.forward(leaves)
    total = sum(blobs[top] * wt for top, wt in losses(net_param, blobs)) if losses(net_param, blobs) else 0
    for name, diff in top_diffs.items():
        total = total + (blobs[name] * torch.as_tensor(np.asarray(diff), dtype=F64)).sum()
    if isinstance(total, torch.Tensor):
        total.backward()
    zero = lambda t: (t.grad if t.grad is not None else torch.zeros_like(t)).numpy().copy()
    return ({k: v.detach().numpy().copy() for k, v in blobs.items()},
            {name: [zero(t) for t in ts] for name, ts in net.params.items()},
            {k: zero(t) for k, t in leaves.items()})


def xavier_params(net_param, shapes, seed):
    """Initial blobs as the prototxt's fillers make them (xavier / gaussian / constant; BatchNorm's
    statistics 0, Scale 1 and 0), drawn with numpy from `seed`: {layer: [float32 arrays]} for
    `shapes` ({layer: [shape]})."""
    rng = np.random.default_rng(seed)
    out = {}
    for lp in net_param.layer:
        if lp.name not in shapes:
            continue
        fillers = {"Convolution": (lp.convolution_param.weight_filler, lp.convolution_param.bias_filler),
                   "InnerProduct": (lp.inner_product_param.weight_filler, lp.inner_product_param.bias_filler)}
        blobs = []
        for i, shape in enumerate(shapes[lp.name]):
            if lp.type == "BatchNorm":
                a = np.zeros(shape)
            elif lp.type == "Scale":
                a = np.ones(shape) if i == 0 else np.zeros(shape)
            else:
                f = fillers[lp.type][i]
                fan_in = math.prod(shape) / shape[0]
                if f.type == "xavier":
                    scale = math.sqrt(3 / fan_in)
                    a = rng.uniform(-scale, scale, shape)
                elif f.type == "gaussian":
                    a = rng.normal(f.mean, f.std, shape)
                elif f.type in ("constant", ""):
                    a = np.full(shape, f.value)
                else:
                    raise NotImplementedError(f"filler {f.type}")
            blobs.append(a.astype(np.float32))
        out[lp.name] = blobs
    return out
