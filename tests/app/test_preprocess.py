"""Deployment preprocesses an image exactly as training's Data layer does: one implementation,
the engine's DataTransformer built from the training prototxt."""
import cv2
import numpy as np
import pytest

import caffe
from caffe.tools import compute_image_mean, convert_imageset
from deeppose import preprocess
from deeppose.datasets import K2HPD
from tests.app.conftest import deploy_input_shape


def test_deployed_input_equals_the_data_layers(stage_nets):
    """An image through the LMDB tool, compute_image_mean and the stage-1 Data layer (TEST phase)
    gives the same float32 input as through `net_image` and the deployed stage net."""
    from deeppose.cascade import StageNet
    s1, _ = stage_nets
    _, _, rows, cols = deploy_input_shape(s1.deploy)
    rng = np.random.default_rng(0)
    labels = " ".join(["0"] * 2 * K2HPD.num_joints)
    with open("list.txt", "w") as f:
        for name in ("i.png", "j.png"):
            cv2.imwrite(name, rng.integers(0, 256, (K2HPD.height, K2HPD.width), dtype=np.uint8))
            f.write(f"{name} {labels}\n")
    # s1_train.prototxt's Data layer reads the LMDB "x" with the mean file s1_mean.binaryproto
    assert convert_imageset.main_multilabel([f"-resize_height={rows}", f"-resize_width={cols}", "", "list.txt", "x"]) == 0
    assert compute_image_mean.main(["x", "s1_mean.binaryproto"]) == 0
    trained = caffe.Net(s1.train, caffe.TEST)
    trained.forward()  # batch 1: i.png
    stage = StageNet(s1, "s1.caffemodel", batch=1)
    stage.run(preprocess.net_image(preprocess.load_image("i.png", K2HPD), stage.size)[None])
    deployed = stage.net.blobs["data"].data
    assert np.array_equal(deployed, trained.blobs["data"].data)
    assert deployed.std() > 0.01  # the mean is not the image: a real comparison


@pytest.mark.parametrize("field", ["mirror: true", "crop_size: 8", "force_gray: true"])
def test_deployment_refuses_random_mirrors_crops_and_grey(stage_nets, field):
    s1, _ = stage_nets
    with open(s1.train) as f:
        text = f.read()
    with open(s1.train, "w") as f:
        f.write(text.replace("scale: 0.00390625", f"scale: 0.00390625 {field}"))
    with pytest.raises(ValueError, match=rf"{s1.train}: layer 'data' transform_param: crop_size / mirror / force_gray are not used"):
        preprocess.input_transformer(s1.train)
