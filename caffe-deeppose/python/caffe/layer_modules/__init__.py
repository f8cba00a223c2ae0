"""Layer families, one module each; importing this package registers every built-in layer type."""
from ..registry import registered_types
from . import (activation, array_data, conv, data, eltwise, hdf5_layers, inner_product, input,  # noqa: F401
               loss, norm, pooling, python, recurrent, reduction, scale, shape, softmax, window_data)
from .base import LayerModule  # noqa: F401


def layer_type_list():
    """The registered layer type names, sorted (pycaffe's `caffe.layer_type_list()`): the built-in
    ones and those registered since."""
    return registered_types()
