"""Reading and writing Caffe's protobuf files: text prototxts, binary protos, blobs <-> arrays."""
import os
import re

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..atomic_file import atomic_write
from ..proto import caffe_pb2
from .prototext import prototxt_text


class ProtoFileError(ValueError):
    """A Caffe file that cannot be read; the message names the file (and line, for text)."""


def parse_prototxt(text, message, source="<string>"):
    """Parse prototxt `text` into the protobuf `message` (cleared first) as Caffe's text parser does:
    a singular field given twice is refused. Errors name `source:line:column`."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        m = re.match(r"^(\d+):(\d+) ?: ?(.*)$", str(e), re.S)
        where = f"{source}:{m.group(1)}:{m.group(2)}" if m else source
        raise ProtoFileError(f"{where}: {m.group(3) if m else e}") from None
    return message


def read_file(path, binary=False):
    """A file's whole content (str, or bytes if `binary`); a clear error naming it if unreadable."""
    try:
        with open(path, "rb" if binary else "r", **({} if binary else {"encoding": "utf-8"})) as f:
            return f.read()
    except OSError as e:
        raise ProtoFileError(f"{os.fspath(path)}: cannot read: {e.strerror}") from None


def read_prototxt(path, message_cls):
    """Read a text-format file into a new `message_cls` (e.g. caffe_pb2.NetParameter)."""
    path = os.fspath(path)
    return parse_prototxt(read_file(path), message_cls(), path)


def read_binary_proto(path, message_cls):
    """Read a binary protobuf file (.caffemodel, .binaryproto, .solverstate)."""
    path = os.fspath(path)
    return parse_binary_proto(read_file(path, binary=True), message_cls, path)


def parse_binary_proto(data, message_cls, path):
    """The bytes of binary protobuf file `path` as a new `message_cls`."""
    msg = message_cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise ProtoFileError(f"{path}: not a valid {message_cls.DESCRIPTOR.name} "
                             f"(truncated or corrupt, {len(data)} bytes): {e}") from None
    return msg


def write_binary_proto(path, message):
    atomic_write(path, message.SerializeToString())


def write_prototxt(path, message):
    atomic_write(path, prototxt_text(message))


def blob_shape(blob):
    """The shape of a BlobProto: the legacy num/channels/height/width if set (as Caffe reads it),
    else `shape`."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(int(d) for d in blob.shape.dim)


def _varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _packed_values(blob, field_number, dtype):
    """The values of a packed repeated field of `blob`, read from its wire bytes (fast for large
    blobs: protobuf's element-wise conversion takes seconds for a 37M-value fc6); None if a chunk
    is not packed."""
    buf = blob.SerializeToString()
    chunks, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            if key >> 3 == field_number:
                return None
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if key >> 3 == field_number:
                chunks.append(np.frombuffer(buf, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=pos))
            pos += size
        else:
            raise ProtoFileError(f"blob: unexpected wire type {wire}")
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def blobproto_to_array(blob, return_diff=False, dtype=np.float32):
    """A BlobProto's data (or diff) as a numpy array of its shape."""
    double = len(blob.double_diff if return_diff else blob.double_data) > 0
    field = {(False, False): 5, (True, False): 6, (False, True): 8, (True, True): 9}[(return_diff, double)]
    wire_dtype = "<f8" if double else "<f4"
    arr = _packed_values(blob, field, wire_dtype)
    if arr is None:
        arr = np.array(getattr(blob, {5: "data", 6: "diff", 8: "double_data", 9: "double_diff"}[field]))
    arr = arr.astype(dtype)
    shape = blob_shape(blob)
    if arr.size != int(np.prod(shape)):
        raise ProtoFileError(f"blob of shape {shape} holds {arr.size} values, expected {int(np.prod(shape))}")
    return arr.reshape(shape)


def array_to_blobproto(arr, diff=None, legacy=False):
    """A BlobProto holding `arr` (and `diff`); `legacy` writes the 4-d num/channels/height/width form."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    if legacy:
        if arr.ndim > 4:
            raise ValueError(f"legacy blobs have at most 4 axes, got shape {arr.shape}")
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - arr.ndim) + arr.shape
    else:
        blob.shape.dim.extend(arr.shape)
    for field, values in ((5, arr), (6, diff)):
        if values is not None:  # packed floats put on the wire directly: extend() is slow on big blobs
            raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
            blob.MergeFromString(_encode_varint(field << 3 | 2) + _encode_varint(len(raw)) + raw)
    return blob
