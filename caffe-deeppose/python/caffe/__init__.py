"""Our Caffe: a Caffe-compatible runtime on PyTorch with pycaffe's interface."""
from . import io, proto  # noqa: F401
from .common import set_device, set_mode_cpu, set_mode_gpu, set_random_seed  # noqa: F401
from .net import TEST, TRAIN, Net, NetModule  # noqa: F401
from .registry import layer_type_list, register_layer  # noqa: F401
from .layers import Layer  # noqa: F401
from .solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,  # noqa: F401
                      SGDSolver, get_solver)
