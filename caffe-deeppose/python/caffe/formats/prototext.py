"""Messages in text format as the real Caffe writes them, by one printer in two forms:

- `prototxt_text`: C++ protobuf's (Caffe's WriteProtoToTextFile, its logs' DebugString): fields
  in field-number order, strings' non-ASCII bytes escaped (`\\303\\251`). Every prototxt we write.
- `pycaffe_text`: the real pycaffe's `str()` of a message (its protobuf 4.21): fields in the
  order caffe.proto declares them (`stride` before `group`, `axis` before `slice_point`), UTF-8
  strings as they are. Installed as `str()` of every `caffe_pb2` message when `caffe` is imported,
  so `str(net_spec.to_proto())` is pycaffe's text.

Both write numbers in the short form of C++'s SimpleFtoa / SimpleDtoa: `%g` with 6 (15)
significant digits when that reads back to the same value, else 9 (17): `1`, `0.1`, `1e-05`,
`0.00392156886`; C++ also takes the long form for a float whose short form reads back as a
subnormal (strtof's ERANGE: 1.40129846e-45, where pycaffe writes 1.4013e-45).
tests/engine/test_prototext.py compares both to the real Caffe's.
"""
import io
import struct

from google.protobuf import text_format
from google.protobuf.message import Message

from ..proto import caffe_pb2


FLT_MIN = 1.1754943508222875e-38  # the smallest normal float32


def _float32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _number_text(value, digits, exact, normal=False):
    """A float as C++ protobuf writes it: the short `%g` form if it reads back to the same value,
    else the long one (so 1, not 1.0; 0.1, not 0.100000001). `normal`: as C++'s safe_strtof, a
    short form read back as a subnormal (strtof's ERANGE) does not count."""
    text = "%.*g" % (digits[0], value)
    parsed = exact(float(text))
    if parsed == exact(value) and not (normal and 0 < abs(parsed) < FLT_MIN):
        return text
    return "%.*g" % (digits[1], value)


class _CaffeTextPrinter(text_format._Printer):
    """protobuf's text printer with C++'s number format: C++'s text (`cpp`: fields by number,
    non-ASCII escaped) or pycaffe's (fields as declared, UTF-8 as is)."""

    def __init__(self, out, cpp):
        super().__init__(out, as_utf8=not cpp)
        self.cpp = cpp

    def PrintMessage(self, message):
        fields = sorted(message.ListFields(), key=lambda fv: fv[0].number if self.cpp else fv[0].index)
        for field, value in fields:
            repeated = not isinstance(value, (Message, int, float, str, bytes))  # a repeated container
            for element in (value if repeated else (value,)):
                self.PrintField(field, element)

    def PrintFieldValue(self, field, value):
        if field.cpp_type == field.CPPTYPE_FLOAT:
            self.out.write(_number_text(value, (6, 9), _float32, normal=self.cpp))
        elif field.cpp_type == field.CPPTYPE_DOUBLE:
            self.out.write(_number_text(value, (15, 17), float))
        else:
            super().PrintFieldValue(field, value)


def _text(message, cpp):
    out = io.StringIO()
    _CaffeTextPrinter(out, cpp).PrintMessage(message)
    return out.getvalue()


def prototxt_text(message):
    """`message` as Caffe (C++ protobuf's TextFormat::Print) writes it to a file or a log."""
    return _text(message, cpp=True)


def pycaffe_text(message):
    """`message` as the real pycaffe's `str(message)` prints it."""
    return _text(message, cpp=False)


for _name in caffe_pb2.DESCRIPTOR.message_types_by_name:  # caffe.proto nests no message types
    getattr(caffe_pb2, _name).__str__ = pycaffe_text
