"""Legacy net and solver files upgraded on load, with the log lines of Caffe's upgrade_proto.

Nets: V0 layers (`layers { layer { type: "conv" } }`, with `padding` layers folded into the
convolution or pooling they feed) -> V1 (`layers { type: CONVOLUTION }`) -> the current
`layer { type: "Convolution" }`; data-transformation fields of V1 data layers move to
`transform_param`; net-level `input` fields become an Input layer; a BatchNorm declaring three
`param`s gets lr_mult and decay_mult 0. Solvers: the `solver_type` enum becomes the `type` string.
"""
from .. import glog
from ..proto import caffe_pb2

_TAG = "upgrade_proto.cpp"

# V0 type string -> V1 enum name
_V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION", "data": "DATA",
    "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS", "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT", "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN", "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING", "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}
_DATA_SOURCES = {"data": "data_param", "hdf5_data": "hdf5_data_param", "images": "image_data_param",
                 "window_data": "window_data_param"}
# V0 field -> {V0 type: (V1 *_param field, its field)}; "*" applies to every type
_V0_FIELDS = {
    "num_output": {"conv": ("convolution_param", "num_output"), "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"), "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"), "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"), "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": dict({t: (p, "source") for t, p in _DATA_SOURCES.items()},
                   infogain_loss=("infogain_loss_param", "source")),
    "scale": {"*": ("transform_param", "scale")},
    "meanfile": {"*": ("transform_param", "mean_file")},
    "batchsize": {t: (p, "batch_size") for t, p in _DATA_SOURCES.items()},
    "cropsize": {"*": ("transform_param", "crop_size")},
    "mirror": {"*": ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
}
_V0_ERROR_NAME = {"shuffle_images": "shuffle"}  # the name Caffe's error line uses
_V0_ERROR_LINE = dict(num_output=237, biasterm=249, weight_filler=261, bias_filler=273, pad=283, kernelsize=295,
                      group=304, stride=316, pool=341, dropout_ratio=350, local_size=359, alpha=367, beta=375, k=383,
                      source=403, batchsize=429, rand_skip=449, shuffle_images=458, new_height=467, new_width=476,
                      concat_dim=485, det_fg_threshold=494, det_bg_threshold=504, det_fg_fraction=514,
                      det_context_pad=524, det_crop_mode=534, hdf5_output_param=544)
# V1 enum name -> layer type string
_V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
    "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power",
    "RELU": "ReLU", "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}
_V1 = caffe_pb2.V1LayerParameter
_TRANSFORM_FIELDS = (("scale", "scale"), ("mean_file", "mean_file"), ("crop_size", "crop_size"),
                     ("mirror", "mirror"))
_SOLVER_TYPES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}


class UpgradeError(ValueError):
    """A legacy file that cannot be upgraded (where Caffe stops too)."""


# -- predicates (Caffe's NetNeeds*Upgrade) ----------------------------------------------------
def _needs_v0(param):
    return any(layer.HasField("layer") for layer in param.layers)


def _needs_data(param):
    kinds = {_V1.DATA: "data_param", _V1.IMAGE_DATA: "image_data_param", _V1.WINDOW_DATA: "window_data_param"}
    return any(layer.type in kinds and any(getattr(layer, kinds[layer.type]).HasField(f) for f, _ in _TRANSFORM_FIELDS)
               for layer in param.layers)


def _needs_batch_norm(param):
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in param.layer)


def net_needs_upgrade(param):
    """Whether a NetParameter uses any legacy form (Caffe's NetNeedsUpgrade)."""
    return _needs_v0(param) or bool(param.layers) or _needs_data(param) or bool(param.input) or _needs_batch_norm(param)


