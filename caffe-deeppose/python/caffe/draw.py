"""pycaffe's caffe.draw: a NetParameter as a pydot graph, the picture pycaffe draws.

Layers are boxes (coloured by type: convolutions red, pooling orange, inner products purple,
others blue; in-place layers green), blobs are octagons, edges out of a layer carry its output
count (Data: its batch size). Rendering (`draw_net`, `draw_net_to_file`) runs Graphviz's `dot`.
"""
import os
import shutil
import subprocess

import pydot

from .atomic_file import atomic_write
from .proto import caffe_pb2

LAYER_STYLE_DEFAULT = {'shape': 'record', 'fillcolor': '#6495ED', 'style': 'filled'}
NEURON_LAYER_STYLE = {'shape': 'record', 'fillcolor': '#90EE90', 'style': 'filled'}
BLOB_STYLE = {'shape': 'octagon', 'fillcolor': '#E0E0E0', 'style': 'filled'}
_TYPE_COLORS = {'Convolution': '#FF5050', 'Deconvolution': '#FF5050', 'Pooling': '#FF9900',
                'InnerProduct': '#CC33FF'}
_LEARNING_LAYERS = ('Convolution', 'Deconvolution', 'InnerProduct')


def get_pooling_types_dict():
    """{pooling method number: its name}, e.g. {0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'}."""
    return {v.number: name for name, v in
            caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR.values_by_name.items()}


def get_edge_label(layer):
    """The label of the edges out of `layer`: Data's batch size, the output count of
    convolutions and inner products, else empty."""
    if layer.type == 'Data':
        return f'Batch {layer.data_param.batch_size}'
    if layer.type in ('Convolution', 'Deconvolution'):
        return str(layer.convolution_param.num_output)
    if layer.type == 'InnerProduct':
        return str(layer.inner_product_param.num_output)
    return '""'


def get_layer_lr_mult(layer):
    """(weight, bias) learning-rate multipliers of a Convolution/Deconvolution/InnerProduct layer."""
    if layer.type not in _LEARNING_LAYERS:
        raise ValueError(f"{layer.type} layers do not have a learning rate multiplier")
    if len(layer.param) > 2:
        raise ValueError("Could not parse the learning rate multiplier")
    mults = [p.lr_mult for p in layer.param] + [1.0] * (2 - len(layer.param))
    return tuple(mults)


def get_layer_label(layer, rankdir, display_lrm=False):
    """The node label of a layer: name, (type), kernel/stride/pad of spatial layers and, with
    `display_lrm`, the lr multipliers; words on lines for LR graphs, on one line for TB/BT."""
    separator = ' ' if rankdir in ('TB', 'BT') else r'\n'
    if layer.type == 'Pooling':
        kind = f'({layer.type} {get_pooling_types_dict()[layer.pooling_param.pool]})'
    else:
        kind = f'({layer.type})'
    descriptors = [layer.name, kind]
    if layer.type == 'Pooling':
        p = layer.pooling_param
        kernel, stride, pad = p.kernel_size, p.stride, p.pad
    elif layer.type in ('Convolution', 'Deconvolution'):
        p = layer.convolution_param
        kernel = p.kernel_size[0] if len(p.kernel_size) else 1
        stride = p.stride[0] if len(p.stride) else 1
        pad = p.pad[0] if len(p.pad) else 0
    if layer.type in ('Convolution', 'Deconvolution', 'Pooling'):
        descriptors.append(separator.join([f'kernel size: {kernel:d}', f'stride: {stride:d}',
                                           f'pad: {pad:d}']))
    if display_lrm and layer.type in _LEARNING_LAYERS:
        lrm0, lrm1 = get_layer_lr_mult(layer)
        if lrm0 or lrm1:
            descriptors.append(f'lr mult: {lrm0:.1f}, {lrm1:.1f}')
    return '"%s"' % separator.join(descriptors)  # quoted: colons would not parse otherwise


def choose_color_by_layertype(layertype):
    """The fill colour of a (not in-place) layer of this type."""
    return _TYPE_COLORS.get(layertype, '#6495ED')


def _drawn_in_phase(layer, phase):
    """Whether pycaffe draws `layer` for `phase` (None: every layer): by the phases of its
    include/exclude rules."""
    if phase is None:
        return True
    if len(layer.include) and len(layer.exclude):
        raise ValueError(f'layer {layer.name} has both include and exclude specified.')
    included = not len(layer.include) or any(rule.phase == phase for rule in layer.include)
    return included and not any(rule.phase == phase for rule in layer.exclude)


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """The pydot graph of NetParameter `caffe_net` laid out in direction `rankdir` ('LR', 'TB',
    'BT', 'RL'); `phase` (caffe.TRAIN/TEST) draws only that phase's layers."""
    graph = pydot.Dot(caffe_net.name or 'Net', graph_type='digraph', rankdir=rankdir)
    nodes, edges = {}, []
    for layer in caffe_net.layer:
        if not _drawn_in_phase(layer, phase):
            continue
        label = get_layer_label(layer, rankdir, display_lrm=display_lrm)
        node_name = f'{layer.name}_{layer.type}'
        if len(layer.bottom) == 1 and len(layer.top) == 1 and layer.bottom[0] == layer.top[0]:
            nodes[node_name] = pydot.Node(label, **NEURON_LAYER_STYLE)
        else:
            style = dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type))
            nodes[node_name] = pydot.Node(label, **style)
        for bottom in layer.bottom:
            nodes[bottom + '_blob'] = pydot.Node(bottom, **BLOB_STYLE)
            edges.append((bottom + '_blob', node_name, '""'))
        for top in layer.top:
            nodes[top + '_blob'] = pydot.Node(top)  # styled once a later layer reads it
            edges.append((node_name, top + '_blob', get_edge_label(layer) if label_edges else '""'))
    for node in nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=label))
    return graph


def draw_net(caffe_net, rankdir, ext='png', phase=None, display_lrm=False):
    """The picture of `caffe_net` rendered by Graphviz's `dot` in format `ext` (bytes)."""
    dot = shutil.which('dot')
    if dot is None:
        raise RuntimeError("caffe.draw: rendering needs Graphviz's `dot` program, which is not on "
                           "PATH (install Graphviz, e.g. `apt-get install graphviz`)")
    source = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm).to_string()
    run = subprocess.run([dot, f'-T{ext}'], input=source.encode(), capture_output=True)
    if run.returncode != 0:
        raise RuntimeError(f"caffe.draw: Graphviz's dot cannot render the net as {ext!r}: "
                           f"{run.stderr.decode(errors='replace').strip()}")
    return run.stdout


def draw_net_to_file(caffe_net, filename, rankdir='LR', phase=None, display_lrm=False):
    """Draw `caffe_net` into `filename` in the format of its extension ('.png', '.svg', '.pdf',
    ...; '.raw' writes the dot source), atomically."""
    ext = os.fspath(filename).rpartition('.')[2]
    atomic_write(filename, draw_net(caffe_net, rankdir, ext, phase, display_lrm))
