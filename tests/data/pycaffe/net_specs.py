"""NetSpec cases written by the real pycaffe (make_expected.py) and by ours (tests/engine/test_net_spec.py):
in-place layers, several tops, ntop=0, repeated and nested fields, enum names, python_param,
LayerParameter fields given as keywords (name, include/exclude, loss_weight, propagate_down) and
automatic names."""
import caffe
from caffe import layers as L, params as P


def lenet():
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[2, 1, 28, 28]), dict(dim=[2, 1, 1, 1])],
                                  transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool1, num_output=50, weight_filler=dict(type='xavier'),
                           param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='gaussian', std=0.01))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label, loss_weight=0.5)
    n.acc = L.Accuracy(n.ip2, n.label, include=dict(phase=caffe.TEST))
    return n.to_proto()


def anon():
    data, label = L.DummyData(shape=[dict(dim=[2, 3, 8, 8]), dict(dim=[2])], ntop=2)
    conv = L.Convolution(data, convolution_param=dict(num_output=4, kernel_size=[3, 3], pad=1,
                                                      bias_term=False))
    relu = L.ReLU(conv, in_place=True)
    pool = L.Pooling(relu, pool=P.Pooling.AVE, global_pooling=True)
    ip = L.InnerProduct(pool, num_output=3)
    loss = L.SoftmaxWithLoss(ip, label)
    return loss.to_proto()


def multi_top():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 6, 4, 4]))
    n.a, n.b, n.c = L.Slice(n.data, slice_param=dict(axis=1, slice_point=[1, 3]), ntop=3)
    n.cat = L.Concat(n.c, n.a, axis=1)
    n.prod = L.Eltwise(n.b, n.b, operation=P.Eltwise.PROD, propagate_down=[True, False])
    n.silence = L.Silence(n.prod, ntop=0)
    L.Silence(n.cat, ntop=0)
    n.flat = L.Flatten(n.cat)
    n.sil2 = L.Silence(n.flat, ntop=0)
    return n.to_proto()


def python_layer():
    n = caffe.NetSpec()
    n.data = L.Input(shape=[dict(dim=[1, 2, 3])])
    n.out = L.Python(n.data, python_param=dict(module='mymod', layer='MyLayer', param_str='{"k": 3}'),
                     name='pylayer', exclude=[dict(phase=caffe.TRAIN), dict(stage=['deploy'])])
    n.lrn = L.LRN(n.out, local_size=5, alpha=1e-4, beta=0.75, norm_region=P.LRN.WITHIN_CHANNEL)
    n.loss = L.EuclideanLoss(n.lrn, n.data, loss_param=dict(normalization=P.Loss.FULL))
    return n.to_proto()


def unnamed_middle():
    n = caffe.NetSpec()
    n.data = L.DummyData(dummy_data_param=dict(shape=[dict(dim=[1, 1, 5, 5])],
                                               data_filler=[dict(type='constant', value=0.5)]))
    hidden = L.Convolution(L.Convolution(n.data, num_output=2, kernel_size=1), num_output=2, kernel_size=1)
    n.top = L.Sigmoid(L.TanH(hidden))
    return n.to_proto()


CASES = {"lenet": lenet, "anon": anon, "multi_top": multi_top, "python_layer": python_layer,
         "unnamed_middle": unnamed_middle}

