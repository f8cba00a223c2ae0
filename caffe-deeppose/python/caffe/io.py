"""pycaffe's `caffe.io`: image loading and resizing, the input Transformer, Datum and BlobProto
conversions."""
import cv2
import numpy as np

from .proto import caffe_pb2
from . import protoio


def blobproto_to_array(blob, return_diff=False):
    """A BlobProto as a float64 array of its shape (legacy 4-d or `shape`), like pycaffe."""
    return protoio.blobproto_to_array(blob, return_diff, dtype=np.float64)


def array_to_blobproto(arr, diff=None):
    """A BlobProto of `arr` in the legacy num/channels/height/width form, like pycaffe (N-d: `shape`)."""
    arr = np.asarray(arr)
    return protoio.array_to_blobproto(arr, diff, legacy=arr.ndim == 4)


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(text):
    vec = caffe_pb2.BlobProtoVector.FromString(text)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a 3-d (C, H, W) array: uint8 goes to `data`, other types to `float_data`."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"array_to_datum needs a 3-d (C, H, W) array, got shape {arr.shape}")
    datum = caffe_pb2.Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float32).ravel())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum):
    """The (C, H, W) array of a Datum: uint8 from `data` (decoded if `encoded`), else `float_data`."""
    if datum.encoded:
        img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError("datum_to_array: encoded Datum does not decode as an image")
        return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    if len(datum.data):
        expected = datum.channels * datum.height * datum.width
        if len(datum.data) != expected:
            raise ValueError(f"datum_to_array: Datum holds {len(datum.data)} bytes, its shape "
                             f"{datum.channels}x{datum.height}x{datum.width} needs {expected}")
        return np.frombuffer(datum.data, np.uint8).reshape(datum.channels, datum.height, datum.width)
    return np.array(datum.float_data, np.float32).reshape(datum.channels, datum.height, datum.width)


def load_image(filename, color=True):
    """An image file as float32 H x W x C in [0, 1], RGB (C = 3) or grey (C = 1), like pycaffe."""
    img = cv2.imread(str(filename), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise IOError(f"load_image: cannot read image {filename}")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    img = img.astype(np.float32) / scale
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
        if not color:
            img = img.mean(axis=2)
    if img.ndim == 2:
        img = img[:, :, None]
        if color:
            img = np.tile(img, (1, 1, 3))
    return np.ascontiguousarray(img)


def resize_image(im, new_dims, interp_order=1):
    """Resize H x W x K `im` to `new_dims` (height, width); interp_order 0 nearest, 1 bilinear, 3 cubic."""
    interp = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}.get(interp_order)
    if interp is None:
        raise ValueError(f"resize_image: interp_order must be 0, 1 or 3, got {interp_order}")
    im = np.asarray(im, np.float32)
    h, w = int(new_dims[0]), int(new_dims[1])
    if im.shape[:2] == (h, w):
        return im.copy()
    channels = [cv2.resize(np.ascontiguousarray(im[:, :, c:c + 512]), (w, h), interpolation=interp)
                for c in range(0, im.shape[2], 512)]
    out = np.concatenate([c.reshape(h, w, -1) for c in channels], axis=2)
    return out


def oversample(images, crop_dims):
    """The 4 corner crops, the centre crop and their mirrors of each image (pycaffe's 10-crop)."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    center = im_shape[:2] / 2.0
    h_idx = (0, im_shape[0] - crop_dims[0])
    w_idx = (0, im_shape[1] - crop_dims[1])
    boxes = [(i, j, i + crop_dims[0], j + crop_dims[1]) for i in h_idx for j in w_idx]
    c = np.tile(center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    boxes.append(tuple(int(v) for v in c.ravel()))
    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]), np.float32)
    ix = 0
    for im in images:
        for y0, x0, y1, x1 in boxes:
            crops[ix] = im[int(y0):int(y1), int(x0):int(x1), :]
            ix += 1
        crops[ix - 5:ix + 5] = crops[ix - 5:ix]
        crops[ix:ix + 5] = crops[ix:ix + 5, :, ::-1, :]
        ix += 5
    return crops


class Transformer:
    """Turns images (H x W x K float arrays) into net input blobs and back, like pycaffe's:
    resize to the input size, transpose, channel swap, raw scale, mean subtraction, input scale."""

    def __init__(self, inputs):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose, self.channel_swap, self.raw_scale = {}, {}, {}
        self.mean, self.input_scale = {}, {}

    def _check(self, in_):
        if in_ not in self.inputs:
            raise KeyError(f"{in_!r} is not one of the net inputs: {list(self.inputs)}")

    def set_transpose(self, in_, order):
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("transpose order needs as many dimensions as the input blob minus the batch axis")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("channel swap needs as many entries as the input has channels")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """`mean`: one value per channel (C,) or a full (C, H, W) array."""
        self._check(in_)
        mean = np.asarray(mean, np.float32)
        shape = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != shape[0]:
                raise ValueError(f"mean has {mean.shape[0]} channels, the input {shape[0]}")
            mean = mean[:, None, None]
        elif mean.shape[0] != shape[0]:
            raise ValueError(f"mean shape {mean.shape} does not match the input {shape}")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        self._check(in_)
        self.input_scale[in_] = scale

    def preprocess(self, in_, data):
        """One H x W x K image -> one (K', H', W') input item."""
        self._check(in_)
        caffe_in = np.asarray(data, np.float32)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != tuple(in_dims):
            caffe_in = resize_image(caffe_in, in_dims)
        if in_ in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            caffe_in = caffe_in * self.raw_scale[in_]
        if in_ in self.mean:
            caffe_in = caffe_in - self.mean[in_]
        if in_ in self.input_scale:
            caffe_in = caffe_in * self.input_scale[in_]
        return np.ascontiguousarray(caffe_in, np.float32)

    def deprocess(self, in_, data):
        """Invert `preprocess` (except the resize) for one item of the blob."""
        self._check(in_)
        decaf_in = np.asarray(data, np.float32).copy().squeeze()
        if in_ in self.input_scale:
            decaf_in = decaf_in / self.input_scale[in_]
        if in_ in self.mean:
            decaf_in = decaf_in + self.mean[in_]
        if in_ in self.raw_scale:
            decaf_in = decaf_in / self.raw_scale[in_]
        if in_ in self.channel_swap:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in
