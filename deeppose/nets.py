"""The joint-dependent numbers of the stage nets, checked against the run's dataset description.

Stage 1 regresses 2 x J numbers (`predict`'s num_output, the Data layers' label_num); a refiner
regresses one joint (2 numbers) and its deploy net takes the J crops of an image as one batch.
Both read 3-channel images (the LMDB tool and deployment read images in colour), and a refiner's
crops are square. A net that does not fit stops the command with an error naming the prototxt,
the layer, the field and the value it must have.
"""

from __future__ import annotations

from dataclasses import dataclass

import caffe

from .dataset import DatasetDescription


@dataclass(frozen=True)
class ModelFiles:
    """A stage's deploy prototxt and the training prototxt whose Data layer gives its preprocessing."""

    deploy: str
    train: str


STAGE1 = ModelFiles("models/deeppose/deeppose.prototxt", "models/deeppose/deeppose_train_test.prototxt")
REFINE = ModelFiles("models/deeppose_refine/deeppose_refine.prototxt",
                    "models/deeppose_refine/deeppose_refine_train_test.prototxt")


def read_net(path):
    """A prototxt's NetParameter, parsed by the engine."""
    return caffe.protoio.read_prototxt(path, caffe.proto.caffe_pb2.NetParameter)


def _mismatch(path, layer, field, value, need, why) -> str:
    return f"{path}: layer {layer!r} {field} is {value}; it must be {need} ({why})"


def net_errors(path, outputs: int, why: str, batch: int | None = None, square: bool = False) -> list[str]:
    """What in the net at `path` does not fit `outputs` regressed numbers, a deploy batch and a
    square input; [] when it fits."""
    net = read_net(path)
    errors = []
    predict = [l for l in net.layer if l.name == "predict"]
    if not predict:
        errors.append(f"{path}: no layer 'predict' (the layer whose top is the regressed joints)")
    for l in predict:
        n = l.inner_product_param.num_output
        if n != outputs:
            errors.append(_mismatch(path, l.name, "inner_product_param.num_output", n, outputs, why))
    for l in net.layer:
        if l.type == "Data" and l.data_param.label_num != outputs:
            errors.append(_mismatch(path, l.name, "data_param.label_num", l.data_param.label_num, outputs, why))
        if l.type == "Input":
            dims = list(l.input_param.shape[0].dim) if l.input_param.shape else []
            if len(dims) != 4:
                errors.append(f"{path}: layer {l.name!r} input_param.shape must have 4 dims (N, C, H, W), not {dims}")
                continue
            if dims[1] != 3:
                errors.append(_mismatch(path, l.name, "input_param.shape.dim[1]", dims[1], 3,
                                        "images are read in colour"))
            if batch is not None and dims[0] != batch:
                errors.append(_mismatch(path, l.name, "input_param.shape.dim[0]", dims[0], batch,
                                        f"the deploy batch is one crop per joint: {batch} joints"))
            if square and dims[2] != dims[3]:
                errors.append(_mismatch(path, l.name, "input_param.shape.dim[3]", dims[3], dims[2],
                                        "refiner crops are square"))
    return errors


def check_stage1(desc: DatasetDescription, files) -> None:
    """Raise ValueError listing what of stage 1's deploy and training nets does not fit `desc`."""
    why = f"2 x the {desc.num_joints} joints of {desc.name}"
    _raise([e for path in (files.deploy, files.train) for e in net_errors(path, 2 * desc.num_joints, why)])


def check_refiner(desc: DatasetDescription, files) -> None:
    """Raise ValueError listing what of a refiner's deploy and training nets does not fit `desc`."""
    why = "a refiner regresses one joint's x and y"
    _raise(net_errors(files.deploy, 2, why, batch=desc.num_joints, square=True) + net_errors(files.train, 2, why))


def _raise(errors: list[str]) -> None:
    if errors:
        raise ValueError("the nets do not fit the dataset:\n  " + "\n  ".join(errors))
