"""Blob plumbing: Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence, BatchReindex, Filter."""
import math

import torch

from ..registry import register_layer
from .base import LayerModule, canonical_axis, check_index_range


def check_same_shapes(shapes, skip_axis=None):
    """Every bottom shape is bottom 0's (except along `skip_axis`); a clear error otherwise."""
    first = tuple(shapes[0])
    for i, shape in enumerate(shapes[1:], 1):
        same = len(shape) == len(first) and all(
            a == c for j, (a, c) in enumerate(zip(first, shape)) if j != skip_axis)
        if not same:
            along = "" if skip_axis is None else f" except along axis {skip_axis}"
            raise ValueError(f"bottoms must have the same shape{along}: bottom 0 is {first}, "
                             f"bottom {i} is {tuple(shape)}")


def _legacy_axis(p, field, legacy_field, ndim):
    """The axis of Concat/Slice (`p` is their `field`): the legacy unsigned field if set, else `axis`."""
    if p.HasField("axis") and p.HasField(legacy_field):
        raise ValueError(f"{field}: give either axis or {legacy_field}, not both")
    if p.HasField(legacy_field):
        value = getattr(p, legacy_field)
        if value >= ndim:
            raise ValueError(f"{field}.{legacy_field} {value} is out of range for a {ndim}-axis blob")
        return value
    return canonical_axis(p.axis, ndim, f"{field}.axis")


@register_layer("Concat")
class Concat(LayerModule):
    """Joins the bottoms along `axis` (legacy `concat_dim`)."""

    min_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self._param = param.concat_param

    def setup(self, bottom_shapes):
        self.axis = _legacy_axis(self._param, "concat_param", "concat_dim", len(bottom_shapes[0]))

    def top_shapes(self, bottom_shapes):
        check_same_shapes(bottom_shapes, self.axis)
        top = list(bottom_shapes[0])
        top[self.axis] = sum(s[self.axis] for s in bottom_shapes)
        return [tuple(top)]

    def forward(self, *bottoms):
        check_same_shapes([b.shape for b in bottoms], self.axis)
        return (torch.cat(bottoms, self.axis),)


@register_layer("Slice")
class Slice(LayerModule):
    """Cuts the bottom along `axis` (legacy `slice_dim`) at `slice_point`s, or into equal parts."""

    num_bottoms = 1
    min_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self._param = param.slice_param
        self.points = list(self._param.slice_point)
        self.num_tops_given = len(param.top)

    def setup(self, bottom_shapes):
        self.axis = _legacy_axis(self._param, "slice_param", "slice_dim", len(bottom_shapes[0]))

    def _sizes(self, size):
        n = self.num_tops_given
        if not self.points:
            if size % n:
                raise ValueError(f"{n} tops do not evenly divide the slice axis {self.axis} of size {size}")
            return [size // n] * n
        if len(self.points) != n - 1:
            raise ValueError(f"{len(self.points)} slice_point(s) need {len(self.points) + 1} tops, got {n}")
        bounds = [0] + self.points + [size]
        if any(b <= a for a, b in zip(bounds[:-2], bounds[1:-1])) or bounds[-2] > size:
            raise ValueError(f"slice_point {self.points} must increase strictly within (0, {size}] "
                             f"(axis {self.axis})")
        return [b - a for a, b in zip(bounds, bounds[1:])]

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        return [shape[:self.axis] + (size,) + shape[self.axis + 1:] for size in self._sizes(shape[self.axis])]

    def forward(self, x):
        return tuple(torch.split(x, self._sizes(x.shape[self.axis]), self.axis))


@register_layer("Split")
class Split(LayerModule):
    """Gives its bottom to several tops (sharing the data); the tops' gradients add up."""

    num_bottoms = 1
    min_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.copies = len(param.top)

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0])] * self.copies

    def forward(self, x):
        return tuple(x.view_as(x) for _ in range(self.copies))


