"""oneDNN kernels the inference path calls directly (CPU, float32, no gradient), as opaque custom
ops: `torch.compile` calls them as they are (inductor's own lowering of these oneDNN ops wants
weights frozen into the graph; ours are graph inputs, so writes into `net.params` take effect)."""
import torch

AVAILABLE = torch.backends.mkldnn.is_available()  # read once: torch.compile does not trace the call


def linear_eager(x, weight, bias):
    """x @ weight.T + bias through oneDNN's inner product (x 2-d, weight (out, in) contiguous)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


@torch.library.custom_op("caffe::onednn_linear", mutates_args=())
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`linear_eager` as an opaque op for torch.compile (calling a custom op imports torch._dynamo:
    eager code calls `linear_eager`)."""
    return linear_eager(x, weight, bias)


@linear.register_fake
def _(x, weight, bias):
    return x.new_empty((x.shape[0], weight.shape[0]))


@torch.library.custom_op("caffe::onednn_conv2d", mutates_args=())
def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int],
           padding: list[int], dilation: list[int], groups: int, relu: bool) -> torch.Tensor:
    """A 2-d convolution through oneDNN, its ReLU (if `relu`) applied in the same pass; the
    result is channels-last."""
    top = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups,
                                                  "relu" if relu else "none", [], "")
    return top.contiguous(memory_format=torch.channels_last)


@conv2d.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, relu):
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation)]
    return torch.empty((x.shape[0], weight.shape[0], *size), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)
