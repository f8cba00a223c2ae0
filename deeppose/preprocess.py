"""The one image preprocessing of DeepPose, shared by the training data and by deployment.

Training: an LMDB record holds `net_image` of the file (uint8 BGR CHW, made by
`convert_imageset_multilabel -resize_*`, which resizes exactly like `net_image`), and the Data
layer applies its `transform_param`: ``(pixel - mean) * scale`` in float32. Deployment runs
`net_image` and then the engine's own DataTransformer of that Data layer (`input_transformer`,
built from the training prototxt), so a deployed net sees exactly what the trained one saw. (The
seed subtracted a per-channel mean and scaled by 1/255 at deploy time but a per-pixel mean and
1/256 in training.)

Images of any size are first brought to the dataset description's frame (its `size`) by
`letterbox`, for the training data (stages, pipeline) and at deployment (cascade) alike: scaled
with the aspect ratio kept and centred, zeros where the image does not fill it; its `Frame` maps
joints between the image's own pixels and the frame. An image of the description's size is its own
frame (identity: the image itself, scale 1, offset 0).

Stage s >= 2 crops are made by `crop` at the refiner's input size and stored as PNG (lossless),
so the LMDB tool's resize to the same size is the identity and deployment crops identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from caffe import TEST

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


@dataclass(frozen=True)
class Frame:
    """Where an image lies in the description's frame: frame point = scale x image point + offset
    (continuous pixel coordinates, x, y)."""

    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def fit(cls, size, frame_size) -> "Frame":
        """The letterbox of an image of size (cols, rows) in frame_size: one scale factor
        min(W / w, H / h), centred; the identity for an image of the frame's size."""
        (w, h), (fw, fh) = size, frame_size
        if (w, h) == (fw, fh):
            return cls()
        scale = min(fw / w, fh / h)
        return cls(scale, ((fw - scale * w) / 2, (fh - scale * h) / 2))

    @property
    def identity(self) -> bool:
        return self == Frame()

    def to_frame(self, points) -> np.ndarray:
        """Points (..., 2) in the image's pixels -> in the frame."""
        points = np.asarray(points, float)
        return points if self.identity else points * self.scale + self.offset

    def from_frame(self, points) -> np.ndarray:
        """Points (..., 2) in the frame -> in the image's pixels."""
        points = np.asarray(points, float)
        return points if self.identity else (points - self.offset) / self.scale


def _warp(image: np.ndarray, x0: float, y0: float, step: float, size) -> np.ndarray:
    """The image resampled onto a grid of size (cols, rows) whose pixel u covers the source's
    [x0 + u * step, x0 + (u + 1) * step) (and alike in y); zero outside the source."""
    # destination pixel u (centre u + 0.5) -> source pixel index x0 + (u + 0.5) * step - 0.5
    m = np.array([[step, 0, x0 + 0.5 * step - 0.5], [0, step, y0 + 0.5 * step - 0.5]])
    return cv2.warpAffine(image, m, tuple(size), flags=INTERPOLATION | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def letterbox(image: np.ndarray, size) -> tuple[np.ndarray, Frame]:
    """An image (H, W[, C]) brought to the frame of size (cols, rows) (`Frame.fit`; zero padding)
    and its frame; an image of that size is returned as it is."""
    frame = Frame.fit(image.shape[1::-1], size)
    if frame.identity:
        return image, frame
    return _warp(image, -frame.offset[0] / frame.scale, -frame.offset[1] / frame.scale, 1 / frame.scale, size), frame


def crop(image: np.ndarray, centre, side: float, crop_px: int) -> np.ndarray:
    """The square of `side` pixels centred on `centre` (continuous x, y) resampled to crop_px x
    crop_px, uint8 BGR (crop_px, crop_px, 3); the part outside the image is zero (padding, never
    an error)."""
    if not side > 0:
        raise ValueError(f"crop side must be positive, got {side}")
    return _warp(image, centre[0] - side / 2, centre[1] - side / 2, side / crop_px, (crop_px, crop_px))


def input_transformer(train_prototxt):
    """The engine's DataTransformer of a training prototxt's TEST-phase data layer: deployment
    normalises its records exactly as that layer does (mean_file or mean_value, scale). crop_size,
    mirror and force_gray are refused: DeepPose's records are colour images made at the net's input
    size, never mirrored at random."""
    from caffe.data_transformer import transformer_from_prototxt  # torch: only for the commands that run a net

    transformer = transformer_from_prototxt(train_prototxt, TEST)
    if transformer.crop_size or transformer.mirror or transformer.force_gray:
        raise ValueError(f"{transformer.where}: crop_size / mirror / force_gray are not used by DeepPose (its "
                         "records are colour images made at the net's input size; mirrors are written as images)")
    return transformer