# -- V0 -> V1 ---------------------------------------------------------------------------------
def _fold_padding_layers(param):
    """V0 `padding` layers removed; their pad goes to the conv/pool layer they feed."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layers[:]
    last_top = {name: None for name in param.input}
    for i, conn in enumerate(param.layers):
        if conn.layer.type != "padding":
            out.layers.add().CopyFrom(conn)
        for j, blob in enumerate(conn.bottom):
            if blob not in last_top:
                raise UpgradeError(f"Unknown blob input {blob} to layer {j}")
            source = last_top[blob]
            if source is None or param.layers[source].layer.type != "padding":
                continue
            pad = param.layers[source]
            if conn.layer.type not in ("conv", "pool"):
                raise UpgradeError(f"Padding layer input to non-convolutional / non-pooling layer type "
                                   f"{conn.layer.type}")
            if len(conn.bottom) != 1 or len(pad.bottom) != 1 or len(pad.top) != 1:
                raise UpgradeError(f"layer {conn.layer.name!r}: a padding layer and the layer it feeds take "
                                   "a single blob")
            out.layers[-1].layer.pad = pad.layer.pad
            out.layers[-1].bottom[j] = pad.bottom[0]
        for blob in conn.top:
            last_top[blob] = i
    return out


def _set(message, field, value):
    target = message.DESCRIPTOR.fields_by_name[field]
    if hasattr(getattr(message, field), "append"):  # a repeated field
        getattr(message, field).append(value)
    elif target.message_type is not None:
        getattr(message, field).CopyFrom(value)
    else:
        setattr(message, field, value)


def _upgrade_v0_layer(conn):
    """(V1LayerParameter, fully compatible) of one V0 layer connection."""
    out = _V1(bottom=conn.bottom, top=conn.top)
    ok = True
    if not conn.HasField("layer"):
        return out, ok
    v0 = conn.layer
    if v0.HasField("name"):
        out.name = v0.name
    if v0.HasField("type"):
        if v0.type not in _V0_TYPES:
            raise UpgradeError(f"Unknown layer name: {v0.type}")
        out.type = _V1.LayerType.Value(_V0_TYPES[v0.type])
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in _V0_FIELDS.items():
        if not v0.HasField(field):
            continue
        target = targets.get(v0.type, targets.get("*"))
        if target is None:
            glog.error(f"{_TAG}:{_V0_ERROR_LINE[field]}", f"Unknown parameter {_V0_ERROR_NAME.get(field, field)} for layer type {v0.type}")
            ok = False
        elif target[1] is None:
            getattr(out, target[0]).CopyFrom(getattr(v0, field))
        else:
            _set(getattr(out, target[0]), target[1], getattr(v0, field))
    return out, ok


def _upgrade_v0_net(param):
    padded = _fold_padding_layers(param)
    out = caffe_pb2.NetParameter()
    if padded.HasField("name"):
        out.name = padded.name
    ok = True
    for conn in padded.layers:
        layer, compatible = _upgrade_v0_layer(conn)
        out.layers.add().CopyFrom(layer)
        ok &= compatible
    out.input.extend(padded.input)
    out.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        out.force_backward = padded.force_backward
    return out, ok


# -- V1 -> current ----------------------------------------------------------------------------
def _upgrade_data_transformation(param):
    kinds = {_V1.DATA: "data_param", _V1.IMAGE_DATA: "image_data_param", _V1.WINDOW_DATA: "window_data_param"}
    for layer in param.layers:
        if layer.type not in kinds:
            continue
        source = getattr(layer, kinds[layer.type])
        for old, new in _TRANSFORM_FIELDS:
            if source.HasField(old):
                setattr(layer.transform_param, new, getattr(source, old))
                source.ClearField(old)


def _upgrade_v1_layer(v1):
    """(LayerParameter, fully compatible) of one V1 layer."""
    layer = caffe_pb2.LayerParameter(bottom=v1.bottom, top=v1.top, include=v1.include, exclude=v1.exclude,
                                     blobs=v1.blobs, loss_weight=v1.loss_weight)
    if v1.HasField("name"):
        layer.name = v1.name
    if v1.HasField("type"):
        layer.type = _V1_TYPES[_V1.LayerType.Name(v1.type)]

    def spec(i):
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        spec(i).share_mode = mode
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    for field in v1.DESCRIPTOR.fields:
        if field.name.endswith("_param") and v1.HasField(field.name):
            getattr(layer, field.name).CopyFrom(getattr(v1, field.name))
    if v1.HasField("layer"):
        glog.error(_TAG + ":870", "Input NetParameter has V0 layer -- ignoring.")
        return layer, False
    return layer, True


def _upgrade_v1_net(param):
    if param.layer:
        raise UpgradeError("Refusing to upgrade inconsistent NetParameter input; the definition includes both "
                           "'layer' and 'layers' fields. The current format defines 'layer' fields with string "
                           "type like layer { type: 'Layer' ... } and not layers { type: LAYER ... }. Manually "
                           "switch the definition to 'layer' format to continue.")
    ok = True
    layers = []
    for i, v1 in enumerate(param.layers):
        layer, compatible = _upgrade_v1_layer(v1)
        if not compatible:
            glog.error(_TAG + ":684", f"Upgrade of input layer {i} failed.")
            ok = False
        layers.append(layer)
    del param.layers[:]
    param.layer.extend(layers)
    return ok


# -- input fields, BatchNorm ------------------------------------------------------------------
def _upgrade_input(param):
    """Net-level `input` + `input_shape`/`input_dim` become a first Input layer named "input"."""
    if param.input_dim and len(param.input_dim) != 4 * len(param.input):
        raise UpgradeError(f"net {param.name!r}: {len(param.input)} inputs need {4 * len(param.input)} input_dim "
                           f"values, got {len(param.input_dim)}")
    if not param.input_dim and param.input_shape and len(param.input_shape) != len(param.input):
        raise UpgradeError(f"net {param.name!r}: {len(param.input)} inputs but {len(param.input_shape)} input_shape")
    if param.input_shape or param.input_dim:
        layer = caffe_pb2.LayerParameter(name="input", type="Input", top=param.input)
        for i in range(len(param.input)):
            if param.input_shape:
                layer.input_param.shape.add().CopyFrom(param.input_shape[i])
            else:
                layer.input_param.shape.add().dim.extend(param.input_dim[4 * i:4 * i + 4])
        layers = [layer] + list(param.layer)
        del param.layer[:]
        param.layer.extend(layers)
    del param.input[:], param.input_shape[:], param.input_dim[:]


def _upgrade_batch_norm(param):
    for layer in param.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


def upgrade_net(param, source):
    """Upgrade `param` (a NetParameter) in place as Caffe's UpgradeNetAsNeeded does, logging each
    step; returns False if some legacy field could not be carried over (logged as an error)."""
    ok = True
    if _needs_v0(param):
        glog.info(_TAG + ":28", f"Attempting to upgrade input file specified using deprecated V0LayerParameter: "
                                f"{source}")
        upgraded, compatible = _upgrade_v0_net(param)
        param.CopyFrom(upgraded)
        if compatible:
            glog.info(_TAG + ":36", "Successfully upgraded file specified using deprecated V0LayerParameter")
        else:
            ok = False
            glog.error(_TAG + ":33", "Warning: had one or more problems upgrading V0NetParameter to NetParameter "
                                     "(see above); continuing anyway.")
        glog.warning(_TAG + ":39", "Note that future Caffe releases will not support V0NetParameter; use "
                                   "./build/tools/upgrade_net_proto_text for prototxt and "
                                   "./build/tools/upgrade_net_proto_binary for model weights upgrade this and any "
                                   "other net protos to the new format.")
    if _needs_data(param):
        glog.info(_TAG + ":46", f"Attempting to upgrade input file specified using deprecated transformation "
                                f"parameters: {source}")
        _upgrade_data_transformation(param)
        glog.info(_TAG + ":49", "Successfully upgraded file specified using deprecated data transformation "
                                "parameters.")
        glog.warning(_TAG + ":51", "Note that future Caffe releases will only support transform_param messages "
                                   "for transformation fields.")
    if param.layers:
        glog.info(_TAG + ":55", f"Attempting to upgrade input file specified using deprecated V1LayerParameter: "
                                f"{source}")
        if _upgrade_v1_net(param):
            glog.info(_TAG + ":63", "Successfully upgraded file specified using deprecated V1LayerParameter")
        else:
            ok = False
            glog.error(_TAG + ":60", "Warning: had one or more problems upgrading V1LayerParameter (see above); "
                                     "continuing anyway.")
    if param.input:
        glog.info(_TAG + ":69", f"Attempting to upgrade input file specified using deprecated input fields: {source}")
        _upgrade_input(param)
        glog.info(_TAG + ":72", "Successfully upgraded file specified using deprecated input fields.")
        glog.warning(_TAG + ":74", "Note that future Caffe releases will only support input layers and not input "
                                   "fields.")
    if _needs_batch_norm(param):
        glog.info(_TAG + ":79", f"Attempting to upgrade batch norm layers using deprecated params: {source}")
        _upgrade_batch_norm(param)
        glog.info(_TAG + ":82", "Successfully upgraded batch norm layers using deprecated params.")
    return ok


def upgrade_solver(param, source):
    """The `solver_type` enum becomes the `type` string, as Caffe's UpgradeSolverAsNeeded logs it."""
    if not param.HasField("solver_type"):
        return True
    glog.info(_TAG + ":1084", f"Attempting to upgrade input file specified using deprecated 'solver_type' field "
                              f"(enum)': {source}")
    if param.HasField("type"):
        raise UpgradeError(f"{source}: Failed to upgrade solver: old solver_type field (enum) and new type field "
                           "(string) cannot be both specified in solver proto text.")
    param.type = _SOLVER_TYPES[param.solver_type]
    param.ClearField("solver_type")
    glog.info(_TAG + ":1091", "Successfully upgraded file specified using deprecated 'solver_type' field (enum) to "
                              "'type' field (string).")
    glog.warning(_TAG + ":1093", "Note that future Caffe releases will only support 'type' field (string) for a "
                                 "solver's type.")
    return True
