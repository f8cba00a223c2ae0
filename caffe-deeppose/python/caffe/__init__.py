"""Our Caffe: a Caffe-compatible runtime on PyTorch with pycaffe's interface.

Names are imported on first use, so that the command-line data tools start without loading
PyTorch; `caffe.Net`, `caffe.SGDSolver`, `caffe.io` ... work as in pycaffe.
"""
import importlib

from .formats import prototext  # noqa: F401  (str() of every caffe_pb2 message: the text Caffe writes)
from .proto.caffe_pb2 import TEST, TRAIN  # noqa: F401

__version__ = "1.0.0"  # the Caffe (pycaffe) version whose interface this runtime follows

_HOMES = {
    "Net": "net", "NetModule": "net",
    "layer_type_list": "layer_modules", "register_layer": "registry",
    "set_mode_cpu": "common", "set_mode_gpu": "common", "set_device": "common", "set_random_seed": "common",
    "set_solver_count": "common", "set_solver_rank": "common", "set_multiprocess": "common",
    "solver_count": "common", "solver_rank": "common",
    "set_reference": "accel", "reference": "accel",
    "Layer": "layer_modules.python", "Timer": "common", "init_log": "glog",
    "NCCL": "distributed", "has_nccl": "distributed",
    "SGDSolver": "solvers", "NesterovSolver": "solvers", "AdaGradSolver": "solvers",
    "RMSPropSolver": "solvers", "AdaDeltaSolver": "solvers", "AdamSolver": "solvers", "get_solver": "solvers",
    "get_solver_from_string": "solvers",
    "NetSpec": "net_spec", "layers": "net_spec", "params": "net_spec", "to_proto": "net_spec",
    "Classifier": "classifier", "Detector": "detector",
}


def __getattr__(name):
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    else:
        try:  # a submodule: caffe.io, caffe.proto, caffe.fillers, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'caffe' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
