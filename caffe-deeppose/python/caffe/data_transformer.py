"""Caffe's DataTransformer: Datum / image arrays -> float32 blobs (crop, mirror, mean, scale).

Works on whole batches with numpy: out = (pixel - mean) * scale in float32, as Caffe computes it,
so the results equal Caffe's bit for bit (the random crops and mirrors come from our own RNG).
"""
import os

import numpy as np
import torch

from . import glog
from .formats import protoio
from .formats.db.backends import parse_datum, record_error
from .formats.image_list import to_chw
from .formats.upgrade import UpgradeError, net_needs_upgrade, upgrade_net
from .lazy_modules import cv2
from .net.filtering import included, net_state
from .proto import caffe_pb2

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def caffe_rng():
    """A numpy Generator seeded from torch's global generator (which caffe.set_random_seed seeds),
    as Caffe seeds each layer's RNG from its global one."""
    return np.random.default_rng(int(torch.randint(2 ** 31 - 1, ()).item()))


class TransformError(ValueError):
    """Data that does not fit the transformation; the message names what and where."""


def refuse_moved_fields(param, name, where):
    """The pre-transform_param fields of a data layer's own parameter (`data_param.scale`, ...):
    Caffe moves them into transform_param only when it upgrades a V1 net and ignores them in a
    current one, so they are refused here rather than silently dropped."""
    for field in ("scale", "mean_file", "crop_size", "mirror"):
        if param.HasField(field):
            raise TransformError(f"{where}: {name}.{field} is not supported: it is deprecated (Caffe reads it "
                                 f"only from V1 `layers`, moving it to transform_param); give "
                                 f"transform_param {{ {field}: ... }} instead")


