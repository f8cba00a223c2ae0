"""pycaffe's `caffe.io`: image loading and resizing, the input Transformer, Datum and BlobProto
conversions, with pycaffe's results: the same arrays (values and dtypes) and the same message
bytes. Images load and resize as pycaffe's scikit-image calls do (RGB in [0, 1]; scipy.ndimage
zoom with anti-aliasing), written here on OpenCV and scipy."""
import numpy as np
from scipy import ndimage

from .atomic_file import atomic_write
from .formats import protoio
from .lazy_modules import cv2
from .proto import caffe_pb2

_GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray


def blobproto_to_array(blob, return_diff=False):
    """A BlobProto as a float64 array of its shape (legacy 4-d or `shape`), like pycaffe."""
    return protoio.blobproto_to_array(blob, return_diff, dtype=np.float64)


def array_to_blobproto(arr, diff=None):
    """A BlobProto of `arr` (and `diff`) with its N-d `shape` and float32 values, like pycaffe."""
    return protoio.array_to_blobproto(arr, diff)


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(text):
    vec = caffe_pb2.BlobProtoVector.FromString(text)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a 3-d (C, H, W) array, like pycaffe: uint8 goes to `data` as bytes, any other
    type to `float_data`; `label` (an integer) is set when given."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"array_to_datum needs a 3-d (C, H, W) array, got shape {arr.shape}")
    datum = caffe_pb2.Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).astype(np.float32).ravel())  # pycaffe's rounding
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum):
    """The (C, H, W) array of a Datum, like pycaffe: uint8 from `data`, else float64 from
    `float_data` (and, beyond pycaffe, an `encoded` Datum decoded to uint8)."""
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
        return np.frombuffer(datum.data, np.uint8).reshape(datum.channels, datum.height, datum.width).copy()
    return np.array(datum.float_data, np.float64).reshape(datum.channels, datum.height, datum.width)


def _as_float(img):
    """scikit-image's img_as_float: unsigned integers scaled to [0, 1] (float64), floats kept."""
    if img.dtype.kind == "u":
        return np.multiply(img, 1.0 / np.iinfo(img.dtype).max, dtype=np.float64)
    return img


