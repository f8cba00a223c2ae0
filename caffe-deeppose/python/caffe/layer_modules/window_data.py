"""WindowData: batches of windows cropped from images and warped to crop_size (R-CNN's layer),
with Caffe's window file, sampling, context padding, square crops, mirroring and means.

The window file repeats::

    # image_index
    image_path
    channels height width
    num_windows
    class_index overlap x1 y1 x2 y2      (num_windows lines, inclusive pixel coordinates)

Windows with overlap >= fg_threshold are foreground (class_index > 0), those with overlap <
bg_threshold background (label 0), the others unused. Each batch holds batch_size - int(batch_size
* fg_fraction) background windows, then the foreground ones, each drawn uniformly (our RNG, seeded
from caffe.set_random_seed; the draws cannot equal Caffe's). As in Caffe, the crop, mirror and
mean come from transform_param and the scale from window_data_param.
"""
import math

import numpy as np

from .. import glog
from ..data_transformer import caffe_rng
from ..formats import protoio
from ..lazy_modules import cv2
from ..proto import caffe_pb2
from ..registry import register_layer
from .data import _PrefetchingLayer


class Window:
    __slots__ = ("image", "label", "overlap", "x1", "y1", "x2", "y2")

    def __init__(self, image, label, overlap, x1, y1, x2, y2):
        self.image, self.label, self.overlap = image, label, overlap
        self.x1, self.y1, self.x2, self.y2 = x1, y1, x2, y2


class WindowFileError(ValueError):
    """A window file that cannot be read; the message names the file and line."""


def read_window_file(source, root_folder, fg_threshold, bg_threshold):
    """([(image path, (channels, height, width))], foreground windows, background windows)."""
    try:
        with open(source) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise WindowFileError(f"Failed to open window file {source}: {e.strerror}") from None
    tokens = [(tok, n) for n, line in enumerate(lines, 1) for tok in line.split()]
    if not tokens:
        raise WindowFileError(f"{source}: Window file is empty")
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos == len(tokens):
            raise WindowFileError(f"{source}: ends where {what} is expected")
        tok, line = tokens[pos]
        pos += 1
        try:
            return kind(tok), line
        except ValueError:
            raise WindowFileError(f"{source}:{line}: {what} must be {'an integer' if kind is int else 'a number'}, "
                                  f"got {tok!r}") from None

    images, fg, bg = [], [], []
    fg_threshold, bg_threshold = np.float32(fg_threshold), np.float32(bg_threshold)
    while pos < len(tokens):
        mark, line = take(str, "'#'")
        if mark != "#":
            raise WindowFileError(f"{source}:{line}: expected '#' starting an image record, got {mark!r}")
        index, line = take(int, "the image index")
        if index != len(images):
            raise WindowFileError(f"{source}:{line}: image index {index}, expected {len(images)} (Caffe finds an "
                                  "image by its index, so they must count 0, 1, 2, ...)")
        path, _ = take(str, "the image path")
        size = tuple(take(int, what)[0] for what in ("channels", "height", "width"))
        images.append((root_folder + path, size))
        count, line = take(int, "the number of windows")
        for _ in range(count):
            label, line = take(int, "a window's class index")
            overlap = np.float32(take(float, "a window's overlap")[0])
            box = [take(int, f"a window's {c}")[0] for c in ("x1", "y1", "x2", "y2")]
            if overlap >= fg_threshold:
                if label <= 0:
                    raise WindowFileError(f"{source}:{line}: a foreground window (overlap {overlap} >= fg_threshold) "
                                          f"needs a class index > 0, got {label}")
                fg.append(Window(index, label, overlap, *box))
            elif overlap < bg_threshold:
                bg.append(Window(index, 0, np.float32(0), *box))
        if index % 100 == 0:
            glog.info("window_data_layer.cpp:153", f"num: {index} {root_folder + path} {size[0]} {size[1]} {size[2]} "
                      f"windows to process: {count}")
    return images, fg, bg


def _c_round(x):
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(float(x)) + 0.5), x))


