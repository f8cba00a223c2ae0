"""pycaffe's caffe.Detector: a Net that classifies windows of images (R-CNN style), optionally
with context padding, as pycaffe's python/caffe/detector.py does. Selective-search proposals
need the same external module and MATLAB as in pycaffe."""
import os

import numpy as np

from . import io
from .classifier import configure_transformer
from .net import Net
from .proto.caffe_pb2 import TEST

SELECTIVE_SEARCH_MODULE = "selective_search_ijcv_with_python"


class Detector(Net):
    """`Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)`; `context_pad` pixels of each net input are context
    around the window, as in R-CNN feature extraction."""

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, context_pad=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = configure_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """[{'window', 'prediction', 'filename'}] for (image file, [(ymin, xmin, ymax, xmax), ...])
        pairs: each window cropped, warped to the input size and classified."""
        images_windows = [(fname, list(windows)) for fname, windows in images_windows]
        window_inputs = []
        for fname, windows in images_windows:
            image = io.load_image(fname).astype(np.float32)
            window_inputs.extend(self.crop(image, window) for window in windows)
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(window_inputs), window_inputs[0].shape[2]) + self.blobs[in_].data.shape[2:],
                            dtype=np.float32)
        for ix, window_in in enumerate(window_inputs):
            caffe_in[ix] = self.transformer.preprocess(in_, window_in)
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        detections = []
        for fname, windows in images_windows:
            for window in windows:
                detections.append({'window': window, 'prediction': predictions[len(detections)],
                                   'filename': fname})
        return detections

    def detect_selective_search(self, image_fnames):
        """detect_windows over Selective Search proposals, from the
        selective_search_ijcv_with_python module (which runs MATLAB), as in pycaffe."""
        try:
            selective_search = __import__(SELECTIVE_SEARCH_MODULE)
        except ImportError as e:
            raise ImportError(
                f"Detector.detect_selective_search needs the {SELECTIVE_SEARCH_MODULE} module "
                "(https://github.com/sergeyk/selective_search_ijcv_with_python, which runs MATLAB), "
                f"as pycaffe's does; it cannot be imported ({e}). Give your own windows to "
                "detect_windows instead.") from e
        image_fnames = [os.path.abspath(f) for f in image_fnames]  # absolute, for MATLAB
        windows_list = selective_search.get_windows(image_fnames, cmd='selective_search_rcnn')
        return self.detect_windows(zip(image_fnames, windows_list))

    def crop(self, im, window):
        """The window (ymin, xmin, ymax, xmax) of H x W x K image `im`; with context padding, the
        window grown by the context scale, clipped to the image, resized and placed on the mean."""
        window = np.asarray(window)
        crop = im[int(window[0]):int(window[2]), int(window[1]):int(window[3])]
        if not self.context_pad:
            return crop
        crop_size = self.blobs[self.inputs[0]].width  # assumes a square input
        scale = crop_size / (1. * crop_size - self.context_pad * 2)
        half_h = (window[2] - window[0] + 1) / 2.
        half_w = (window[3] - window[1] + 1) / 2.
        center = (window[0] + half_h, window[1] + half_w)
        box = np.round(np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        full_h, full_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        scale_h, scale_w = crop_size / full_h, crop_size / full_w
        pad_y = int(round(max(0, -box[0]) * scale_h))  # how far the box reaches out of the image
        pad_x = int(round(max(0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0., [im_h, im_w, im_h, im_w])
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if not (clip_h > 0 and clip_w > 0):
            raise ValueError(f"Detector.crop: window {list(window)} lies outside the {im_h}x{im_w} image")
        crop_h = int(min(round(clip_h * scale_h), crop_size - pad_y))
        crop_w = int(min(round(clip_w * scale_w), crop_size - pad_x))
        box = box.astype(int)
        context_crop = io.resize_image(im[box[0]:box[2], box[1]:box[3]], (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context_crop
        return crop

    def configure_crop(self, context_pad):
        """The crop dimensions (H, W, K) and, with context padding, the mean in image space that
        fills the context reaching outside the image."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv_tpose = [tpose[t] for t in tpose]
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv_tpose]
        self.context_pad = context_pad
        if not self.context_pad:
            return
        channel_order = self.transformer.channel_swap.get(in_)
        raw_scale = self.transformer.raw_scale.get(in_)
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = mean.copy().transpose(inv_tpose)
        if channel_order is not None:
            channel_order_inverse = [list(channel_order).index(i) for i in range(crop_mean.shape[2])]
            crop_mean = crop_mean[:, :, channel_order_inverse]
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