class DataTransformer:
    """Caffe's DataTransformer for one layer (`param`: a TransformationParameter).

    Its own RNG (drawn from the global one only when needed: mirror, or crop_size at TRAIN) picks
    the TRAIN crops and the mirrors."""

    def __init__(self, param, phase, where="transform_param"):
        self.where = where
        self.phase = phase
        self.scale = np.float32(param.scale)
        self.mirror = param.mirror
        self.crop_size = int(param.crop_size)
        if param.force_color and param.force_gray:
            raise TransformError(f"{where}: cannot set both force_color and force_gray")
        self.force_color, self.force_gray = param.force_color, param.force_gray
        self.mean = None
        if param.HasField("mean_file"):
            if param.mean_value:
                raise TransformError(f"{where}: cannot specify mean_file and mean_value at the same time")
            glog.info("data_transformer.cpp:25", f"Loading mean file from: {param.mean_file}")
            blob = protoio.read_binary_proto(param.mean_file, caffe_pb2.BlobProto)
            mean = protoio.blobproto_to_array(blob)
            self.mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean
            self.mean_file = param.mean_file
        self.mean_values = np.asarray(param.mean_value, np.float32) if param.mean_value else None
        self.rng = caffe_rng() if self.mirror or (phase == TRAIN and self.crop_size) else None

    def random_state(self):
        """The state of the RNG of crops and mirrors (JSON-able; None without one)."""
        return self.rng.bit_generator.state if self.rng is not None else None

    def set_random_state(self, state):
        if self.rng is not None and state is not None:
            self.rng.bit_generator.state = state

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, datum):
        """A Datum's pixels as a (C, H, W) array: uint8 from `data` (cv2.imdecode if encoded,
        honouring force_color / force_gray), else float32 from `float_data`. Raises ValueError
        when the record does not hold what its shape says."""
        if datum.encoded:
            flag = (cv2.IMREAD_COLOR if self.force_color else cv2.IMREAD_GRAYSCALE
                    if self.force_gray else cv2.IMREAD_UNCHANGED)
            img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
            if img is None:
                raise ValueError("the encoded image does not decode")
            if img.dtype != np.uint8:
                raise ValueError(f"the encoded image is {img.dtype}; Caffe needs 8-bit images")
            return to_chw(img)
        if self.force_color or self.force_gray:
            glog.error("data_transformer.cpp:151", "force_color and force_gray only for encoded datum")
        c, h, w = datum.channels, datum.height, datum.width
        if c <= 0:
            raise ValueError(f"the Datum has {c} channels")
        size = c * h * w
        if datum.data:
            if len(datum.data) != size:
                raise ValueError(f"the Datum holds {len(datum.data)} bytes, its shape {c}x{h}x{w} needs {size}")
            return np.frombuffer(datum.data, np.uint8).reshape(c, h, w)
        if len(datum.float_data) != size:
            raise ValueError(f"the Datum holds {len(datum.float_data)} float values, its shape "
                             f"{c}x{h}x{w} needs {size}")
        return np.asarray(datum.float_data, np.float32).reshape(c, h, w)

    # -- shapes -------------------------------------------------------------------------------
    def infer_shape(self, image_shape):
        """The (C, H', W') of one transformed item of shape (C, H, W) (Caffe's InferBlobShape)."""
        c, h, w = image_shape
        if self.crop_size and (h < self.crop_size or w < self.crop_size):
            raise TransformError(f"{self.where}: crop_size {self.crop_size} is larger than the data "
                                 f"({h}x{w})")
        if self.crop_size:
            return c, self.crop_size, self.crop_size
        return c, h, w

    def _check(self, shape):
        c, h, w = shape
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise TransformError(f"{self.where}: mean_file {self.mean_file} has shape "
                                 f"{'x'.join(map(str, self.mean.shape))}, the data {c}x{h}x{w}")
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise TransformError(f"{self.where}: specify either 1 mean_value or as many as channels: {c} "
                                 f"(got {len(self.mean_values)})")
        self.infer_shape(shape)

    # -- transforming -----------------------------------------------------------------------------
    def __call__(self, images):
        """Transform a batch (N, C, H, W) of uint8 or float images (or one (C, H, W) item)
        into float32 (N, C, H', W')."""
        images = np.asarray(images)
        if images.ndim == 3:
            return self(images[None])[0]
        n, c, h, w = images.shape
        self._check((c, h, w))
        _, th, tw = self.infer_shape((c, h, w))
        if self.crop_size and self.phase == TRAIN:
            h_off = self.rng.integers(0, h - th + 1, size=n)
            w_off = self.rng.integers(0, w - tw + 1, size=n)
        else:
            h_off = np.full(n, (h - th) // 2)
            w_off = np.full(n, (w - tw) // 2)
        if (h_off == h_off[0]).all() and (w_off == w_off[0]).all():
            out = self._pixels(images, h_off[0], w_off[0], th, tw)
        else:
            out = np.empty((n, c, th, tw), np.float32)
            for i in range(n):
                out[i] = self._pixels(images[i:i + 1], h_off[i], w_off[i], th, tw)[0]
        if self.mirror:
            flip = self.rng.integers(0, 2, size=n).astype(bool)
            out[flip] = out[flip][..., ::-1]
        return out

    def _pixels(self, images, y, x, th, tw):
        """(pixel - mean) * scale on the crop at (y, x), in float32."""
        pixels = images[:, :, y:y + th, x:x + tw]
        if self.mean is not None:
            out = np.subtract(pixels, self.mean[:, y:y + th, x:x + tw], dtype=np.float32)
        elif self.mean_values is not None:
            out = np.subtract(pixels, self.mean_values[:, None, None], dtype=np.float32)
        else:
            out = pixels.astype(np.float32)
        if self.scale != 1:
            out *= self.scale
        return out


TRANSFORMING_LAYERS = ("Data", "ImageData", "WindowData", "MemoryData")  # the layers with a transform_param


def transformer_from_prototxt(path, phase=TEST):
    """The DataTransformer of the data layer that the net prototxt at `path` includes in `phase`
    (a Data / ImageData / WindowData / MemoryData layer), built as that layer builds it, so that
    deployment preprocesses exactly as training did. Several such layers must agree on their
    transform_param; errors name the file."""
    path = os.fspath(path)
    param = protoio.read_prototxt(path, caffe_pb2.NetParameter)
    if net_needs_upgrade(param):
        try:
            upgrade_net(param, path)
        except UpgradeError as e:
            raise TransformError(f"{path}: {e}") from None
    state = net_state(param, phase, 0, ())
    layers = [lp for lp in param.layer if lp.type in TRANSFORMING_LAYERS and included(lp, state)]
    name = caffe_pb2.Phase.Name(phase)
    if not layers:
        raise TransformError(f"{path}: no {' / '.join(TRANSFORMING_LAYERS)} layer in phase {name}")
    params = {lp.transform_param.SerializeToString(deterministic=True) for lp in layers}
    if len(params) > 1:
        raise TransformError(f"{path}: the {name} data layers {', '.join(repr(lp.name) for lp in layers)} "
                             "have different transform_params: which one deployment uses is ambiguous")
    lp = layers[0]
    return DataTransformer(lp.transform_param, lp.phase if lp.HasField("phase") else phase,
                           f"{path}: layer {lp.name!r} transform_param")


def decode_record(transformer, db_name, key, value):
    """(Datum, pixels) of one database record; errors name the database and the key."""
    datum = parse_datum(value, db_name, key)
    try:
        return datum, transformer.decode(datum)
    except ValueError as e:
        raise record_error(db_name, key, str(e)) from None