@register_layer("Flatten")
class Flatten(LayerModule):
    """Merges the axes `axis`..`end_axis` (inclusive) into one."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.axis, self.end_axis = param.flatten_param.axis, param.flatten_param.end_axis

    def _axes(self, ndim):
        start = canonical_axis(self.axis, ndim, "flatten_param.axis")
        end = canonical_axis(self.end_axis, ndim, "flatten_param.end_axis")
        if end < start:
            raise ValueError(f"flatten_param.end_axis {self.end_axis} comes before axis {self.axis}")
        return start, end

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        start, end = self._axes(len(shape))
        return [shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]]

    def forward(self, x):
        return (x.flatten(*self._axes(x.dim())),)


@register_layer("Reshape")
class Reshape(LayerModule):
    """Replaces the bottom axes [axis, axis + num_axes) by `shape`: 0 copies the bottom's dim, -1 is
    inferred from the count."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        self.axis, self.num_axes = p.axis, p.num_axes
        if self.dims.count(-1) > 1:
            raise ValueError(f"reshape_param.shape {self.dims} has more than one -1")
        if any(d < -1 for d in self.dims):
            raise ValueError(f"reshape_param.shape {self.dims}: dims must be >= -1")
        if self.num_axes < -1:
            raise ValueError(f"reshape_param.num_axes {self.num_axes} must be >= 0, or -1 for all")

    def top_shape(self, shape):
        """The top's shape for a bottom of this shape (Caffe's rules)."""
        ndim = len(shape)
        start = self.axis if self.axis >= 0 else ndim + self.axis + 1
        if not 0 <= start <= ndim:
            raise ValueError(f"reshape_param.axis {self.axis} is out of range for a {ndim}-axis blob")
        end = ndim if self.num_axes == -1 else start + self.num_axes
        if end > ndim:
            raise ValueError(f"reshape_param axis + num_axes = {end} is out of range for a {ndim}-axis blob")
        new = list(self.dims)
        for i, d in enumerate(new):
            if d == 0:
                if start + i >= ndim:
                    raise ValueError(f"reshape_param.shape has a 0 at {i} but the bottom has no axis "
                                     f"{start + i} to copy")
                new[i] = shape[start + i]
        if -1 in new:
            known = math.prod(shape[:start]) * math.prod(shape[end:]) * math.prod(d for d in new if d != -1)
            if known == 0 or math.prod(shape) % known:
                raise ValueError(f"bottom count {math.prod(shape)} is not divisible by the product of the "
                                 f"given dims ({known})")
            new[new.index(-1)] = math.prod(shape) // known
        top = tuple(shape[:start]) + tuple(new) + tuple(shape[end:])
        if math.prod(top) != math.prod(shape):
            raise ValueError(f"reshape to {top} changes the count ({math.prod(top)} vs {math.prod(shape)})")
        return top

    def top_shapes(self, bottom_shapes):
        return [self.top_shape(tuple(bottom_shapes[0]))]

    def forward(self, x):
        return (x.reshape(self.top_shape(tuple(x.shape))),)


@register_layer("Crop")
class Crop(LayerModule):
    """Crops bottom 0 to bottom 1's shape on the axes from `axis` on, starting at `offset` (one
    value for every cropped axis, or one per axis). Bottom 1 only gives the shape."""

    num_bottoms = 2
    num_tops = 1
    no_grad_bottoms = (1,)

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.axis = param.crop_param.axis
        self.offsets = list(param.crop_param.offset)

    def _crops(self, shape, ref):
        """(axis, offset, size) of each cropped axis of a bottom of `shape` cropped to `ref`."""
        start = canonical_axis(self.axis, len(shape), "crop_param.axis")
        if len(ref) != len(shape):
            raise ValueError(f"the reference bottom has {len(ref)} axes, bottom 0 has {len(shape)}")
        cropped = len(shape) - start
        if len(self.offsets) > 1 and len(self.offsets) != cropped:
            raise ValueError(f"crop_param gives {len(self.offsets)} offsets for {cropped} cropped axes")
        crops = []
        for i in range(start, len(shape)):
            offset = self.offsets[0] if len(self.offsets) == 1 else (self.offsets[i - start] if self.offsets else 0)
            if offset + ref[i] > shape[i]:
                raise ValueError(f"the crop of axis {i} is out of bounds: size {ref[i]} at offset {offset} "
                                 f"in {shape[i]}")
            crops.append((i, offset, ref[i]))
        return crops

    def top_shapes(self, bottom_shapes):
        top = list(bottom_shapes[0])
        for i, _, size in self._crops(tuple(bottom_shapes[0]), tuple(bottom_shapes[1])):
            top[i] = size
        return [tuple(top)]

    def forward(self, x, ref):
        for i, offset, size in self._crops(tuple(x.shape), tuple(ref.shape)):
            x = x.narrow(i, offset, size)
        return (x,)


