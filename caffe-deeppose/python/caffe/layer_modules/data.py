"""Data layers that read files: Data (LevelDB or LMDB of Datum) and ImageData (list file of images);
the ones fed from memory are in array_data.

Data and ImageData load in the background (caffe.prefetch): a batch is read, decoded and
transformed on a thread while the net computes, and forward hands the next ready batch over as
tensors on the layer's device.

Both have a read position (`read_position()` / `seek(position)`): what the next batch depends
on (the next record, the transformer's and the shuffle's random states), as of the batches
handed out, not those read ahead; snapshots carry it (caffe.solvers.resume_state).
"""
import collections
import weakref

import numpy as np
import torch

from .. import common, glog
from ..data_transformer import DataTransformer, caffe_rng, decode_record, refuse_moved_fields
from ..formats.db.backends import DBError, WrongBackend, backend_name, record_error
from ..formats.db.readers import open_db
from ..formats.image_list import ListFileError, read_image, read_list, to_chw
from ..prefetch import Prefetcher
from ..proto import caffe_pb2
from ..registry import register_layer
from .base import LayerModule


def _check_tops(param, most):
    if not 1 <= len(param.top) <= most:
        raise ValueError(f"takes 1 to {most} tops (data, label), the prototxt gives {len(param.top)}")


class _PrefetchingLayer(LayerModule):
    """A layer whose tops come from a Prefetcher, moved to the layer's device."""

    num_bottoms = 0
    min_tops = 1
    host_source = True

    def _start(self, load_batch, depth, then=()):
        """Start loading; when the layer goes, the thread stops and `then` (closers) run.
        `load_batch.position()` is the read position after the batches it has made, and
        `load_batch.seek(position)` moves it (called only while no thread runs)."""
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # follows .to(device)
        self._load_batch, self._depth = load_batch, depth
        self._positions = collections.deque()  # position after each batch made and not yet handed out
        self._position = load_batch.position()
        self._running = [None]
        self._launch()
        weakref.finalize(self, _stop_running, self._running, then)

    def _launch(self):
        load, positions = self._load_batch, self._positions  # the thread must not hold the layer

        def load_and_note():
            batch = load()
            positions.append(load.position())
            return batch

        self._running[0] = Prefetcher(load_and_note, self._depth, pin=common.mode() == "gpu", name=self.name)

    def top_shapes(self, bottom_shapes):
        return list(self.shapes)

    def forward(self):
        device = self._anchor.device
        batch = self._running[0].get()
        self._position = self._positions.popleft()
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def read_position(self):
        """What the next batch depends on, as a JSON-able value (see `seek`)."""
        return self._position

    def seek(self, position):
        """Make the next batch the one that followed when `read_position()` gave `position`
        (batches read ahead are dropped)."""
        if not self._running[0].stop():
            raise RuntimeError(f"layer {self.name!r}: its loading thread does not stop")
        self._positions.clear()
        self._load_batch.seek(position)
        self._position = self._load_batch.position()
        self._launch()


def _stop_running(running, then):
    running[0].stop(then)


