"""pycaffe's coord_map: how the spatial coordinates of NetSpec tops relate, and `crop` built from it.

A map is (axis, a, b): the first spatial axis it applies to (None: any) and, per spatial axis,
the scale `a` and shift `b` with which an input coordinate x lands at output coordinate a*x + b.
Convolution, Pooling and Im2col map by 1/stride and (pad - (k_eff - 1)/2)/stride, Deconvolution
by stride and (k_eff - 1)/2 - pad (k_eff = (kernel - 1)*dilation + 1), Crop shifts by -offset and
pointwise layers map by identity; any other layer ends the walk. FCN aligns its upsampled scores
to the input with `crop(n.upscore, n.data)`.
"""
import numpy as np

from .net_spec import layers as L

PASS_THROUGH_LAYERS = ['AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Dropout', 'Eltwise', 'ELU', 'Log',
                       'LRN', 'Exp', 'MVN', 'Power', 'ReLU', 'PReLU', 'Scale', 'Sigmoid', 'Split',
                       'TanH', 'Threshold']

_LEGACY_FIELDS = {'pad_h', 'pad_w', 'kernel_h', 'kernel_w', 'stride_h', 'stride_w'}


class UndefinedMapException(Exception):
    """The layer has no coordinate mapping (it is not spatial, or not known to be)."""


class AxisMismatchException(Exception):
    """Two maps apply to different axes and cannot be composed."""


def _layer_fields(fn, param_name):
    """The fields of `fn`'s `<param_name>` given as a dict, else the keywords given to the layer."""
    return fn.params.get(param_name, fn.params)


def conv_params(fn):
    """(axis, stride, effective kernel extent, pad) of a Convolution/Deconvolution/Im2col/Pooling
    function, each per spatial axis (numpy arrays)."""
    params = _layer_fields(fn, 'pooling_param' if fn.type_name == 'Pooling' else 'convolution_param')
    assert not _LEGACY_FIELDS & (set(fn.params) | set(params)), \
        'cropping does not support legacy _h/_w params'
    if params.get('global_pooling'):
        raise UndefinedMapException
    axis = params.get('axis', 1)
    ks = np.array(params['kernel_size'], ndmin=1)
    dilation = np.array(params.get('dilation', 1), ndmin=1)
    return (axis, np.array(params.get('stride', 1), ndmin=1), (ks - 1) * dilation + 1,
            np.array(params.get('pad', 0), ndmin=1))


def crop_params(fn):
    """(axis, offset) of a Crop function, with Caffe's defaults (axis 2, offset 0)."""
    params = _layer_fields(fn, 'crop_param')
    return params.get('axis', 2), np.array(params.get('offset', 0), ndmin=1)


def coord_map(fn):
    """The (axis, scale, shift) map of one layer function; UndefinedMapException if it has none."""
    if fn.type_name in ('Convolution', 'Pooling', 'Im2col'):
        axis, stride, ks, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (ks - 1) / 2) / stride
    if fn.type_name == 'Deconvolution':
        axis, stride, ks, pad = conv_params(fn)
        return axis, stride, (ks - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == 'Crop':
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # -1: the map's axis is the last non-coordinate one
    raise UndefinedMapException


def compose(base_map, next_map):
    """The map of `base_map` after `next_map`: scales multiply, the further shift is scaled by the
    base scale."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The inverse map (un-shift, de-scale)."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _mappable_bottoms(top):
    """The bottoms a walk continues through: all of them, but only the first (cropped) of a Crop."""
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == 'Crop' else bottoms


def _walk(top, visit):
    """Maps from `top` back to each of its ancestors reachable through mapped layers, yielded in
    walk order; `visit(top, maps)` returning a value stops the walk with it."""
    maps = {top: (None, 1, 0)}
    frontier = {top}
    while frontier:
        top = frontier.pop()
        found = visit(top, maps)
        if found is not None:
            return found, maps
        try:
            layer_map = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mappable_bottoms(top):
            maps[bottom] = compose(maps[top], layer_map)
            frontier.add(bottom)
    return None, maps


def coord_map_from_to(top_from, top_to):
    """The map from coordinates of `top_from` to coordinates of `top_to`, found through their
    nearest common ancestor; RuntimeError if no spatial path connects them."""
    _, from_maps = _walk(top_from, lambda top, maps: None)
    found, _ = _walk(top_to, lambda top, maps: compose(maps[top], inverse(from_maps[top]))
                     if top in from_maps else None)
    if found is None:
        raise RuntimeError('Could not compute map between tops; are they connected by spatial layers?')
    return found


def crop(top_from, top_to):
    """A Crop layer cutting `top_from` to the extent of `top_to`, its axis and offsets computed from
    their coordinate map (which must have scale 1 and a non-negative integer offset)."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    assert np.all(a == 1), f'scale mismatch on crop (a = {a})'
    assert np.all(b <= 0), f'cannot crop negative offset (b = {b})'
    assert np.all(np.round(b) == b), f'cannot crop noninteger offset (b = {b})'
    return L.Crop(top_from, top_to,
                  crop_param=dict(axis=ax + 1, offset=[int(o) for o in -np.round(np.atleast_1d(b))]))
