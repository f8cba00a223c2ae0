"""Caffe's rules for a layer's own phase, embedded blobs, shared-param multipliers, loss layers
without tops, the level reset, legacy (V0/V1) nets and solvers, and the inputs Caffe refuses.

Numbers come from tests/golden/rules (computed by the real Caffe, see tests/golden/README.md);
the upgrade tools' outputs and logs from tests/data/legacy (written by the real Caffe's tools, see
its README.md)."""
import os
import shutil

import numpy as np
import pytest
import caffe
from caffe.formats.protoio import ProtoFileError, read_prototxt
from caffe.formats.upgrade import upgrade_net
from caffe.net import NetError
from caffe.proto import caffe_pb2
from caffe.solvers.lr_policy import SolverError
from caffe.tools import upgrade_proto
from tests.conftest import DATA, GOLDEN
from tests.engine.conftest import compare, glog_lines, golden_index

RULES = os.path.join(GOLDEN, "rules")
RULE_CASES = golden_index("rules")
LEGACY = os.path.join(DATA, "legacy")


# -- golden rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_rule_net(case, monkeypatch):
    """Each rule net, built as Caffe builds it, gives Caffe's blobs (names and values)."""
    info = RULE_CASES[case]
    arrays = np.load(os.path.join(RULES, case + ".npz"))
    monkeypatch.chdir(RULES)  # data sources are relative to it
    net = caffe.Net(case + ".prototxt", getattr(caffe, info["phase"]))
    assert list(net.blobs) == info["blobs"]
    assert net.outputs == info["outputs"]
    for key in arrays.files:
        if key.startswith("input_"):
            net.blobs[key[len("input_"):]].data[...] = arrays[key]
    net.forward()
    for name in info["blobs"]:
        compare("rules", case, name, net.blobs[name].data, arrays["blob_" + name])


def test_layer_phase_is_the_modules_phase():
    net = caffe.Net(os.path.join(RULES, "layer_phase.prototxt"), caffe.TRAIN)
    assert net.layers[1].module.phase == caffe.TEST and net.phase == caffe.TRAIN


def test_embedded_blobs_are_checked(tmp_path):
    base = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 } } }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 3 } %s }')
    path = tmp_path / "net.prototxt"
    path.write_text(base % "blobs { shape { dim: 3 dim: 4 } }")
    with pytest.raises(NetError, match=r"net.prototxt:2: layer 'fc'.*the prototxt gives 1 blobs, the layer has 2"):
        caffe.Net(str(path), caffe.TEST)
    path.write_text(base % ("blobs { shape { dim: 5 dim: 3 } %s } blobs { shape { dim: 3 } }" % ("data: 0 " * 15)))
    with pytest.raises(NetError, match=r"blobs\[0\]: shape mismatch, source \(5, 3\).*target \(3, 5\)"):
        caffe.Net(str(path), caffe.TEST)


def test_shared_param_multipliers(tmp_path):
    """The sharing layer's lr_mult/decay_mult apply where the owner leaves them unset; lr_mult 0
    there freezes the shared blob; both set and different is refused (Caffe's CHECK)."""
    def net(owner, sharer):
        path = tmp_path / "net.prototxt"
        path.write_text(
            'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 } } }\n'
            f'layer {{ name: "a" type: "InnerProduct" bottom: "x" top: "a" param {{ name: "w" {owner} }} '
            'inner_product_param { num_output: 3 bias_term: false } }\n'
            f'layer {{ name: "b" type: "InnerProduct" bottom: "x" top: "b" param {{ name: "w" {sharer} }} '
            'inner_product_param { num_output: 3 bias_term: false } }\n')
        return caffe.Net(str(path), caffe.TRAIN)

    assert net("", "lr_mult: 3 decay_mult: 0.5").param_specs == [(3.0, 0.5)]
    assert net("decay_mult: 2", "lr_mult: 3").param_specs == [(3.0, 2.0)]
    frozen = net("", "lr_mult: 0")
    assert frozen.learnable_params == [] and not frozen.params["a"][0].param.requires_grad
    assert net("lr_mult: 2", "lr_mult: 2").param_specs == [(2.0, 1.0)]
    with pytest.raises(NetError, match=r"layer 'b'.*Shared param 'w' has mismatched lr_mult \(1 here, 2 before\)"):
        net("lr_mult: 2", "lr_mult: 1")
    with pytest.raises(NetError, match="mismatched decay_mult"):
        net("decay_mult: 0", "decay_mult: 1")


def test_loss_without_top_trains(tmp_path):
    """The automatic top carries the loss into backward, as Caffe's does."""
    net = caffe.Net(os.path.join(RULES, "loss_no_top.prototxt"), caffe.TRAIN)
    assert net.blob_loss_weights["(automatic)"] == 1.0
    net.blobs["x"].data[...] = 1.0
    net.forward()
    net.backward()
    assert np.abs(net.params["fc"][0].diff).sum() > 0


