"""The one image preprocessing of DeepPose, shared by the training data and by deployment.

Training: an LMDB record holds `net_image` of the file (uint8 BGR CHW, made by
`convert_imageset_multilabel -resize_*`, which resizes exactly like `net_image`), and the Data
layer applies its `transform_param`: ``(pixel - mean) * scale`` in float32. Deployment runs
`net_image` and then `to_blob` with the *same* `transform_param`, read from the training
prototxt by `InputTransform.from_train_prototxt`, so a deployed net sees exactly what the trained
one saw. (The seed subtracted a per-channel mean and scaled by 1/255 at deploy time but a
per-pixel mean and 1/256 in training.)

Stage s >= 2 crops are made by `crop` at the refiner's input size and stored as PNG (lossless),
so the LMDB tool's resize to the same size is the identity and deployment crops identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from caffe import proto, protoio

from .dataset import DatasetDescription, depth_to_grey

INTERPOLATION = cv2.INTER_LINEAR  # convert_imageset's cv::resize default


def load_image(path, desc: DatasetDescription) -> np.ndarray:
    """An image file as uint8 BGR (H, W, 3), read like `convert_imageset` (colour, no -gray).

    A 16-bit depth image (grey, millimetres) is read at its real depth: converted to the
    description's 8-bit encoding (`depth_range_mm`), not cut to its high byte as OpenCV's
    colour read would; a 16-bit colour image or other pixel types are refused, naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise OSError(f"cannot read image {path}")
    if image.dtype == np.uint16:
        if not (image[..., 0] == image[..., 1]).all() or not (image[..., 0] == image[..., 2]).all():
            raise ValueError(f"{path}: a 16-bit colour image; 16-bit images are read as depth in "
                             f"millimetres, which has one channel")
        return cv2.cvtColor(depth_to_grey(image[..., 0], *desc.depth_range_mm), cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: {image.dtype} pixels; {desc.name} images are {desc.image_bits}-bit "
                         "grey (or 16-bit millimetre depth)")
    return image


def net_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> the uint8 (3, rows, cols) record a net input is made of
    (size = (cols, rows)); resized like `convert_imageset -resize_width -resize_height`."""
    if image.shape[1::-1] != tuple(size):
        image = cv2.resize(image, tuple(size), interpolation=INTERPOLATION)
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def crop(image: np.ndarray, centre, side: float, out: int) -> np.ndarray:
    """The square of `side` pixels centred on `centre` (continuous x, y) resampled to out x out,
    uint8 BGR (out, out, 3); the part outside the image is zero (padding, never an error)."""
    if not side > 0:
        raise ValueError(f"crop side must be positive, got {side}")
    s = side / out
    x0, y0 = centre[0] - side / 2, centre[1] - side / 2
    # destination pixel u (centre u + 0.5) -> source pixel index x0 + (u + 0.5) * s - 0.5
    m = np.array([[s, 0, x0 + 0.5 * s - 0.5], [0, s, y0 + 0.5 * s - 0.5]])
    return cv2.warpAffine(image, m, (out, out), flags=INTERPOLATION | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class InputTransform:
    """A Data layer's `transform_param` (mean image, scale) applied to uint8 records."""

    mean: np.ndarray | None  # float32 (C, H, W)
    scale: float

    @classmethod
    def from_train_prototxt(cls, path) -> "InputTransform":
        """The TRAIN-phase Data layer's mean_file / mean_value / scale of a training prototxt.
        Relative mean_file paths are resolved like Caffe does: from the working directory."""
        net = protoio.read_prototxt(path, proto.caffe_pb2.NetParameter)
        for layer in net.layer:
            phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
            if layer.type == "Data" and (not phases or proto.caffe_pb2.TRAIN in phases):
                return cls.from_param(layer.transform_param, f"{path}: layer {layer.name!r}")
        raise ValueError(f"{path}: no TRAIN Data layer with a transform_param")

    @classmethod
    def from_param(cls, tp, where="transform_param") -> "InputTransform":
        if tp.crop_size or tp.mirror:
            raise ValueError(f"{where}: crop_size / mirror are not used by DeepPose")
        mean = None
        if tp.HasField("mean_file"):
            blob = protoio.read_binary_proto(tp.mean_file, proto.caffe_pb2.BlobProto)
            mean = protoio.blobproto_to_array(blob)
            mean = mean.reshape(mean.shape[-3:]).astype(np.float32)
        elif tp.mean_value:
            mean = np.asarray(tp.mean_value, np.float32)[:, None, None]
        return cls(mean, float(tp.scale))

    def to_blob(self, records: np.ndarray) -> np.ndarray:
        """uint8 records (N, C, H, W) -> float32 net input, computed as Caffe's DataTransformer."""
        out = np.asarray(records).astype(np.float32)
        if self.mean is not None:
            if self.mean.shape[1:] not in ((1, 1), out.shape[2:]):
                raise ValueError(f"mean image {self.mean.shape} does not fit the input {out.shape[1:]}")
            out -= self.mean
        if self.scale != 1:
            out *= np.float32(self.scale)
        return out

