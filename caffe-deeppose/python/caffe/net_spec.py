"""pycaffe's NetSpec: nets written in Python, serialised to the `NetParameter` pycaffe writes.

    from caffe import layers as L, params as P
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.pool = L.Pooling(n.data, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    print(n.to_proto())

`L.<Type>(*bottoms, **fields)` describes a layer and returns its top (a tuple with `ntop=k`, the
layer itself with `ntop=0`; `in_place=True` writes the tops over the bottoms). A keyword ending in
`param` fills that field of the `LayerParameter`; any other keyword fills the layer's own
`<type>_param` if it has that field, else the `LayerParameter` (`name`, `include`, `loss_weight`
...). Lists fill repeated fields, dicts fill messages. Blob and layer names are the attribute
names of the NetSpec; unnamed ones are `<Type><k>` counted per type, as in pycaffe.
"""
from collections import Counter, OrderedDict

from .proto import caffe_pb2


def param_name_dict():
    """{layer type: prefix of its `<prefix>_param` field}, e.g. 'InnerProduct' -> 'inner_product',
    read off the `*_param` fields of `LayerParameter` and the names of their message types."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                names[type_name[:-len("Parameter")]] = field.name[:-len("_param")]
    return names


def assign_proto(proto, name, val):
    """Set field `name` of message `proto` from a Python value: a list fills a repeated field (a
    list of dicts adds one message per dict), a dict fills a message field key by key, anything
    else is assigned; a single value given to a repeated field is taken as a one-element list."""
    field = getattr(proto, name)
    if hasattr(field, "extend") and not isinstance(val, list):
        val = [val]
    if isinstance(val, list):
        if val and isinstance(val[0], dict):
            for item in val:
                message = field.add()
                for key, value in item.items():
                    assign_proto(message, key, value)
        else:
            field.extend(val)
    elif isinstance(val, dict):
        for key, value in val.items():
            assign_proto(field, key, value)
    else:
        setattr(proto, name, val)


class Top:
    """One output blob of a layer: the `n`-th top of Function `fn`."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter with every layer needed to compute this top (names made automatically)."""
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer: its type, its bottoms (Tops of other layers) and its fields."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for index, bottom in enumerate(inputs):
            if not isinstance(bottom, Top):
                raise TypeError(f"{type_name} input {index} is not a Top (type is {type(bottom)})")
        self.inputs = inputs
        self.ntop = params.pop("ntop", 1)
        self.in_place = params.pop("in_place", False)
        self.params = params
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _get_name(self, names, autonames):
        """The layer's name: the name of its first top, or `<Type><k>` for a layer without tops."""
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _to_proto(self, layers, names, autonames):
        """Add this layer (after the layers of its bottoms) to `layers`, once."""
        if self in layers:
            return
        bottom_names = []
        for bottom in self.inputs:
            bottom._to_proto(layers, names, autonames)
            bottom_names.append(layers[bottom.fn].top[bottom.n])
        layer = caffe_pb2.LayerParameter(type=self.type_name, bottom=bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(self._get_top_name(top, names, autonames) for top in self.tops)
        layer.name = self._get_name(names, autonames)
        for key, value in self.params.items():
            self._assign(layer, key, value)
        layers[self] = layer

    def _assign(self, layer, key, value):
        """A keyword into the layer's own `<type>_param` if it has that field, else the layer."""
        if not key.endswith("param") and self.type_name in _param_names:
            type_param = getattr(layer, _param_names[self.type_name] + "_param")
            if key in type_param.DESCRIPTOR.fields_by_name:
                assign_proto(type_param, key, value)
                return
        if key not in layer.DESCRIPTOR.fields_by_name:
            own = _param_names.get(self.type_name)
            where = (f"LayerParameter or {own}_param" if own else
                     f"LayerParameter (a {self.type_name} layer has no parameter message of its own "
                     "name: give its fields inside one, e.g. convolution_param=dict(...))")
            raise AttributeError(f"{self.type_name} layer: {key!r} is not a field of {where}")
        assign_proto(layer, key, value)


class NetSpec:
    """Named tops, assigned as attributes (or items); `to_proto()` writes every layer they need,
    naming each top (and each layer after its first top) by its attribute name."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top named {name!r}") from None

    def __setitem__(self, key, value):
        self.tops[key] = value

    def __getitem__(self, key):
        return self.tops[key]

    def to_proto(self):
        names = {top: name for name, top in self.tops.items()}
        autonames = Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        return caffe_pb2.NetParameter(layer=layers.values())


def to_proto(*tops):
    """A NetParameter with every layer needed to compute `tops`, blobs named automatically."""
    layers = OrderedDict()
    autonames = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    return caffe_pb2.NetParameter(layer=layers.values())


class Layers:
    """`layers.<Type>(*bottoms, **fields)`: describe a layer of that Caffe type (see the module)."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer_fn(*args, **kwargs):
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        layer_fn.__name__ = type_name
        return layer_fn


class Parameters:
    """`params.<Type>.<NAME>`: an enum value of `<Type>Parameter`, e.g. `params.Pooling.MAX`."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        message = getattr(caffe_pb2, type_name + "Parameter")

        class Param:
            def __getattr__(self, value_name):
                return getattr(message, value_name)
        return Param()


_param_names = param_name_dict()
layers = Layers()
params = Parameters()