def test_net_file_level_is_reset_but_stages_kept(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('state { level: 2 stage: "deploy" }\n'
                    'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                    'layer { name: "deep" type: "AbsVal" bottom: "x" top: "deep" include { min_level: 1 } }\n'
                    'layer { name: "dep" type: "AbsVal" bottom: "x" top: "dep" include { stage: "deploy" } }\n')
    assert list(caffe.Net(str(path), caffe.TEST).blobs) == ["x", "dep"]
    assert list(caffe.Net(str(path), caffe.TEST, level=1).blobs) == ["x", "deep", "dep"]


def test_legacy_batchnorm_params_frozen_with_log(capfd):
    net = caffe.Net(os.path.join(RULES, "legacy_batchnorm.prototxt"), caffe.TRAIN)
    assert net.learnable_params == []
    assert "I upgrade_proto.cpp:82] Successfully upgraded batch norm layers using deprecated params." in \
        glog_lines(capfd.readouterr().err)


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("solver_type", ["AdaGrad", "RMSProp"])
def test_momentum_refused(tmp_path, solver_type):
    net = tmp_path / "net.prototxt"
    shutil.copy(os.path.join(GOLDEN, "solvers", "net.prototxt"), net)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}" type: "{solver_type}" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed"')
    with pytest.raises(SolverError, match=f"^Momentum cannot be used with {solver_type}.$"):
        caffe.get_solver(str(solver))


@pytest.mark.parametrize("kind", ["net", "solver"])
def test_singular_field_twice_refused(tmp_path, kind):
    path = tmp_path / "x.prototxt"
    if kind == "net":
        path.write_text('name: "n"\nlayer {\n  name: "x" type: "Input" top: "x"\n  name: "y"\n}\n')
        with pytest.raises(ProtoFileError, match=r'x.prototxt:4:\d+: .*should not have multiple "name" fields'):
            caffe.Net(str(path), caffe.TEST)
    else:
        path.write_text('net: "a.prototxt"\nbase_lr: 0.1\nbase_lr: 0.2\n')
        with pytest.raises(ProtoFileError, match=r'x.prototxt:3:\d+: .*should not have multiple "base_lr" fields'):
            caffe.get_solver(str(path))


def test_v1_and_v0_mixed_with_layer_refused(tmp_path):
    path = tmp_path / "mixed.prototxt"
    path.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                    'layers { name: "r" type: RELU bottom: "x" top: "x" }\n')
    with pytest.raises(NetError, match="both 'layer' and 'layers'"):
        caffe.Net(str(path), caffe.TEST)


# -- legacy files and the upgrade tools ---------------------------------------------------------
def test_caffenet_v1_deploy_loads_runs_and_logs(capfd):
    """BVLC's reference CaffeNet deploy file in its 2014 V1 form (see tests/data/legacy/README.md)."""
    net = caffe.Net(os.path.join(LEGACY, "caffenet_deploy_v1.prototxt"), caffe.TEST)
    log = glog_lines(capfd.readouterr().err)
    assert log[:2] == [
        "I upgrade_proto.cpp:55] Attempting to upgrade input file specified using deprecated V1LayerParameter: "
        + os.path.join(LEGACY, "caffenet_deploy_v1.prototxt"),
        "I upgrade_proto.cpp:63] Successfully upgraded file specified using deprecated V1LayerParameter"]
    assert [v.type for v in net.layers][:4] == ["Input", "Convolution", "ReLU", "Pooling"]
    assert net.blobs["fc6"].data.shape == (10, 4096)
    net.blobs["data"].reshape(1, 3, 227, 227)
    net.reshape()
    net.params["fc8"][1].data[...] = np.arange(1000)
    prob = net.forward(data=np.random.RandomState(0).rand(1, 3, 227, 227))["prob"]
    assert prob.shape == (1, 1000) and int(prob.argmax()) == 999  # zero weights: the bias decides
    assert abs(float(prob.sum()) - 1) < 1e-5


def run_tool(main, capfd, *args):
    capfd.readouterr()
    status = main(list(args))
    return glog_lines(capfd.readouterr().err) + [f"exit status {status}"]


