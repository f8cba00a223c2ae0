"""Reading a SolverParameter and building its nets the way Caffe's Solver::Init does.

Paths inside a solver file (net, test_net, snapshot_prefix, weights) are used as written, so
relative ones are relative to the current directory, as in Caffe.
"""
import os

from .. import glog
from ..formats.protoio import read_prototxt
from ..formats.upgrade import UpgradeError, upgrade_solver
from ..net import TEST, TRAIN, Net
from ..proto import caffe_pb2
from .lr_policy import SolverError


def read_solver_param(path):
    """A solver prototxt as Caffe's ReadSolverParamsFromTextFileOrDie reads it: the legacy enum
    `solver_type` becomes `type`; a missing `snapshot_prefix` becomes the file's path without its
    extension, and a directory prefix gets the file's stem appended."""
    path = os.fspath(path)
    param = read_prototxt(path, caffe_pb2.SolverParameter)
    try:
        upgrade_solver(param, path)
    except UpgradeError as e:
        raise SolverError(str(e)) from None
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = os.path.splitext(path)[0]
        glog.info("upgrade_proto.cpp:1108", f"snapshot_prefix was not specified and is set to {param.snapshot_prefix}")
    elif os.path.isdir(param.snapshot_prefix):
        stem = os.path.splitext(os.path.basename(path))[0]
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
        glog.info("upgrade_proto.cpp:1113", f"snapshot_prefix was a directory and is replaced to "
                                            f"{param.snapshot_prefix}")
    return param


def _merged_state(phase, net_param, extra):
    """NetState: the phase, then the net's own state, then the solver's train_state/test_state."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def _build(net_param, phase, extra_state, source):
    net_param.state.CopyFrom(_merged_state(phase, net_param, extra_state))
    state = net_param.state
    return Net.from_param(net_param, state.phase, source=source, level=state.level)


def _load_weights(net, weights):
    """Caffe's LoadNetWeights: each `weights` entry is a comma-separated list of caffemodels."""
    for entry in weights:
        for name in entry.split(","):
            glog.info("solver.cpp:71", f"Finetuning from {name.strip()}")
            net.copy_from(name.strip())


def build_train_net(param):
    """The train net from exactly one of net, net_param, train_net, train_net_param."""
    given = [f for f in ("net", "net_param", "train_net", "train_net_param") if param.HasField(f)]
    if len(given) != 1:
        raise SolverError("the solver must give exactly one train net in net, net_param, train_net or "
                          f"train_net_param; it gives {len(given)}" + (f" ({', '.join(given)})" if given else ""))
    field = given[0]
    if field.endswith("_param"):
        glog.info("solver.cpp:93", f"Creating training net specified in {field}.")
        net_param, source = caffe_pb2.NetParameter(), field
        net_param.CopyFrom(getattr(param, field))
    else:
        what = "net file" if field == "net" else "train_net file"
        glog.info("solver.cpp:102", f"Creating training net from {what}: {getattr(param, field)}")
        source = getattr(param, field)
        net_param = read_prototxt(source, caffe_pb2.NetParameter)
    net = _build(net_param, TRAIN, param.train_state if param.HasField("train_state") else None, source)
    _load_weights(net, param.weights)
    return net


def build_test_nets(param):
    """Test nets: test_net_param, then test_net files, then one copy of net/net_param (TEST phase)
    for each remaining test_iter."""
    if param.HasField("net") and param.HasField("net_param"):
        raise SolverError("the solver gives both net and net_param")
    sources = [("test_net_param", p) for p in param.test_net_param]
    sources += [(f"test_net file: {f}", f) for f in param.test_net]
    generic = param.HasField("net") or param.HasField("net_param")
    if (len(param.test_iter) < len(sources)) if generic else (len(param.test_iter) != len(sources)):
        raise SolverError(f"test_iter must be given once for each test net: {len(param.test_iter)} test_iter "
                          f"for {len(sources)} test_net/test_net_param")
    for _ in range(len(param.test_iter) - len(sources)):
        if param.HasField("net_param"):
            sources.append(("net_param", param.net_param))
        else:
            sources.append((f"net file: {param.net}", param.net))
    if param.test_state and len(param.test_state) != len(sources):
        raise SolverError(f"test_state must be left out or given once per test net ({len(sources)}), "
                          f"got {len(param.test_state)}")
    if sources and param.test_interval <= 0:
        raise SolverError(f"the solver has {len(sources)} test net(s) but test_interval is {param.test_interval}; "
                          "it must be > 0")
    nets = []
    for i, (label, src) in enumerate(sources):
        if isinstance(src, str):
            net_param = read_prototxt(src, caffe_pb2.NetParameter)
        else:
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(src)
        glog.info("solver.cpp:190", f"Creating test net (#{i}) specified by {label}")
        net = _build(net_param, TEST, param.test_state[i] if param.test_state else None,
                     src if isinstance(src, str) else label)
        _load_weights(net, param.weights)
        nets.append(net)
    return nets
