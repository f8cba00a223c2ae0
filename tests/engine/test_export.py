"""A built net is a plain torch.nn.Module: torch.export captures the DeepPose deploy net whole
(no protobuf, no Python-side state in forward), with the same outputs as caffe.Net."""
import os

import numpy as np
import pytest
import torch

import caffe
from tests.conftest import ROOT


@pytest.mark.slow
def test_stage1_deploy_net_exports_whole():
    net = caffe.Net(os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt"), caffe.TEST)
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.uniform(0.5, 1.0, b.shape) if b.data.ndim <= 1 else rng.normal(0, 0.02, b.shape)
    x = rng.uniform(-1, 1, net.blobs["data"].shape).astype(np.float32)
    exported = torch.export.export(net.module.eval(), (torch.from_numpy(x),))
    with torch.no_grad():
        got = exported.module()(torch.from_numpy(x))[0].numpy()
    ours = net.forward(data=x)["predict"]
    np.testing.assert_allclose(got, ours, rtol=1e-5, atol=1e-6 * np.abs(ours).max())
