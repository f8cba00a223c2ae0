"""Fields of the data and pooling parameters that no golden case sets, checked against Caffe's
documented rules (the random ones by their distribution, the rest exactly); cited by the field
audit (tests/engine/field_audit_table.py)."""
import os

import cv2
import numpy as np
import pytest

import caffe
from caffe.formats.protoio import parse_prototxt
from caffe.proto import caffe_pb2
from tests.conftest import GOLDEN
from tests.engine.conftest import data_net, datum, make_db


@pytest.fixture
def six(tmp_path):
    return make_db(tmp_path / "db", [datum(10 * i, i) for i in range(6)])


def first_labels(make, seeds=range(8)):
    firsts = []
    for seed in seeds:
        caffe.set_random_seed(seed)
        firsts.append(int(make().forward()["label"][0]))
    return firsts


def test_data_rand_skip_starts_at_a_random_record_before_it(six):
    """Caffe skips `caffe_rng_rand() % rand_skip` records once, then reads in order."""
    firsts = first_labels(lambda: data_net(six, batch=2, data_param="rand_skip: 4"))
    assert set(firsts) <= {0, 1, 2, 3} and len(set(firsts)) > 1
    caffe.set_random_seed(1)
    net = data_net(six, batch=2, data_param="rand_skip: 4")
    first = net.forward()["label"].tolist()
    assert net.forward()["label"].tolist() == [(first[0] + 2) % 6, (first[0] + 3) % 6]


def test_data_prefetch_and_force_encoded_color_change_nothing(six):
    """prefetch sets the queue depth and force_encoded_color is never read by Caffe 1.0: the batches
    are the same."""
    plain = data_net(six, batch=4)
    other = data_net(six, batch=4, data_param="prefetch: 1 force_encoded_color: true")
    for _ in range(3):
        a, b = plain.forward(), other.forward()
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_force_color_decodes_a_gray_image_to_bgr(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (5, 6), dtype=np.uint8)
    source = make_db(tmp_path / "db", [caffe_pb2.Datum(data=cv2.imencode(".png", gray)[1].tobytes(),
                                                         encoded=True, label=1)])
    assert data_net(source, batch=1).forward()["data"].shape == (1, 1, 5, 6)
    color = data_net(source, batch=1, transform="force_color: true").forward()["data"][0]
    np.testing.assert_array_equal(color, np.stack([gray] * 3))


def image_data_net(body):
    text = ('layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { '
            'source: "list_int.txt" batch_size: 6 %s } }' % body)
    return caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TRAIN)


def test_image_data_shuffle_and_rand_skip(monkeypatch):
    """shuffle: every image once per pass, in a seeded random order; rand_skip: the first image is
    one of the first rand_skip lines."""
    monkeypatch.chdir(os.path.join(GOLDEN, "files"))
    labels = [int(v) for v in np.loadtxt("list_int.txt", dtype=str)[:, 1]]
    assert image_data_net("").forward()["label"].tolist() == labels
    orders = set()
    for seed in range(4):
        caffe.set_random_seed(seed)
        order = image_data_net("shuffle: true").forward()["label"].tolist()
        assert sorted(order) == sorted(labels)
        orders.add(tuple(order))
    assert len(orders) > 1
    firsts = first_labels(lambda: image_data_net("rand_skip: 3"))
    assert set(firsts) <= set(labels[:3]) and len(set(firsts)) > 1


@pytest.mark.parametrize("mode, size", [("CEIL", 3), ("FLOOR", 2)])
def test_pooling_round_mode(mode, size):
    """BVLC master's round_mode: the output size rounds (H + 2 pad - kernel) / stride up (CEIL,
    Caffe 1.0's only rule) or down (FLOOR)."""
    text = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 dim: 6 dim: 6 } } }'
            'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: MAX kernel_size: 3 '
            f'stride: 2 round_mode: {mode} }} }}')
    net = caffe.Net.from_param(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TEST)
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    out = net.forward(x=x)["p"]
    assert out.shape == (1, 1, size, size)
    np.testing.assert_array_equal(out[0, 0, :2, :2], [[14, 16], [26, 28]])
