"""The DeepPose nets (stage 1 and the refiner) written directly in PyTorch: the reference the
benches measure our engine against (weights copied from a caffe.Net of the same prototxt), and
the step of a plain PyTorch training loop of it (hand_written_step)."""
import torch
import torch.nn.functional as F


class DeepPoseTorch(torch.nn.Module):
    """conv-BN-scale-ReLU-LRN-pool x2, conv3-5, pool, fc6, fc7, predict; train() uses batch
    statistics and dropout like the Caffe net in TRAIN, eval() the stored statistics."""

    def __init__(self, net, lrn=None):
        """`lrn(x)`: the LRN to use; torch's F.local_response_norm by default."""
        super().__init__()
        self.lrn = lrn or (lambda x: F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0))
        p = {name: [torch.from_numpy(b.data.copy()) for b in blobs] for name, blobs in net.params.items()}
        self.w = torch.nn.ParameterDict({f"{k}_{i}": torch.nn.Parameter(t) for k, ts in p.items()
                                         for i, t in enumerate(ts) if not k.startswith("bn")})
        for k in ("bn1", "bn2"):
            mean, var, factor = p[k]
            f = 0.0 if factor.item() == 0 else 1.0 / factor.item()
            self.register_buffer(f"{k}_mean", mean * f)
            self.register_buffer(f"{k}_var", var * f)
        conv1 = net._layer_params[net._layer_names.index("conv1")].convolution_param
        self.stride1 = conv1.stride[0] if conv1.stride else 1

    def block(self, x, i, stride, pad, groups):
        w = self.w
        x = F.conv2d(x, w[f"conv{i}_0"], w[f"conv{i}_1"], stride=stride, padding=pad, groups=groups)
        x = F.batch_norm(x, getattr(self, f"bn{i}_mean"), getattr(self, f"bn{i}_var"),
                         training=self.training, momentum=0.001, eps=1e-5)
        x = torch.relu(x * w[f"scale{i}_0"][:, None, None] + w[f"scale{i}_1"][:, None, None])
        x = self.lrn(x)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def forward(self, x):
        w = self.w
        x = self.block(x, 1, self.stride1, 0, 1)
        x = self.block(x, 2, 1, 2, 2)
        x = torch.relu(F.conv2d(x, w["conv3_0"], w["conv3_1"], padding=1))
        x = torch.relu(F.conv2d(x, w["conv4_0"], w["conv4_1"], padding=1, groups=2))
        x = torch.relu(F.conv2d(x, w["conv5_0"], w["conv5_1"], padding=1, groups=2))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True).flatten(1)
        x = F.dropout(torch.relu(F.linear(x, w["fc6_0"], w["fc6_1"])), 0.5, self.training)
        x = F.dropout(torch.relu(F.linear(x, w["fc7_0"], w["fc7_1"])), 0.5, self.training)
        return F.linear(x, w["predict_0"], w["predict_1"])


def hand_written_step(net, same_lrn=True):
    """`step(x, y)`: one iteration of a plain PyTorch training loop of `net`'s stage-1
    architecture (its weights copied) and update rule on the batch (x, y), with our LRN operator
    if `same_lrn`, else torch's F.local_response_norm."""
    lrn = net.layers[net._layer_names.index("norm1")].module
    model = DeepPoseTorch(net, lrn=(lambda t: lrn(t)[0]) if same_lrn else None).train()
    groups = [{"params": [p for n, p in model.w.items() if n.endswith("_0")], "lr": 1e-4, "weight_decay": 5e-3},
              {"params": [p for n, p in model.w.items() if n.endswith("_1")], "lr": 2e-4, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=1e-4, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).sum() / (2 * y.numel())
        loss.backward()
        opt.step()

    return step
