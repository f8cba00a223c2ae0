"""Inference through S >= 1 stages with pycaffe nets: stage 1 on whole images, then any number of
refiners on crops around the current estimates; batched (one forward per batch of images, and one
per batch of crops).
"""

from __future__ import annotations

import numpy as np
import torch

import caffe
from caffe.formats.caffemodel import read_weights

from . import nets, preprocess, stage_data
from .nets import ModelFiles
from .dataset import DatasetDescription


class StageNet:
    """A trained stage: its deploy net (weights loaded, TEST phase) and its input preprocessing."""

    def __init__(self, files: ModelFiles, weights, batch: int):
        self.net = caffe.Net(files.deploy, str(weights), caffe.TEST)
        require_weights(self.net, weights, files.deploy)
        self.transform = preprocess.input_transformer(files.train)
        _, self.channels, rows, cols = self.net.blobs["data"].data.shape
        self.size = (cols, rows)
        self.batch = batch

    def run(self, records: np.ndarray) -> np.ndarray:
        """uint8 records (N, C, H, W) -> the `predict` output (N, K), `batch` at a time."""
        outputs = []
        for i in range(0, len(records), self.batch):
            chunk = self.transform(records[i:i + self.batch])
            self.net.blobs["data"].reshape(*chunk.shape)
            self.net.blobs["data"].data[...] = chunk
            with torch.no_grad():
                outputs.append(np.array(self.net.forward()["predict"], copy=True))
        return np.concatenate(outputs).reshape(len(records), -1)


def require_weights(net, weights, deploy) -> None:
    """Refuse a weights file that leaves a learnable layer of the deploy net at its fillers (an
    unrelated net's weights would score a random net): every layer of `net.params` must have
    blobs in the file."""
    given = {name for name, blobs in read_weights(weights) if blobs}
    missing = [name for name in net.params if name not in given]
    if missing:
        raise ValueError(f"{weights}: holds no weights for layer(s) {', '.join(missing)} of {deploy} "
                         f"(it has {', '.join(sorted(given)) or 'none'}): not a model of this net")


class Cascade:
    """Stage 1 and refiners 2..S; `predict` gives every stage's joints."""

    def __init__(self, desc: DatasetDescription, stage1_weights, refine_weights=(),
                 batch: int = 32, stage1: ModelFiles | None = None, refine: ModelFiles | None = None):
        if stage1 is None or refine is None:  # the nets for desc (nets.stage_nets)
            fitted = nets.stage_nets(desc)
            stage1, refine = stage1 or fitted[0], refine or fitted[1]
        nets.check_stage1(desc, stage1)
        if refine_weights:
            nets.check_refiner(desc, refine)
        self.desc = desc
        self.units = stage_data.target_units(desc)  # of the stage lists the models were trained on
        self.stage1 = StageNet(stage1, stage1_weights, batch)
        self.refiners = [StageNet(refine, w, batch * desc.num_joints) for w in refine_weights]

    def predict(self, images) -> list[np.ndarray]:
        """uint8 BGR images (H, W, 3), any sizes -> joints (N, J, 2) after each stage, in each
        image's own pixels. The stages see each image letterboxed into the description's frame
        (`preprocess.letterbox`), as their training data was made, and work in that frame."""
        framed, frames = zip(*(preprocess.letterbox(im, self.desc.size) for im in images))
        records = np.stack([preprocess.net_image(im, self.stage1.size) for im in framed])
        joints = stage_data.stage1_joints(self.stage1.run(records), self.desc.size, self.units)
        result = [joints]
        for refiner in self.refiners:
            joints = self.refine(refiner, framed, joints)
            result.append(joints)
        return [np.stack([f.from_frame(j) for f, j in zip(frames, stage)]) for stage in result]

    def refine(self, refiner: StageNet, images, joints) -> np.ndarray:
        """One refinement stage on images in the frame: crops of side alpha x diameter (measured on
        the current estimate)."""
        crop_px = refiner.size[0]
        side = stage_data.crop_side(joints, self.desc.size, self.desc)
        crops = np.stack([preprocess.crop(im, c, sd, crop_px).transpose(2, 0, 1)
                          for im, js, sd in zip(images, joints, side) for c in js])
        delta = refiner.run(crops).reshape(joints.shape)
        return stage_data.apply_refinement(joints, delta, np.repeat(side[:, None], joints.shape[1], 1), crop_px,
                                           self.units)

    def predict_files(self, paths, batch_images: int = 256) -> list[np.ndarray]:
        """`predict` over image files, loading `batch_images` at a time."""
        parts = []
        for i in range(0, len(paths), batch_images):
            parts.append(self.predict([preprocess.load_image(p, self.desc) for p in paths[i:i + batch_images]]))
        return [np.concatenate(stage) for stage in zip(*parts)]
