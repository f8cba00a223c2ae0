"""Messages whose text (`str()`) the real pycaffe wrote (make_text.py) and ours must equal byte for
byte (tests/engine/test_prototext.py): a NetSpec net with every kind of field (nested and repeated
messages, repeated scalars, enums, strings with escapes, floats of every form, bools, int64,
uint32, `group` with `stride`), a solver holding that net, a Datum (bytes) and a BlobProto
(doubles)."""
import caffe
from caffe import layers as L, params as P
from caffe.proto import caffe_pb2

FLOATS = [0.1, 1e-05, 1e10, 0.0001, 1. / 255, 0.75, 100., -2.5, 123456789., 3.4028234e38, 1.17549435e-38,
          1e-45, 0.3, 2. / 3, 1e-7, 1e6, 1e5, 123456., 1234567., 0., -0., float("inf"), float("-inf")]


def every_kind():
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[2, 3, 13, 13]), dict(dim=[2, 1, 1, 1])], ntop=2,
                                  data_filler=[dict(type="gaussian", std=0.01), dict(type="constant", value=-1)],
                                  transform_param=dict(scale=1. / 255, mean_value=[104, 116.5, 122.25],
                                                       mirror=True, crop_size=11))
    n.conv = L.Convolution(n.data, num_output=8, kernel_size=[3, 3], stride=2, pad=[1], group=2,
                           bias_term=False, dilation=1, engine=P.Convolution.CAFFE,
                           weight_filler=dict(type="msra", variance_norm=P.Filler.FAN_OUT, sparse=3),
                           param=[dict(name="w\"eight's", lr_mult=1, decay_mult=0.5,
                                       share_mode=caffe_pb2.ParamSpec.PERMISSIVE)],
                           include=dict(phase=caffe.TRAIN, min_level=-2, max_level=3,
                                        stage=["a\tb", "back\\slash"], not_stage=["x\ny"]))
    n.pool = L.Pooling(n.conv, pool=P.Pooling.AVE, kernel_h=2, kernel_w=3, stride_h=1, stride_w=2,
                       exclude=[dict(phase=caffe.TEST), dict(stage=["deploy"])])
    n.lrn = L.LRN(n.pool, local_size=5, alpha=1e-4, beta=0.75, k=2, norm_region=P.LRN.WITHIN_CHANNEL)
    n.ip = L.InnerProduct(n.lrn, num_output=4294967295, axis=-1, transpose=True,
                          bias_filler=dict(type="uniform", min=-0.1, max=1e10))
    n.power = L.Power(n.ip, power=FLOATS[0], scale=FLOATS[1], shift=FLOATS[2])
    for i in range(3, len(FLOATS), 3):
        n[f"power{i}"] = L.Power(n.power, power=FLOATS[i], **dict(zip(("scale", "shift"), FLOATS[i + 1:i + 3])))
    n.py = L.Python(n.power, python_param=dict(module="my_mod", layer="Layer",
                                               param_str="{'k': \"v\\n\", 'é': 1, 'ctl': '\x01\x7f'}"),
                    propagate_down=[True], loss_weight=[0.5])
    n.loss = L.EuclideanLoss(n.py, n.label, loss_weight=1e-3, propagate_down=[True, False],
                             loss_param=dict(ignore_label=-1, normalization=P.Loss.BATCH_SIZE, normalize=False))
    n.thr = L.Threshold(n.ip, threshold=float("inf"), phase=caffe.TEST)
    net = n.to_proto()
    net.name = "every kind: ünïcode \"quoted\""
    net.force_backward = True
    net.debug_info = False
    net.state.phase = caffe.TRAIN
    net.state.level = -7
    net.state.stage.extend(["s1", ""])
    return net


def solver():
    s = caffe_pb2.SolverParameter(
        net_param=every_kind(), test_iter=[5, 10], test_interval=1000, base_lr=0.01, lr_policy="multistep",
        gamma=0.1, stepvalue=[100, 200], momentum=0.9, weight_decay=5e-4, max_iter=450000, snapshot=10000,
        snapshot_prefix="models/snap\\shot", solver_mode=caffe_pb2.SolverParameter.CPU, random_seed=2 ** 40 + 1,
        type="Adam", delta=1e-8, momentum2=0.999, clip_gradients=-1, regularization_type="L1",
        test_initialization=False, snapshot_format=caffe_pb2.SolverParameter.HDF5, iter_size=2, display=20,
        average_loss=10, weights=["a.caffemodel", "b.caffemodel"])
    s.test_state.add(stage=["t"], level=1)
    s.train_state.phase = caffe.TRAIN
    return s


def datum():
    return caffe_pb2.Datum(channels=1, height=2, width=128, data=bytes(range(256)), label=-3,
                           float_data=[0.5, -1e-3], encoded=True)


def blob():
    return caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[2, 2 ** 33]),
                               double_data=[0.1, 1. / 3, 1e300, 5e-324, -0.0, 1e-5],
                               data=[1.5, 1e-3], num=1, channels=2, height=3, width=4)


CASES = {"every_kind": every_kind, "solver": solver, "datum": datum, "blob": blob}
