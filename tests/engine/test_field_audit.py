"""The field audit: no field of a `*_param` message is silently ignored. Every field our schema has
(read from the descriptors) needs an entry in tests/engine/field_audit_table.py, and each entry's
evidence is checked here (see that file for the kinds)."""
import ast
import os
import re

import numpy as np
import pytest

import caffe
from caffe.formats.protoio import read_prototxt
from caffe.proto import caffe_pb2
from caffe.layer_modules import layer_type_list
from tests.conftest import GOLDEN
from tests.engine.conftest import compare, golden_index
from tests.engine.field_audit_table import AUDIT, BASES, TYPES

HERE = os.path.dirname(os.path.abspath(__file__))  # the test files the table names

PARAM_MESSAGES = {f.message_type.name: (f.name, f.message_type) for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
                  if f.name.endswith("_param")}
FIELDS = [(m, f.name) for m, (_, desc) in sorted(PARAM_MESSAGES.items()) for f in desc.fields]
ENTRIES = [(m, f) for m in sorted(AUDIT) for f in AUDIT[m]]


def test_every_field_has_an_entry():
    missing = [f"{m}.{f}" for m, f in FIELDS if f not in AUDIT.get(m, {})]
    assert not missing, ("fields without evidence in tests/engine/field_audit_table.py (a golden case, a test, "
                         "REFUSED, no_effect or pending): " + ", ".join(missing))


def test_no_entry_for_a_field_the_schema_lacks():
    known = set(FIELDS)
    assert [f"{m}.{f}" for m, f in ENTRIES if (m, f) not in known] == []


def _other_value(fd):
    """A value of scalar field `fd` other than its default."""
    if fd.enum_type is not None:
        return next(v.number for v in fd.enum_type.values if v.number != fd.default_value)
    if isinstance(fd.default_value, bool):
        return not fd.default_value
    if isinstance(fd.default_value, str):
        return fd.default_value + "x"
    return fd.default_value + 1


def _set_other(param, fd):
    value = getattr(param, fd.name)
    if fd.message_type is not None:
        (value.add() if hasattr(value, "add") else value).SetInParent()
    elif hasattr(value, "append"):  # repeated scalar
        value.append(_other_value(fd))
    else:
        setattr(param, fd.name, _other_value(fd))


def _golden_sets(case, message, field):
    net = read_prototxt(os.path.join(GOLDEN, case + ".prototxt"), caffe_pb2.NetParameter)
    name = PARAM_MESSAGES[message][0]
    for layer in net.layer:
        if layer.HasField(name):
            value = getattr(getattr(layer, name), field)
            if len(value) if hasattr(value, "__len__") and not isinstance(value, str) else \
                    getattr(layer, name).HasField(field):
                return True
    return False


def _net_with(layer_type, message, field, monkeypatch):
    """(net param, case) of the golden case for `layer_type` (BASES, else its first layer case), the
    field set in its layer of that type; the working directory is the case's folder."""
    index = golden_index("layers")
    case = BASES.get(layer_type) or next((f"layers/{c}" for c in sorted(index) if index[c]["type"] == layer_type),
                                         None)
    assert case, f"no golden case of type {layer_type} to set {message}.{field} in (add one to BASES)"
    monkeypatch.chdir(os.path.join(GOLDEN, os.path.dirname(case)))
    net_param = read_prototxt(os.path.basename(case) + ".prototxt", caffe_pb2.NetParameter)
    param = getattr(next(lp for lp in net_param.layer if lp.type == layer_type), PARAM_MESSAGES[message][0])
    _set_other(param, param.DESCRIPTOR.fields_by_name[field])
    return net_param, case


def _phase(net_param):
    return caffe.TEST if net_param.state.phase == caffe.TEST else caffe.TRAIN


def _refused(layer_type, message, field, monkeypatch):
    net_param, _ = _net_with(layer_type, message, field, monkeypatch)
    with pytest.raises(caffe.net.NetError, match="not supported"):
        caffe.Net.from_param(net_param, _phase(net_param))


def _no_effect(layer_type, message, field, monkeypatch):
    """With the field set, the golden layer case still gives Caffe's tops."""
    net_param, case = _net_with(layer_type, message, field, monkeypatch)
    assert case.startswith("layers/"), f"no_effect needs a golden layer case of {layer_type}"
    net = caffe.Net.from_param(net_param, _phase(net_param))
    arrays = np.load(os.path.basename(case) + ".npz")
    for key in arrays.files:
        if key.startswith("bottom_"):
            net.blobs[key].data[...] = arrays[key]
    for i, blob in enumerate(net.params.get("layer", [])):
        blob.data[...] = arrays[f"param_{i}"]
    net.forward()
    for key in arrays.files:
        if key.startswith("top_"):
            compare("audit", f"{case} with {field} set", key, net.blobs[key].data, arrays[key])


@pytest.mark.parametrize("message, field", ENTRIES, ids=[f"{m}.{f}" for m, f in ENTRIES])
def test_evidence(message, field, monkeypatch):
    kind, *arg = AUDIT[message][field]
    types = TYPES.get(message, ())
    if kind == "golden":
        assert _golden_sets(arg[0], message, field), f"golden case {arg[0]} does not set {message}.{field}"
    elif kind == "test":
        path, name = arg[0].split("::")
        source = open(os.path.join(HERE, path)).read()
        assert name in {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}, arg[0]
        assert re.search(rf"\b{field}\b", source), f"{path} never mentions {field}"
    elif kind == "refused":
        assert types, f"give the layer types of {message} in TYPES"
        for layer_type in types:
            _refused(layer_type, message, field, monkeypatch)
    elif kind == "no_effect":
        assert arg[0] and types, f"give why, and the layer types of {message} in TYPES"
        for layer_type in types:
            _no_effect(layer_type, message, field, monkeypatch)
    elif kind == "pending":
        assert arg[0] not in layer_type_list(), (
            f"layer type {arg[0]} is in the engine now: replace pending({arg[0]!r}) for {message}.{field} "
            "with its evidence (a golden case, a test, REFUSED or no_effect)")
    else:
        pytest.fail(f"unknown evidence {AUDIT[message][field]!r}")


def test_refused_fields_are_refused_in_a_net(tmp_path):
    """The refusal reaches the user as a NetError naming the file, line and layer."""
    path = tmp_path / "net.prototxt"
    path.write_text('name: "n"\nlayer { name: "d" type: "Data" top: "data" top: "label"\n'
                    '  data_param { source: "db" batch_size: 1 backend: LMDB scale: 0.5 } }\n')
    with pytest.raises(caffe.net.NetError, match=r"net.prototxt:2: layer 'd'.*data_param.scale is not supported.*"
                                                 r"transform_param \{ scale"):
        caffe.Net(str(path), caffe.TRAIN)
