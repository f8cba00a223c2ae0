"""The layer registry: the one way to add a layer type.

A layer is a `caffe.layer_modules.LayerModule` subclass registered under its Caffe type name::

    from caffe.registry import register_layer
    from caffe.layer_modules import LayerModule

    @register_layer("Square")
    class Square(LayerModule):
        num_bottoms = 1
        num_tops = 1

        def forward(self, x):
            return (x * x,)

Once the module defining it is imported, prototxts can use `type: "Square"`.
"""

_LAYERS = {}


class UnknownLayerError(KeyError):
    """A layer type that is not in the registry."""

    def __str__(self):
        return self.args[0]


def register_layer(type_name):
    """Class decorator registering a LayerModule subclass under the Caffe type name `type_name`."""

    def decorate(cls):
        if type_name in _LAYERS and _LAYERS[type_name] is not cls:
            raise ValueError(f"layer type {type_name!r} is already registered by {_LAYERS[type_name].__qualname__}")
        _LAYERS[type_name] = cls
        cls.type_name = type_name
        return cls

    return decorate


def layer_class(type_name, where=""):
    """The class registered for `type_name` (the built-in types are registered by importing
    caffe.layer_modules); a clear error naming the registry if there is none."""
    try:
        return _LAYERS[type_name]
    except KeyError:
        place = f"{where}: " if where else ""
        raise UnknownLayerError(
            f"{place}unknown layer type {type_name!r}. Known types: {', '.join(sorted(_LAYERS))}. "
            "Add a type with caffe.registry.register_layer (see its docstring).") from None


def registered_types():
    """The registered layer type names, sorted."""
    return sorted(_LAYERS)