@pytest.mark.parametrize("name", ["caffenet_deploy_v1", "tiny_v0", "tiny_v1"])
def test_upgrade_net_proto_text_as_caffe(name, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(os.path.join(LEGACY, name + ".prototxt"), ".")
    log = run_tool(upgrade_proto.main_net_text, capfd, name + ".prototxt", name + ".upgraded.prototxt")
    assert log == open(os.path.join(LEGACY, name + ".upgrade.log")).read().splitlines()
    with open(name + ".upgraded.prototxt") as ours, open(os.path.join(LEGACY, name + ".upgraded.prototxt")) as ref:
        assert ours.read() == ref.read()


def test_upgrade_net_proto_binary_as_caffe(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(os.path.join(LEGACY, "tiny_v1_weights.caffemodel"), ".")
    log = run_tool(upgrade_proto.main_net_binary, capfd, "tiny_v1_weights.caffemodel",
                   "tiny_v1_weights.upgraded.caffemodel")
    assert log == open(os.path.join(LEGACY, "tiny_v1_weights.upgrade.log")).read().splitlines()
    with open("tiny_v1_weights.upgraded.caffemodel", "rb") as ours, \
            open(os.path.join(LEGACY, "tiny_v1_weights.upgraded.caffemodel"), "rb") as ref:
        assert ours.read() == ref.read()


def test_upgrade_solver_proto_text_as_caffe(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(os.path.join(LEGACY, "legacy_solver.prototxt"), ".")
    log = run_tool(upgrade_proto.main_solver_text, capfd, "legacy_solver.prototxt", "legacy_solver.upgraded.prototxt")
    assert log == open(os.path.join(LEGACY, "legacy_solver.upgrade.log")).read().splitlines()
    with open("legacy_solver.upgraded.prototxt") as ours, open(os.path.join(LEGACY, "legacy_solver.upgraded.prototxt")) as ref:
        assert ours.read() == ref.read()


def test_upgrade_tools_refuse_bad_input(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_tool(upgrade_proto.main_net_text, capfd, "only_one")[-1] == "exit status 1"
    (tmp_path / "bad.prototxt").write_text("layers { name: 1 2 }")
    log = run_tool(upgrade_proto.main_net_text, capfd, "bad.prototxt", "out.prototxt")
    assert log[-1] == "exit status 2" and "bad.prototxt:1" in log[0] and not os.path.exists("out.prototxt")
    shutil.copy(os.path.join(LEGACY, "caffenet_deploy_v1.upgraded.prototxt"), "new.prototxt")
    log = run_tool(upgrade_proto.main_net_text, capfd, "new.prototxt", "same.prototxt")
    assert "E upgrade_net_proto_text.cpp:43] File already in latest proto format: new.prototxt" in log


def test_legacy_solver_type_runs_as_its_type(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(os.path.join(GOLDEN, "solvers", "net.prototxt"), ".")
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" solver_type: RMSPROP')
    solver = caffe.get_solver("solver.prototxt")
    assert type(solver).__name__ == "RMSPropSolver" and solver.param.type == "RMSProp"
    assert not solver.param.HasField("solver_type")


def test_v1_caffemodel_loads(tmp_path):
    """A V1-format binary caffemodel (legacy 4-d blobs) gives the same net as its upgraded form."""
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }\n'
                      'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
                      'inner_product_param { num_output: 2 } }\n')
    outs = []
    for weights in ("tiny_v1_weights.caffemodel", "tiny_v1_weights.upgraded.caffemodel"):
        net = caffe.Net(str(deploy), os.path.join(LEGACY, weights), caffe.TEST)
        outs.append(net.forward(x=np.array([[1.0, 2.0, 3.0]]))["fc"].copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], [[0.5 - 2 + 6 + 0.125, 0.25 + 6 - 2.25 - 2]], rtol=1e-6)


def test_v0_net_with_unknown_field_upgrades_with_error_line(capfd):
    """Caffe logs the field it cannot carry over and continues; so do we."""
    param = read_prototxt(os.path.join(LEGACY, "tiny_v0.prototxt"), caffe_pb2.NetParameter)
    assert upgrade_net(param, "tiny_v0.prototxt") is False
    assert "E upgrade_proto.cpp:237] Unknown parameter num_output for layer type relu" in \
        glog_lines(capfd.readouterr().err)
    assert [layer.type for layer in param.layer][:3] == ["Data", "Convolution", "ReLU"]
    assert list(param.layer[1].convolution_param.pad) == [2] and param.layer[1].bottom == ["data"]


def test_v0_caffemodel_loads(tmp_path):
    """A V0 binary caffemodel (weights inside `layers { layer { blobs } }`) loads by layer name."""
    v0 = read_prototxt(os.path.join(RULES, "v0_net.prototxt"), caffe_pb2.NetParameter)
    (tmp_path / "v0.caffemodel").write_bytes(v0.SerializeToString())
    net = caffe.Net(os.path.join(RULES, "v0_net.prototxt"), caffe.TEST)
    for blob in net.params["conv1"]:
        blob.data[...] = 0
    net.copy_from(str(tmp_path / "v0.caffemodel"))
    arrays = np.load(os.path.join(RULES, "v0_net.npz"))
    net.forward(x=arrays["input_x"])
    compare("rules", "v0_net from a V0 caffemodel", "pool1", net.blobs["pool1"].data, arrays["blob_pool1"])


def test_automatic_top_is_not_saved(tmp_path):
    """net.save writes the prototxt's layers: the loss layer keeps no top, as Caffe's ToProto."""
    net = caffe.Net(os.path.join(RULES, "loss_no_top.prototxt"), caffe.TRAIN)
    net.save(str(tmp_path / "w.caffemodel"))
    saved = caffe_pb2.NetParameter.FromString((tmp_path / "w.caffemodel").read_bytes())
    assert list(saved.layer[-1].top) == [] and saved.layer[-1].type == "EuclideanLoss"