def window_crop(window, image_height, image_width, crop_size, context_pad, square, mirror):
    """Caffe's crop of one window: (x1, y1, x2, y2) of the image region (inclusive, clipped), the
    (width, height) it is warped to and the (pad_w, pad_h) offset of the warped region in the
    crop_size x crop_size output (float32 arithmetic and C rounding, as Caffe computes them)."""
    f32 = np.float32
    x1, y1, x2, y2 = window.x1, window.y1, window.x2, window.y2
    out_w = out_h = crop_size
    pad_w = pad_h = 0
    if context_pad > 0 or square:
        context_scale = f32(crop_size) / f32(crop_size - 2 * context_pad)
        half_height = f32(y2 - y1 + 1) / f32(2.0)
        half_width = f32(x2 - x1 + 1) / f32(2.0)
        center_x, center_y = f32(x1) + half_width, f32(y1) + half_height
        if square:
            half_width = half_height = max(half_height, half_width)
        x1 = _c_round(center_x - half_width * context_scale)
        x2 = _c_round(center_x + half_width * context_scale)
        y1 = _c_round(center_y - half_height * context_scale)
        y2 = _c_round(center_y + half_height * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - image_width + 1), max(0, y2 - image_height + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x, scale_y = f32(crop_size) / f32(unclipped_w), f32(crop_size) / f32(unclipped_h)
        out_w = _c_round(f32(x2 - x1 + 1) * scale_x)
        out_h = _c_round(f32(y2 - y1 + 1) * scale_y)
        pad_x1, pad_x2 = _c_round(f32(pad_x1) * scale_x), _c_round(f32(pad_x2) * scale_x)
        pad_h = _c_round(f32(pad_y1) * scale_y)
        pad_w = pad_x2 if mirror else pad_x1
        out_h = min(out_h, crop_size - pad_h)
        out_w = min(out_w, crop_size - pad_w)
    return (x1, y1, x2, y2), (out_w, out_h), (pad_w, pad_h)


class _WindowBatches:
    """Samples and warps the windows of one batch (runs on the prefetch thread). `spec` holds the
    layer's settings (not the layer: the thread must not keep it alive)."""

    def __init__(self, spec, images, fg, bg, rng):
        self.spec, self.images, self.fg, self.bg, self.rng = spec, images, fg, bg, rng
        self.cache = {}

    def position(self):
        """The sampling RNG's state: what the next batches depend on (caffe.solvers.resume_state)."""
        return {"rng": self.rng.bit_generator.state}

    def seek(self, position):
        self.rng.bit_generator.state = position["rng"]

    def read(self, index):
        path = self.images[index][0]
        if self.spec.cache_images:
            if index not in self.cache:
                with open(path, "rb") as f:
                    self.cache[index] = np.frombuffer(f.read(), np.uint8)
            img = cv2.imdecode(self.cache[index], cv2.IMREAD_COLOR)
        else:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise WindowFileError(f"{self.spec.where}: Could not open or find file {path}")
        return img

    def item(self, out, window, mirror):
        """Warp one window into `out` (C, crop, crop, zero-filled); returns its label."""
        lay = self.spec
        img = self.read(window.image)
        (x1, y1, x2, y2), size, (pad_w, pad_h) = window_crop(
            window, img.shape[0], img.shape[1], lay.crop_size, lay.context_pad, lay.square, mirror)
        if not (0 <= x1 <= x2 < img.shape[1] and 0 <= y1 <= y2 < img.shape[0]):
            raise WindowFileError(f"{lay.where}: window ({window.x1}, {window.y1}, {window.x2}, "
                                  f"{window.y2}) of {self.images[window.image][0]} lies outside its "
                                  f"{img.shape[1]}x{img.shape[0]} image")
        warped = cv2.resize(img[y1:y2 + 1, x1:x2 + 1], size, interpolation=cv2.INTER_LINEAR)
        if mirror:
            warped = warped[:, ::-1]
        pixels = warped.transpose(2, 0, 1).astype(np.float32)
        rows, cols = pixels.shape[1:]
        if lay.mean is not None:
            off = (lay.mean.shape[2] - lay.crop_size) // 2
            pixels = pixels - lay.mean[:, off + pad_h:off + pad_h + rows, off + pad_w:off + pad_w + cols]
        elif lay.mean_values is not None:
            pixels = pixels - lay.mean_values[:, None, None]
        out[:, pad_h:pad_h + rows, pad_w:pad_w + cols] = pixels * lay.scale
        return window.label

    def __call__(self):
        lay = self.spec
        data = np.zeros(lay.shapes[0], np.float32)
        labels = np.empty(lay.batch_size, np.float32)
        num_fg = int(np.float32(lay.batch_size) * lay.fg_fraction)
        item = 0
        for windows, count in ((self.bg, lay.batch_size - num_fg), (self.fg, num_fg)):
            for _ in range(count):
                window = windows[int(self.rng.integers(2 ** 32)) % len(windows)]
                mirror = bool(lay.mirror and int(self.rng.integers(2 ** 32)) % 2)
                labels[item] = self.item(data[item], window, mirror)
                item += 1
        return data, labels


class _Spec:
    """The settings a WindowData batch is made with."""


@register_layer("WindowData")
class WindowData(_PrefetchingLayer):
    """Caffe's WindowData (see the module's docstring); tops data (N, 3, crop, crop), label (N,)."""

    num_tops = 2

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p, t = param.window_data_param, param.transform_param
        for field in ("crop_size", "mirror", "mean_file"):
            if p.HasField(field):
                raise ValueError(f"window_data_param.{field} is not supported: Caffe's WindowData ignores it "
                                 f"and reads transform_param.{field}; set transform_param {{ {field} }} instead")
        for field in ("scale", "force_color", "force_gray"):
            if t.HasField(field):
                raise ValueError(f"transform_param.{field} is not supported by WindowData (Caffe's ignores it)"
                                 + (" (its scale is window_data_param.scale)" if field == "scale" else ""))
        if p.crop_mode not in ("warp", "square"):
            raise ValueError(f"window_data_param.crop_mode {p.crop_mode!r}: use \"warp\" or \"square\"")
        if p.batch_size <= 0:
            raise ValueError("window_data_param.batch_size must be positive")
        if t.crop_size <= 0:
            raise ValueError("transform_param.crop_size must be positive (the size windows are warped to)")
        if 2 * p.context_pad >= t.crop_size:
            raise ValueError(f"window_data_param.context_pad {p.context_pad} leaves no room in crop_size {t.crop_size}")
        glog.info("window_data_layer.cpp:52", f"Window data layer:\n  foreground (object) overlap threshold: "
                  f"{p.fg_threshold:g}\n  background (non-object) overlap threshold: {p.bg_threshold:g}\n  "
                  f"foreground sampling fraction: {p.fg_fraction:g}\n  cache_images: {int(p.cache_images)}\n  "
                  f"root_folder: {p.root_folder}")
        spec = self.spec = _Spec()
        spec.where = f"layer {param.name!r} (WindowData)"
        spec.batch_size, spec.crop_size = int(p.batch_size), int(t.crop_size)
        spec.context_pad, spec.square, spec.mirror = int(p.context_pad), p.crop_mode == "square", t.mirror
        spec.scale, spec.fg_fraction = np.float32(p.scale), np.float32(p.fg_fraction)
        spec.cache_images = p.cache_images
        images, fg, bg = read_window_file(p.source, p.root_folder, p.fg_threshold, p.bg_threshold)
        if not fg or not bg:
            raise WindowFileError(f"{p.source}: {len(fg)} foreground and {len(bg)} background windows; Caffe "
                                  "samples from both, so each needs at least one")
        glog.info("window_data_layer.cpp:164", f"Number of images: {len(images)}")
        for label in sorted({0} | {w.label for w in fg}):
            count = len(bg) if label == 0 else sum(w.label == label for w in fg)
            glog.info("window_data_layer.cpp:168", f"class {label} has {count} samples")
        channels = images[-1][1][0]
        if channels != 3:
            raise WindowFileError(f"{p.source}: the last image has {channels} channels; WindowData reads every "
                                  "image in colour (3 channels) and takes the blob's channels from it")
        spec.mean = spec.mean_values = None
        if t.HasField("mean_file"):
            if t.mean_value:
                raise ValueError("Cannot specify mean_file and mean_value at the same time")
            mean = protoio.blobproto_to_array(protoio.read_binary_proto(t.mean_file, caffe_pb2.BlobProto))
            spec.mean = mean.reshape(mean.shape[-3:])
            if spec.mean.shape[0] != channels or min(spec.mean.shape[1:]) < spec.crop_size:
                raise ValueError(f"transform_param.mean_file {t.mean_file}: shape {spec.mean.shape} does not fit "
                                 f"{channels} channels of crop_size {spec.crop_size}")
        elif t.mean_value:
            if len(t.mean_value) not in (1, channels):
                raise ValueError(f"Specify either 1 mean_value or as many as channels: {channels}")
            spec.mean_values = np.broadcast_to(np.asarray(t.mean_value, np.float32), (channels,)).copy()
        self.shapes = spec.shapes = [(spec.batch_size, channels, spec.crop_size, spec.crop_size), (spec.batch_size,)]
        glog.info("window_data_layer.cpp:185", f"output data size: {','.join(map(str, self.shapes[0]))}")
        self._start(_WindowBatches(spec, images, fg, bg, caffe_rng()), 4)
