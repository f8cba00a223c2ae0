"""Write what the real pycaffe computes for net_specs.py and io_cases.py (see README.md).

Run with the real Caffe's python (BVLC Caffe 1.0 + DeepPose patches, built at /opt/seed-caffe):
    (source /opt/seed-caffe/env.sh; $SEED_PY tests/data/pycaffe/make_expected.py tests/data/pycaffe)
"""
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402  (the real pycaffe, from PYTHONPATH)
import io_cases  # noqa: E402
import net_specs  # noqa: E402


def main(out):
    expected = {}
    for name, fn in net_specs.CASES.items():
        net = fn()
        with open(os.path.join(out, f"net_spec_{name}.prototxt"), "w") as f:
            f.write(str(net))
        expected[f"net_spec/{name}"] = np.frombuffer(net.SerializeToString(deterministic=True), np.uint8)

    for name, (arr, label) in io_cases.datum_inputs().items():
        datum = caffe.io.array_to_datum(arr, label)
        expected[f"array_to_datum/{name}"] = np.frombuffer(datum.SerializeToString(), np.uint8)
        expected[f"datum_to_array/{name}"] = caffe.io.datum_to_array(datum)
    for name, (arr, diff) in io_cases.blobproto_inputs().items():
        blob = caffe.io.array_to_blobproto(arr, diff)
        expected[f"array_to_blobproto/{name}"] = np.frombuffer(blob.SerializeToString(), np.uint8)
        expected[f"blobproto_to_array/{name}"] = caffe.io.blobproto_to_array(blob)
        if diff is not None:
            expected[f"blobproto_to_array_diff/{name}"] = caffe.io.blobproto_to_array(blob, return_diff=True)

    for name, (im, dims, order) in io_cases.resize_inputs().items():
        expected[f"resize_image/{name}"] = caffe.io.resize_image(im, dims, order)
    images, crop_dims = io_cases.oversample_inputs()
    expected["oversample"] = caffe.io.oversample(images, crop_dims)

    shape, settings, image = io_cases.transformer_case()
    t = caffe.io.Transformer({"data": shape})
    for key, value in settings.items():
        getattr(t, "set_" + key)("data", value)
    expected["transformer/preprocess"] = t.preprocess("data", image.copy())
    expected["transformer/deprocess"] = t.deprocess("data", expected["transformer/preprocess"])
    shape, mean = io_cases.transformer_full_mean_case()
    t = caffe.io.Transformer({"data": shape})
    t.set_mean("data", mean)
    expected["transformer/resized_mean"] = t.mean["data"]

    for name, pixels in io_cases.image_files().items():
        path = os.path.join(out, name)
        cv2.imwrite(path, pixels[..., ::-1] if pixels.ndim == 3 and pixels.shape[2] == 3 else
                    pixels[..., [2, 1, 0, 3]] if pixels.ndim == 3 else pixels)  # RGB(A) given
        expected[f"load_image/{name}/color"] = caffe.io.load_image(path)
        expected[f"load_image/{name}/grey"] = caffe.io.load_image(path, color=False)

    prototxt = os.path.join(out, "classifier_net.prototxt")
    weights = os.path.join(out, "classifier_net.caffemodel")
    caffe.set_random_seed(1)
    caffe.Net(prototxt, caffe.TEST).save(weights)
    settings, images = io_cases.classifier_case()
    classifier = caffe.Classifier(prototxt, weights, **settings)
    expected["classifier/oversample"] = classifier.predict(images)
    expected["classifier/center"] = classifier.predict(images, oversample=False)
    settings, name, _, windows = io_cases.detector_case()
    detector = caffe.Detector(prototxt, weights, **settings)
    found = detector.detect_windows([(os.path.join(out, name), windows)])
    expected["detector/windows"] = np.array([d["prediction"] for d in found])

    np.savez_compressed(os.path.join(out, "expected.npz"), **expected)


if __name__ == "__main__":
    main(sys.argv[1])
