"""The stage nets and their joint-dependent fields, fitted to the run's dataset description.

Stage 1 regresses 2 x J numbers (`predict`'s num_output, the Data layers' label_num); a refiner
regresses one joint (2 numbers) and its deploy net takes the J crops of an image as one batch.
These three fields follow from the description: `stage_nets` gives the committed nets when they
fit it, else run-local copies (``models/<net>/run/``, git-ignored) with exactly those fields set,
logging each change. Everything else must already fit (3-channel input: the LMDB tool and
deployment read images in colour; square refiner crops; a refiner's 2 outputs): a net that does
not stops the command with an error naming the prototxt, the layer, the field and the value it
must have. The nets are read and written through the engine (`caffe.io`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import caffe
from caffe.formats.db.backends import backend_name

from .dataset import DatasetDescription

RUN_DIR = "run"  # run-local nets and solvers: models/<net>/run/ (git-ignored)


@dataclass(frozen=True)
class ModelFiles:
    """A stage's deploy prototxt, the training prototxt whose Data layers give its databases and
    preprocessing, and its (committed) solver, which names where its snapshots go."""

    deploy: str
    train: str
    solver: str


STAGE1 = ModelFiles("models/deeppose/deeppose.prototxt", "models/deeppose/deeppose_train_test.prototxt",
                    "models/deeppose/deeppose_solver.prototxt")
REFINE = ModelFiles("models/deeppose_refine/deeppose_refine.prototxt",
                    "models/deeppose_refine/deeppose_refine_train_test.prototxt",
                    "models/deeppose_refine/deeppose_refine_solver.prototxt")


@dataclass(frozen=True)
class DataFiles:
    """The databases and mean file a training prototxt's Data layers read (paths as written), and
    the kinds of the databases (their `backend`, "LMDB" or "LEVELDB": Caffe's default when unset)."""

    train_db: str
    test_db: str
    mean: str
    train_backend: str
    test_backend: str


def data_files(train_prototxt) -> DataFiles:
    """The TRAIN and TEST Data layers' sources and the TRAIN layer's mean_file."""
    net = caffe.io.read_net_prototxt(train_prototxt)
    found = {}
    for layer in net.layer:
        phases = {rule.phase for rule in layer.include if rule.HasField("phase")}
        if layer.type == "Data":
            for phase in phases or {caffe.TRAIN, caffe.TEST}:
                found.setdefault(phase, layer)
    missing = [name for phase, name in ((caffe.TRAIN, "TRAIN"), (caffe.TEST, "TEST")) if phase not in found]
    if missing:
        raise ValueError(f"{train_prototxt}: no {' / '.join(missing)} Data layer (the stage's databases)")
    train = found[caffe.TRAIN]
    if not train.transform_param.HasField("mean_file"):
        raise ValueError(f"{train_prototxt}: layer {train.name!r} transform_param has no mean_file "
                         "(the stage's mean image, computed from its training database)")
    test = found[caffe.TEST]
    return DataFiles(train.data_param.source, test.data_param.source, train.transform_param.mean_file,
                     backend_name(train.data_param.backend), backend_name(test.data_param.backend))


def input_size(deploy) -> tuple[int, int]:
    """(rows, cols) of a deploy prototxt's Input layer."""
    for layer in caffe.io.read_net_prototxt(deploy).layer:
        if layer.type == "Input" and layer.input_param.shape and len(layer.input_param.shape[0].dim) == 4:
            return tuple(layer.input_param.shape[0].dim[2:4])
    raise ValueError(f"{deploy}: no Input layer with a 4-d shape (N, C, H, W)")


def _mismatch(path, layer, field, value, need, why) -> str:
    return f"{path}: layer {layer!r} {field} is {value}; it must be {need} ({why})"


def _change(path, layer, field, value, need, why) -> str:
    return f"{path}: layer {layer!r} {field} {value} -> {need} ({why})"


def _fit(net, path, outputs: int, why: str, set_outputs: bool, batch: int | None = None,
         square: bool = False) -> tuple[list[str], list[str]]:
    """Set the joint-dependent fields of `net` (parsed from `path`) that the description decides
    (`set_outputs`: the regressed count; `batch`: the deploy batch); (changes made, errors left),
    each a (path, layer, field, value, wanted, why) tuple or an error line."""
    changes, errors = [], []

    def need(layer, field, value, wanted, reason, fixable, assign):
        if value == wanted:
            return
        if fixable:
            assign(wanted)
            changes.append((path, layer, field, value, wanted, reason))
        else:
            errors.append(_mismatch(path, layer, field, value, wanted, reason))

    predict = [l for l in net.layer if l.name == "predict"]
    if not predict:
        errors.append(f"{path}: no layer 'predict' (the layer whose top is the regressed joints)")
    for l in predict:
        if l.type != "InnerProduct":
            errors.append(f"{path}: layer 'predict' is a {l.type}; it must be an InnerProduct (its num_output "
                          "is the number of regressed values)")
            continue
        p = l.inner_product_param
        need(l.name, "inner_product_param.num_output", p.num_output, outputs, why, set_outputs,
             lambda v, p=p: setattr(p, "num_output", v))
    for l in net.layer:
        if l.type == "Data":
            p = l.data_param
            need(l.name, "data_param.label_num", p.label_num, outputs, why, set_outputs,
                 lambda v, p=p: setattr(p, "label_num", v))
        if l.type == "Input":
            dims = l.input_param.shape[0].dim if l.input_param.shape else []
            if len(dims) != 4:
                errors.append(f"{path}: layer {l.name!r} input_param.shape must have 4 dims (N, C, H, W), not {list(dims)}")
                continue
            need(l.name, "input_param.shape.dim[1]", dims[1], 3, "images are read in colour", False, None)
            if batch is not None:
                need(l.name, "input_param.shape.dim[0]", dims[0], batch,
                     f"the deploy batch is one crop per joint: {batch} joints", True,
                     lambda v, dims=dims: dims.__setitem__(0, v))
            if square:
                need(l.name, "input_param.shape.dim[3]", dims[3], dims[2], "refiner crops are square", False, None)
    return changes, errors


def _stage1_rules(desc: DatasetDescription) -> dict:
    return {"outputs": 2 * desc.num_joints, "why": f"2 x the {desc.num_joints} joints of {desc.name}",
            "set_outputs": True}


def _refiner_rules(desc: DatasetDescription) -> dict:
    return {"outputs": 2, "why": "a refiner regresses one joint's x and y", "set_outputs": False}


def _fitted(files: ModelFiles, rules: dict, deploy_rules: dict, fix: bool) -> ModelFiles:
    """`files` when its nets fit; with `fix`, run-local copies with the description's fields set
    (each change logged); otherwise (or when something else does not fit) a ValueError listing
    what does not fit."""
    nets, changes, errors = {}, [], []
    for role in ("deploy", "train"):
        path = getattr(files, role)
        net = caffe.io.read_net_prototxt(path)
        extra = deploy_rules if role == "deploy" else {}
        c, e = _fit(net, path, **rules, **extra)
        nets[role], changes, errors = net, changes + c, errors + e
    if not fix:
        errors = [_mismatch(*c) for c in changes] + errors
    if errors:
        raise ValueError("the nets do not fit the dataset:\n  " + "\n  ".join(errors))
    if not changes:
        return files
    derived, written = {}, False
    for role, net in nets.items():
        src = Path(getattr(files, role))
        dst = src.parent / RUN_DIR / src.name
        derived[role] = str(dst)
        if dst.is_file() and caffe.io.read_net_prototxt(dst) == net:
            continue  # derived so already (by an earlier step or command)
        dst.parent.mkdir(parents=True, exist_ok=True)
        caffe.io.write_prototxt(dst, net, "\n".join([f"derived from {src} for the run's dataset:"]
                                                     + [_change(*c) for c in changes if c[0] == str(src)]))
        written = True
    if written:
        for c in changes:
            caffe.glog.info("nets.py", f"{_change(*c)}: set in the run-local copy under {Path(files.deploy).parent / RUN_DIR}")
    return replace(files, **derived)


def stage_nets(desc: DatasetDescription, stage1: ModelFiles = STAGE1,
               refine: ModelFiles = REFINE) -> tuple[ModelFiles, ModelFiles]:
    """The stage-1 and refiner nets for `desc`: the given (committed) ones where they fit, else
    run-local copies with the joint-dependent fields set from the description."""
    return (_fitted(stage1, _stage1_rules(desc), {}, fix=True),
            _fitted(refine, _refiner_rules(desc), {"batch": desc.num_joints, "square": True}, fix=True))


def check_stage1(desc: DatasetDescription, files: ModelFiles) -> None:
    """Raise ValueError listing what of stage 1's deploy and training nets does not fit `desc`."""
    _fitted(files, _stage1_rules(desc), {}, fix=False)


def check_refiner(desc: DatasetDescription, files: ModelFiles) -> None:
    """Raise ValueError listing what of a refiner's deploy and training nets does not fit `desc`."""
    _fitted(files, _refiner_rules(desc), {"batch": desc.num_joints, "square": True}, fix=False)
