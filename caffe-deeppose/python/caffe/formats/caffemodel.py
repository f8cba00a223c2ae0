"""Fast .caffemodel weights I/O on the protobuf wire format.

A DeepPose caffemodel holds ~58M floats; going through protobuf's element-wise containers
takes seconds, so blobs are read and written here as raw packed float runs (the wire format is
plain: `tag, length, bytes`). Layers of the current `layer` field (100) and of the legacy V1
`layers` field (2, with V0 layers inside) are all read, so old third-party caffemodels load too.
"""
import os

import numpy as np

from ..atomic_file import atomic_write
from .protoio import ProtoFileError, read_file, _encode_varint, _varint

# field numbers of caffe.proto
_NET_LAYER, _NET_V1_LAYERS = 100, 2
_LAYER_NAME, _LAYER_BLOBS = 1, 7
_V1_NAME, _V1_BLOBS, _V1_V0_LAYER = 4, 6, 1
_V0_NAME, _V0_BLOBS = 1, 50
_BLOB_LEGACY = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_DIFF, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 6, 7, 8


def _fields(buf, start, end):
    """(field number, wire type, value) of one message's fields; value is an int for varints
    and fixed-size fields, a (start, end) span for length-delimited ones."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = (pos, pos + size)
            pos += size
        elif wire == 5:
            value, pos = (pos, pos + 4), pos + 4
        elif wire == 1:
            value, pos = (pos, pos + 8), pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("message runs past its end")
        yield number, wire, value


def _blob(buf, span):
    """(shape, legacy, float32 values) of a BlobProto."""
    legacy, shape, chunks = {}, [], []
    for number, wire, value in _fields(buf, *span):
        if number in _BLOB_LEGACY and wire == 0:
            legacy[number] = value
        elif number == _BLOB_SHAPE:
            for n, w, v in _fields(buf, *value):
                if n == 1 and w == 2:  # packed int64 dims
                    pos = v[0]
                    while pos < v[1]:
                        d, pos = _varint(buf, pos)
                        shape.append(d)
                elif n == 1:
                    shape.append(v)
        elif number in (_BLOB_DATA, _BLOB_DOUBLE_DATA):
            dtype = "<f4" if number == _BLOB_DATA else "<f8"
            size = np.dtype(dtype).itemsize
            start, stop = value
            chunks.append(np.frombuffer(buf, dtype, (stop - start) // size, start).astype(np.float32))
    if legacy:
        return tuple(legacy.get(i, 0) for i in _BLOB_LEGACY), True, _concat(chunks)
    return tuple(shape), False, _concat(chunks)


def _concat(chunks):
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def read_weights(path):
    """[(layer name, [(shape, legacy, values), ...]), ...] of the layers of a caffemodel (their blobs,
    perhaps none)."""
    path = os.fspath(path)
    buf = read_file(path, binary=True)
    out = []
    try:
        for number, wire, value in _fields(buf, 0, len(buf)):
            if wire != 2 or number not in (_NET_LAYER, _NET_V1_LAYERS):
                continue
            name_field, blobs_field = (_LAYER_NAME, _LAYER_BLOBS) if number == _NET_LAYER else (_V1_NAME, _V1_BLOBS)
            name, blobs = None, []
            for n, w, v in _fields(buf, *value):
                if n == name_field and w == 2:
                    name = buf[v[0]:v[1]].decode("utf-8")
                elif n == blobs_field and w == 2:
                    blobs.append(_blob(buf, v))
                elif number == _NET_V1_LAYERS and n == _V1_V0_LAYER and w == 2:  # a V0 layer inside
                    for n0, w0, v0 in _fields(buf, *v):
                        if n0 == _V0_NAME and w0 == 2:
                            name = buf[v0[0]:v0[1]].decode("utf-8")
                        elif n0 == _V0_BLOBS and w0 == 2:
                            blobs.append(_blob(buf, v0))
            out.append((name, blobs))
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ProtoFileError(f"{path}: not a valid NetParameter (truncated or corrupt, {len(buf)} bytes): {e}") from None
    return out


def _length_delimited(number, payload):
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


class Chunks:
    """A message's wire bytes as a list of parts (bytes, or the arrays' own memory: writing
    weights copies none of them), with their total length."""

    def __init__(self, *parts):
        self.parts, self.size = [], 0
        for part in parts:
            self.add(part)

    def add(self, part):
        view = memoryview(part).cast("B")
        self.parts.append(view)
        self.size += view.nbytes

    def field(self, number, inner):
        """Append field `number`, length-delimited, holding `inner` (Chunks or bytes-like)."""
        inner = inner if isinstance(inner, Chunks) else Chunks(inner)
        self.add(_encode_varint(number << 3 | 2) + _encode_varint(inner.size))
        self.parts.extend(inner.parts)
        self.size += inner.size


def blob_chunks(data, diff=None):
    """A BlobProto with `shape` holding `data` (and `diff`) as float32, fields in protobuf's
    order (data 5, diff 6, shape 7), as `array_to_blobproto(...).SerializeToString()`."""
    shape = np.shape(data)
    out = Chunks()
    for number, values in ((_BLOB_DATA, data), (_BLOB_DIFF, diff)):
        if values is not None and np.size(values):  # protobuf writes no empty repeated field
            out.field(number, np.ascontiguousarray(values, dtype="<f4").reshape(-1))
    dims = b"".join(_encode_varint(int(d)) for d in shape)
    out.field(_BLOB_SHAPE, _length_delimited(1, dims) if dims else b"")
    return out


def message_chunks(message, number, items):
    """`message`'s wire bytes with `items` (Chunks) as its repeated field `number`, placed in
    field-number order: `message.SerializeToString()` had the items been appended to it."""
    head = message.SerializeToString()
    cut = len(head)
    for n, start in _field_starts(head):
        if n > number:
            cut = start
            break
    out = Chunks(head[:cut])
    for item in items:
        out.field(number, item)
    out.add(head[cut:])
    return out


def _field_starts(buf):
    """(field number, offset of its key) of each field of a serialised message."""
    pos = 0
    for number, wire, value in _fields(buf, 0, len(buf)):
        yield number, pos
        pos = value[1] if wire in (1, 2, 5) else _after_varint_field(buf, pos)


def _after_varint_field(buf, pos):
    _, pos = _varint(buf, pos)
    _, pos = _varint(buf, pos)
    return pos


def caffemodel_chunks(net_param, blobs_by_layer):
    """A NetParameter (its layers without blobs) with each layer's blobs (a list of (data, diff
    or None) per layer, aligned with net_param.layer), as Caffe's Net::ToProto serialises it."""
    head = type(net_param)()
    head.CopyFrom(net_param)
    del head.layer[:]
    out = Chunks(head.SerializeToString())
    for layer, blobs in zip(net_param.layer, blobs_by_layer):
        out.field(_NET_LAYER, message_chunks(layer, _LAYER_BLOBS, [blob_chunks(*b) for b in blobs]))
    return out


def write_caffemodel(path, net_param, blobs_by_layer):
    """Write `caffemodel_chunks(net_param, blobs_by_layer)` to `path`, atomically."""
    atomic_write(path, caffemodel_chunks(net_param, blobs_by_layer).parts)
