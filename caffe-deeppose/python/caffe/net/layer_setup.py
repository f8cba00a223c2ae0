"""Each layer of a net made as Caffe's Net::Init makes it (CreateLayer, then SetUp): its class
from the registry, its bottom and top counts checked, set up on its bottoms' shapes (weights given
in the prototxt replacing the fillers'), with errors naming the file, line and layer; and
pycaffe's view of it."""
import re

from ..blob import ParamBlob
from ..layer_modules.python import PythonLayer, PythonLayerError
from ..formats.protoio import blob_shape, blobproto_to_array
from .errors import NetError
from .weights import copy_blob


def layer_lines(text):
    """Line numbers (1-based) of the top-level `layer {` (or legacy `layers {`) blocks of a prototxt text."""
    lines, depth = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|#.*', "", line)
        if depth == 0 and re.match(r"\s*layers?\s*\{?", code):
            lines.append(number)
        depth += code.count("{") - code.count("}")
    return lines


def check_counts(cls, lp, place):
    """The layer names as many bottoms and tops as its type takes."""
    for what, names, exact, minimum in (("bottom", lp.bottom, cls.num_bottoms, cls.min_bottoms),
                                        ("top", lp.top, cls.num_tops, cls.min_tops)):
        if exact is not None and len(names) != exact:
            raise NetError(f"{place}: takes {exact} {what}(s), the prototxt gives {len(names)}")
        if exact is None and len(names) < minimum:
            raise NetError(f"{place}: takes at least {minimum} {what}(s), the prototxt gives {len(names)}")


def set_up(cls, lp, phase, bottom_shapes, device, where, place):
    """(the layer module on `device`, its top shapes); a layer's own `phase` wins over the net's."""
    try:
        module = cls(lp, lp.phase if lp.HasField("phase") else phase)
        module.setup(bottom_shapes)
        if lp.blobs:
            _use_embedded_blobs(module, lp, place)
        top_shapes = module.top_shapes(bottom_shapes)
    except PythonLayerError as e:
        raise PythonLayerError(f"{where}: {e}") from e.__cause__
    except (ValueError, RuntimeError, IndexError) as e:
        shapes = ", ".join(f"{b} {tuple(s)}" for b, s in zip(lp.bottom, bottom_shapes))
        raise NetError(f"{place}: {e}" + (f" (bottoms: {shapes})" if shapes else "")) from None
    if len(top_shapes) != len(lp.top):
        raise NetError(f"{place}: the layer makes {len(top_shapes)} tops, the prototxt names {len(lp.top)}")
    module.to(device)
    return module, top_shapes


def _use_embedded_blobs(module, lp, place):
    """Weights given in the prototxt (`blobs`) replace the fillers' values, shapes checked."""
    if len(lp.blobs) != len(module.blobs):
        raise NetError(f"{place}: the prototxt gives {len(lp.blobs)} blobs, the layer has {len(module.blobs)}")
    for i, proto in enumerate(lp.blobs):
        legacy = any(proto.HasField(f) for f in ("num", "channels", "height", "width"))
        copy_blob(module.blobs[i], blob_shape(proto), legacy, blobproto_to_array(proto), f"{place}: blobs[{i}]")


class _LayerView:
    """pycaffe's view of a layer: its type and its parameter blobs."""

    def __init__(self, module, blobs):
        self.type = module.type_name
        self.blobs = blobs
        self.module = module

    def __repr__(self):
        return f"<Layer {self.module.name!r} type={self.type}>"


def layer_view(module):
    """What pycaffe's `net.layers` shows of a layer module: a Python layer's own object, else its type and blobs."""
    if isinstance(module, PythonLayer):
        return module.user
    return _LayerView(module, [ParamBlob(module, i) for i in range(len(module.blobs))])
