"""`caffe.Net` and how it is built, one module a step of Caffe's Net::Init (filtering, layer_setup,
wiring, params, weights), with its executor, backward and pycaffe interface.

Names are imported on first use (`caffe.net.Net`, `from caffe.net import Net`), so that the data
layers can apply the net's filtering rules without importing the net.
"""
import importlib

from ..proto.caffe_pb2 import TEST, TRAIN  # noqa: F401

_HOMES = {"Net": "net", "NetError": "errors", "NetModule": "wiring"}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
