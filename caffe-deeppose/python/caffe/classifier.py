"""pycaffe's caffe.Classifier: a Net that classifies images (resize, centre crop or 10-crop
oversampling, the input Transformer), as pycaffe's python/caffe/classifier.py does."""
import numpy as np

from . import io
from .net import Net
from .proto.caffe_pb2 import TEST


def configure_transformer(net, mean, input_scale, raw_scale, channel_swap):
    """A Transformer for the net's first input, taking H x W x K images (pycaffe's settings)."""
    in_ = net.inputs[0]
    transformer = io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """`Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)`: a TEST-phase Net whose `predict(images)` gives the
    first output per image. Images are resized to `image_dims` (default: the input's size),
    then centre-cropped or 10-crop oversampled to the input's size."""

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = configure_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[self.inputs[0]].data.shape[2:])
        if not image_dims:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample=True):
        """(N, C) outputs for N H x W x K images: averaged over the 10 crops (corners, centre and
        their mirrors) with `oversample`, else of the centre crop."""
        resized = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1], inputs[0].shape[2]),
                           dtype=np.float32)
        for ix, image in enumerate(inputs):
            resized[ix] = io.resize_image(image, self.image_dims)
        if oversample:
            crops = io.oversample(resized, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            box = (np.tile(center, (1, 2))[0] +
                   np.concatenate([-self.crop_dims / 2.0, self.crop_dims / 2.0])).astype(int)
            crops = resized[:, box[0]:box[2], box[1]:box[3], :]
        in_ = self.inputs[0]
        caffe_in = np.zeros(np.array(crops.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, crop in enumerate(crops):
            caffe_in[ix] = self.transformer.preprocess(in_, crop)
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
