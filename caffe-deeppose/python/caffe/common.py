"""Caffe's global state: computing mode (CPU/GPU), device and random seed, like `Caffe::Get()`."""
import torch

_state = {"mode": "cpu", "device_id": 0, "seed": None}


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
    """Seed Caffe's random generator (fillers, Dropout, data shuffling and mirroring)."""
    _state["seed"] = int(seed)
    torch.manual_seed(int(seed))


def mode():
    return _state["mode"]


def device():
    """The torch device that new nets compute on."""
    if _state["mode"] == "gpu":
        return torch.device("cuda", _state["device_id"])
    return torch.device("cpu")