class _DatumBatches:
    """Reads batches of Datums from a cycling database cursor (runs on the prefetch thread)."""

    def __init__(self, cursor, transformer, batch_size, label_num, with_labels, first, workers=(1, 0)):
        self.cursor, self.transformer, self.db_name = cursor, transformer, cursor.db.name
        self.batch_size, self.label_num, self.with_labels = batch_size, label_num, with_labels
        self.shape, self.dtype = first.shape, first.dtype
        self.workers, self.offset = workers, 0

    def next_record(self):
        """The next record of this worker: of N workers, worker r reads the records whose running
        index i has i mod N == r (Caffe's DataLayer::Skip)."""
        count, rank = self.workers
        while self.offset % count != rank:
            self.cursor.next()
            self.offset += 1
        self.offset += 1
        return self.cursor.next()

    def image(self, key, value):
        """The Datum and pixels of one record; errors name the database and the key."""
        datum, image = decode_record(self.transformer, self.db_name, key, value)
        if image.shape != self.shape or image.dtype != self.dtype:
            raise record_error(self.db_name, key, f"holds a {'x'.join(map(str, image.shape))} {image.dtype} "
                               f"image; the first record's is {'x'.join(map(str, self.shape))} {self.dtype} "
                               "(every record must match it)")
        return datum, image

    def label(self, key, datum):
        if not self.label_num:
            return datum.label
        if len(datum.float_data) < self.label_num:
            raise record_error(self.db_name, key, f"holds {len(datum.float_data)} float_data labels, "
                               f"label_num is {self.label_num}")
        return np.asarray(datum.float_data[:self.label_num], np.float32).reshape(-1, 1, 1)

    def __call__(self):
        n = self.batch_size
        images = np.empty((n,) + self.shape, self.dtype)
        labels = np.empty((n, self.label_num, 1, 1) if self.label_num else (n,), np.float32)
        for i in range(n):
            key, value = self.next_record()
            datum, images[i] = self.image(key, value)
            if self.with_labels:
                labels[i] = self.label(key, datum)
        data = self.transformer(images)
        return (data, labels) if self.with_labels else (data,)

    def position(self):
        """The cursor's key and, with N workers, how many records the others read beyond it in
        the same batches (-offset mod N): the first record no worker has read is that many on."""
        return {"key": self.cursor.key().hex(), "skip": -self.offset % self.workers[0],
                "transform_rng": self.transformer.random_state()}

    def seek(self, position):
        key = bytes.fromhex(position["key"])
        if not self.cursor.seek(key):
            glog.warning("data_layer.cpp", f"{self.db_name}: no record has the key {key!r} where the snapshot "
                                           "stopped reading (the database changed since?); reading on from "
                                           f"the key {self.cursor.key()!r}")
        self.cursor.skip(position.get("skip", 0))
        self.offset = 0  # the running index counts from the first record no worker has read
        self.transformer.set_random_state(position["transform_rng"])