def load_image(filename, color=True):
    """An image file as float32 H x W x C in [0, 1], like pycaffe: RGB (C = 3, grey files
    repeated, alpha dropped, 16-bit colour cut to 8 bits) or with `color=False` grey (C = 1;
    colour files converted with rgb2gray's weights, transparent pixels blended over white)."""
    img = cv2.imread(str(filename), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise IOError(f"load_image: cannot read image {filename}")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        if img.dtype == np.uint16:  # pycaffe reads colour through Pillow, which keeps the high byte
            img = (img >> 8).astype(np.uint8)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        if not color:
            img = _as_float(img)
            if img.shape[2] == 4:
                alpha = img[..., 3:]
                img = np.clip((1 - alpha) + alpha * img[..., :3], 0, 1)
            img = img @ _GREY_WEIGHTS.astype(img.dtype)
    img = _as_float(img).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def _zoom_like_skimage(image, new_dims, order):
    """scikit-image's `resize(image, new_dims, order, mode='constant')` of an H x W x K float
    image: a Gaussian anti-aliasing filter when shrinking, then a grid-aligned spline zoom,
    clipped to the input's range."""
    output_shape = tuple(int(d) for d in new_dims) + (image.shape[-1],)
    if image.dtype == np.float16:
        image = image.astype(np.float32)
    factors = np.divide(image.shape, output_shape)
    if any(o < i for o, i in zip(output_shape, image.shape)):
        image_filtered = ndimage.gaussian_filter(image, np.maximum(0, (factors - 1) / 2), cval=0,
                                                 mode="grid-constant")
    else:
        image_filtered = image
    out = ndimage.zoom(image_filtered, [1 / f for f in factors], order=order, mode="grid-constant",
                       cval=0, grid_mode=True)
    np.clip(out, np.min(image), np.max(image), out=out)
    return out


def resize_image(im, new_dims, interp_order=1):
    """Resize H x W x K `im` to `new_dims` (height, width) with spline order `interp_order` (0
    nearest, 1 linear, 3 cubic), as pycaffe does: 1- and 3-channel images through scikit-image's
    resize on the image scaled to [0, 1], others through scipy's zoom; float32 out."""
    if im.shape[-1] == 1 or im.shape[-1] == 3:
        im_min, im_max = im.min(), im.max()
        if im_max > im_min:
            im_std = (im - im_min) / (im_max - im_min)
            resized_im = _zoom_like_skimage(im_std, new_dims, interp_order) * (im_max - im_min) + im_min
        else:  # a constant image
            return np.full((int(new_dims[0]), int(new_dims[1]), im.shape[-1]), im_min, np.float32)
    else:
        scale = tuple(np.array(new_dims, dtype=float) / np.array(im.shape[:2]))
        resized_im = ndimage.zoom(im, scale + (1,), order=interp_order)
    return resized_im.astype(np.float32)


def oversample(images, crop_dims):
    """The 10 crops of each H x W x K image, like pycaffe: the four corners and the centre, then
    the same five mirrored left-right; (10 * N, crop_h, crop_w, K) float32."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    im_center = im_shape[:2] / 2.0
    boxes = np.empty((5, 4), dtype=int)
    corners = [(i, j) for i in (0, im_shape[0] - crop_dims[0]) for j in (0, im_shape[1] - crop_dims[1])]
    for k, (i, j) in enumerate(corners):
        boxes[k] = (i, j, i + crop_dims[0], j + crop_dims[1])
    boxes[4] = np.tile(im_center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]), dtype=np.float32)
    ix = 0
    for im in images:
        for y0, x0, y1, x1 in np.tile(boxes, (2, 1)):
            crops[ix] = im[y0:y1, x0:x1, :]
            ix += 1
        crops[ix - 5:ix] = crops[ix - 5:ix, :, ::-1, :]  # the mirrors
    return crops


def _scalar32(value):
    """A scalar as float32, so that float32 arrays scale in float32 as under the numpy 1.x that
    pycaffe ran on (numpy 2 would compute with a float64 scalar in float64); arrays unchanged."""
    return np.float32(value) if np.ndim(value) == 0 else value


class Transformer:
    """Turns images (H x W x K float arrays) into net input blobs and back, like pycaffe's:
    resize to the input size, transpose, channel swap, raw scale, mean subtraction, input scale,
    computed in float32 in pycaffe's order (so results are pycaffe's to the bit)."""

    def __init__(self, inputs):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose, self.channel_swap, self.raw_scale = {}, {}, {}
        self.mean, self.input_scale = {}, {}

    def _check(self, in_):
        if in_ not in self.inputs:
            raise KeyError(f"{in_!r} is not one of the net inputs: {list(self.inputs)}")

    def set_transpose(self, in_, order):
        """The order of dimensions, e.g. (2, 0, 1) turns H x W x K images into K x H x W."""
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("transpose order needs as many dimensions as the input blob minus the batch axis")
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The order to take the channels in after the transpose, e.g. (2, 1, 0): RGB to BGR."""
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("channel swap needs as many entries as the input has channels")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Multiply the input by `scale` before the mean is subtracted (e.g. 255 for [0, 255] models)."""
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean to subtract: one value per channel (C,), or an (H, W) / (C, H, W) array, resized
        to the input's size if it differs (as pycaffe does)."""
        self._check(in_)
        mean = np.asarray(mean)
        shape = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != shape[0]:
                raise ValueError(f"mean has {mean.shape[0]} channels, the input {shape[0]}")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            ms = (1,) + mean.shape if mean.ndim == 2 else mean.shape
            if len(ms) != 3:
                raise ValueError(f"mean shape {mean.shape} is neither (C,), (H, W) nor (C, H, W)")
            if ms != shape:
                m_min, m_max = mean.min(), mean.max()
                normal = (mean - m_min) / (m_max - m_min)
                resized = resize_image(normal.transpose((1, 2, 0)), shape[1:]).transpose((2, 0, 1))
                mean = resized * _scalar32(m_max - m_min) + _scalar32(m_min)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply the input by `scale` after the mean is subtracted."""
        self._check(in_)
        self.input_scale[in_] = scale

    def preprocess(self, in_, data):
        """One H x W x K image -> one (K', H', W') float32 input item (`data` is not modified)."""
        self._check(in_)
        caffe_in = np.array(data, dtype=np.float32)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if in_ in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            caffe_in *= _scalar32(self.raw_scale[in_])
        if in_ in self.mean:
            caffe_in -= self.mean[in_]
        if in_ in self.input_scale:
            caffe_in *= _scalar32(self.input_scale[in_])
        return caffe_in

    def deprocess(self, in_, data):
        """Invert `preprocess` (except the resize) for one item of the blob."""
        self._check(in_)
        decaf_in = np.array(data).squeeze()
        if decaf_in.dtype.kind != "f":
            decaf_in = decaf_in.astype(np.float32)
        if in_ in self.input_scale:
            decaf_in /= _scalar32(self.input_scale[in_])
        if in_ in self.mean:
            decaf_in += self.mean[in_]
        if in_ in self.raw_scale:
            decaf_in /= _scalar32(self.raw_scale[in_])
        if in_ in self.channel_swap:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in


# -- prototxt files: what pycaffe has no call for -------------------------------------------------
def read_net_prototxt(path):
    """The NetParameter of a net prototxt, parsed as `caffe.Net` parses it (an error names the
    file and line). For reading a net's fields (its Data layers' sources and mean file, a layer's
    num_output) without building it; change fields on the message and `write_prototxt` it."""
    return protoio.read_prototxt(path, caffe_pb2.NetParameter)


def read_solver_prototxt(path):
    """The SolverParameter of a solver prototxt as `caffe train` and `caffe.get_solver` read it:
    the legacy `solver_type` upgraded, a missing or directory `snapshot_prefix` completed (so
    `param.snapshot_prefix` is where the solver writes its snapshots). Builds no net."""
    from .solvers.params import read_solver_param
    return read_solver_param(path)


def write_prototxt(path, message, comment=""):
    """Write a NetParameter or SolverParameter as Caffe prints it, atomically; `comment` (lines
    without the leading #) goes first."""
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    atomic_write(path, head + protoio.prototxt_text(message))