@register_layer("Tile")
class Tile(LayerModule):
    """Repeats the block of axes from `axis` on `tiles` times along `axis`."""

    num_bottoms = 1
    num_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.axis, self.tiles = param.tile_param.axis, param.tile_param.tiles
        if self.tiles < 1:
            raise ValueError(f"tile_param.tiles must be at least 1, got {self.tiles}")

    def _reps(self, ndim):
        reps = [1] * ndim
        reps[canonical_axis(self.axis, ndim, "tile_param.axis")] = self.tiles
        return reps

    def top_shapes(self, bottom_shapes):
        return [tuple(n * r for n, r in zip(bottom_shapes[0], self._reps(len(bottom_shapes[0]))))]

    def forward(self, x):
        return (x.repeat(self._reps(x.dim())),)


@register_layer("Silence")
class Silence(LayerModule):
    """Consumes its bottoms (so they are not net outputs); no tops."""

    min_bottoms = 1
    num_tops = 0

    def top_shapes(self, bottom_shapes):
        return []

    def forward(self, *bottoms):
        return ()


@register_layer("BatchReindex")
class BatchReindex(LayerModule):
    """Top item i is bottom 0's item `index[i]` (bottom 1: a 1-axis blob of indices in [0, num); an
    index may repeat or be left out); the gradients of repeated items add up. No gradient to the index."""

    num_bottoms = 2
    num_tops = 1
    no_grad_bottoms = (1,)

    @staticmethod
    def _check(index_shape):
        if len(index_shape) != 1:
            raise ValueError(f"the index bottom must have 1 axis, got shape {tuple(index_shape)}")

    def top_shapes(self, bottom_shapes):
        self._check(bottom_shapes[1])
        return [(bottom_shapes[1][0],) + tuple(bottom_shapes[0][1:])]

    def forward(self, x, index):
        self._check(index.shape)
        check_index_range(index, x.shape[0], f"layer {self.name!r}: BatchReindex index")
        return (x.index_select(0, index.to(torch.int64)),)


@register_layer("Filter")
class Filter(LayerModule):
    """Keeps the items (along axis 0) of every bottom but the last whose selector (the last bottom,
    one value per item) is non-zero; one top per filtered bottom. Before the first forward the tops
    are as large as the bottoms (Caffe's first Reshape). No gradient to the selector."""

    min_bottoms = 2
    min_tops = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.no_grad_bottoms = (len(param.bottom) - 1,)
        if len(param.top) != len(param.bottom) - 1:
            raise ValueError(f"makes one top per bottom but the selector (the last bottom): {len(param.bottom)} "
                             f"bottoms need {len(param.bottom) - 1} tops, the prototxt gives {len(param.top)}")

    def setup(self, bottom_shapes):
        *data, selector = bottom_shapes
        if any(d != 1 for d in selector[1:]):
            raise ValueError(f"the selector's axes after the first must be 1, got shape {tuple(selector)}")
        for i, shape in enumerate(data):
            if not shape or shape[0] != selector[0]:
                raise ValueError(f"bottom {i} has {shape[0] if shape else 'no'} items along axis 0, the selector "
                                 f"{selector[0]}")

    def top_shapes(self, bottom_shapes):
        self.setup(bottom_shapes)
        return [tuple(s) for s in bottom_shapes[:-1]]

    def forward(self, *bottoms):
        *data, selector = bottoms
        kept = torch.nonzero(selector.detach().reshape(-1)).reshape(-1)
        return tuple(x.index_select(0, kept) for x in data)