@register_layer("Data")
class Data(_PrefetchingLayer):
    """Caffe's Data layer on a database of Datums (`backend`: LEVELDB, Caffe's default, or LMDB),
    with the DeepPose `label_num` extension: when it is positive the label top is
    (batch, label_num, 1, 1) from each Datum's float_data, else the scalar `label`, (batch,). The
    records cycle in key order: after the last comes the first again. In training with N workers
    (caffe.distributed), worker r reads the records whose running index is r mod N."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        _check_tops(param, 2)
        dp = param.data_param
        where = f"layer {param.name!r} (Data)"
        refuse_moved_fields(dp, "data_param", where)
        if not dp.source:
            raise ValueError("data_param.source is not set")
        if dp.batch_size <= 0:
            raise ValueError("data_param.batch_size must be positive")
        self.batch_size, self.label_num = int(dp.batch_size), int(dp.label_num)
        with_labels = len(param.top) == 2
        self.transformer = DataTransformer(param.transform_param, phase, f"{where}: transform_param")
        db = _open_source(dp)
        try:
            _, first = decode_record(self.transformer, db.name, *db.first())
            cursor = db.cursor()
        except BaseException:
            db.close()
            raise
        workers = (common.solver_count(), common.solver_rank()) if phase == caffe_pb2.TRAIN else (1, 0)
        batches = _DatumBatches(cursor, self.transformer, self.batch_size, self.label_num, with_labels, first, workers)
        data_shape = (self.batch_size,) + self.transformer.infer_shape(first.shape)
        glog.info("data_layer.cpp:45", f"output data size: {','.join(map(str, data_shape))}")
        label_shape = (self.batch_size, self.label_num, 1, 1) if self.label_num else (self.batch_size,)
        self.shapes = [data_shape, label_shape][:len(param.top)]
        if dp.rand_skip:
            skip = int(caffe_rng().integers(dp.rand_skip))
            glog.info("data_layer.cpp:50", f"Skipping first {skip} data points.")
            cursor.skip(skip)
        self._start(batches, dp.prefetch, (cursor.close, db.close))


def _open_source(dp):
    """The database of `data_param.source`; pointed at the other kind of database than `backend`
    says, an error naming the path and the setting to use."""
    backend = backend_name(dp.backend)
    try:
        return open_db(dp.source, backend)
    except WrongBackend as e:
        given = f"backend: {backend}" if dp.HasField("backend") else f"no backend, so {backend} (Caffe's default)"
        raise DBError(f"data_param.source {e}; data_param has {given}: set `backend: {e.found}`") from None


class _ImageBatches:
    """Reads batches of images named by a list file (runs on the prefetch thread)."""

    def __init__(self, layer_param, entries, transformer, rng, where):
        p = layer_param.image_data_param
        self.entries, self.transformer, self.rng, self.where = entries, transformer, rng, where
        self.source, self.root = p.source, p.root_folder
        self.size, self.is_color = (p.new_height, p.new_width), p.is_color
        self.batch_size, self.shuffle = int(p.batch_size), p.shuffle
        self.shape, self.index = None, 0  # the first image's (C, H, W), set by the layer

    def read(self, entry):
        """The (C, H, W) image of a list entry; a missing one is an error naming its line."""
        img = read_image(self.root + entry.path, *self.size, self.is_color)
        if img is None:
            raise ListFileError(f"{self.where}: {self.source}:{entry.line}: could not open or find "
                                f"image {self.root + entry.path!r}")
        return to_chw(img)

    def image(self, entry):
        img = self.read(entry)
        if img.shape != self.shape:
            raise ListFileError(f"{self.where}: {self.source}:{entry.line}: image {entry.path!r} is "
                                f"{'x'.join(map(str, img.shape))}, the first is {'x'.join(map(str, self.shape))} "
                                "(set new_height and new_width to resize them all)")
        return img

    def __call__(self):
        images = np.empty((self.batch_size,) + self.shape, np.uint8)
        labels = np.empty(self.batch_size, np.float32)
        for i in range(self.batch_size):
            entry = self.entries[self.index]
            images[i], labels[i] = self.image(entry), entry.label
            self.index += 1
            if self.index == len(self.entries):
                self.index = 0
                if self.shuffle:
                    self.rng.shuffle(self.entries)
        return self.transformer(images), labels

    def position(self):
        return {"index": self.index, "order": [e.line for e in self.entries] if self.shuffle else None,
                "shuffle_rng": self.rng.bit_generator.state if self.rng else None,
                "transform_rng": self.transformer.random_state()}

    def seek(self, position):
        order = position["order"]
        if order is not None:
            by_line = {e.line: e for e in self.entries}
            if sorted(order) != sorted(by_line):
                glog.warning("image_data_layer.cpp", f"{self.where}: {self.source} is not the list the snapshot "
                                                     "read (its lines differ); reading on from where it starts")
                return
            self.entries[:] = [by_line[line] for line in order]
        if position["index"] >= len(self.entries):
            glog.warning("image_data_layer.cpp", f"{self.where}: {self.source} has {len(self.entries)} lines, "
                                                 f"the snapshot stopped at line {position['index'] + 1}; reading "
                                                 "on from where it starts")
            return
        self.index = position["index"]
        if self.rng is not None and position["shuffle_rng"] is not None:
            self.rng.bit_generator.state = position["shuffle_rng"]
        self.transformer.set_random_state(position["transform_rng"])


@register_layer("ImageData")
class ImageData(_PrefetchingLayer):
    """Caffe's ImageData layer: images named by `path label` lines of a list file (read as BGR,
    or grey with is_color false; resized bilinearly to new_height x new_width when given)."""

    num_tops = 2

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.image_data_param
        where = f"layer {param.name!r} (ImageData)"
        refuse_moved_fields(p, "image_data_param", where)
        if (p.new_height > 0) != (p.new_width > 0):
            raise ValueError("image_data_param: new_height and new_width must be set together")
        if p.batch_size <= 0:
            raise ValueError("image_data_param.batch_size must be positive")
        entries = read_list(p.source)
        if not entries:
            raise ValueError(f"image_data_param.source {p.source}: the list file is empty")
        rng = caffe_rng() if p.shuffle or p.rand_skip else None
        if p.shuffle:
            glog.info("image_data_layer.cpp:47", "Shuffling data")
            rng.shuffle(entries)
        glog.info("image_data_layer.cpp:54", f"A total of {len(entries)} images.")
        self.transformer = DataTransformer(param.transform_param, phase, f"{where}: transform_param")
        batches = _ImageBatches(param, entries, self.transformer, rng, where)
        if p.rand_skip:
            batches.index = int(rng.integers(p.rand_skip))
            if batches.index >= len(entries):
                raise ValueError(f"image_data_param.rand_skip: not enough images ({len(entries)}) to skip "
                                 f"{batches.index}")
            glog.info("image_data_layer.cpp:61", f"Skipping first {batches.index} data points.")
        batches.shape = batches.read(entries[batches.index]).shape
        data_shape = (int(p.batch_size),) + self.transformer.infer_shape(batches.shape)
        glog.info("image_data_layer.cpp:77", f"output data size: {','.join(map(str, data_shape))}")
        self.shapes = [data_shape, (int(p.batch_size),)]
        self._start(batches, 4)
