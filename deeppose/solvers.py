"""The run-local solvers (models/<net>/run/): derived from the committed ones with a run's
fields; the weights a solver ends with and the state an interrupted run of it left."""

from __future__ import annotations

from pathlib import Path

import caffe


def log(message: str) -> None:
    caffe.glog.info("pipeline.py", message)  # the tag its lines had as deeppose/pipeline.py


def _set_field(param, key, value, src) -> str:
    """Set one field of a SolverParameter (an enum by its name, a repeated field by a list); its
    previous value as text."""
    field = param.DESCRIPTOR.fields_by_name.get(key)
    if field is None:
        raise ValueError(f"{src}: SolverParameter has no field {key!r}")
    current = getattr(param, key)
    if hasattr(current, "extend"):  # a repeated field: its values replaced
        before = list(current)
        del current[:]
        current.extend(value if isinstance(value, (list, tuple)) else [value])
        return str(before)
    if field.enum_type is not None:
        before = field.enum_type.values_by_number[current].name
        if isinstance(value, str):
            if value not in field.enum_type.values_by_name:
                raise ValueError(f"{src}: {key} has no value {value!r} ({', '.join(field.enum_type.values_by_name)})")
            value = field.enum_type.values_by_name[value].number
    else:
        before = f"{current:.7g}" if isinstance(current, float) else repr(current)  # float32 fields: 7 digits
    setattr(param, key, value)
    return before


def derive_solver(src, dst, overrides: dict, net=None, train_batch: int | None = None) -> Path:
    """Write a run-local solver: `src` with fields replaced (`overrides`: field -> value; an enum
    by its name, a repeated field by a list) training the net `net` (default: the solver's own).
    With `train_batch`, the net is inlined (`net_param`) with its TRAIN Data layers' batch_size
    changed; otherwise the solver refers to the net file."""
    param = caffe.io.read_solver_prototxt(src)
    for key, value in overrides.items():
        before = _set_field(param, key, value, src)
        log(f"{dst}: {key} {before} -> {value!r} (from {src})")
    note = {k: v for k, v in overrides.items()}
    net = str(net or param.net)
    if not net and not param.HasField("net_param"):
        raise ValueError(f"{src}: the solver has no `net` file (the run's solvers train one net file)")
    if train_batch:
        net_param = caffe.io.read_net_prototxt(net)
        for layer in net_param.layer:
            if layer.type == "Data" and any(r.phase == caffe.TRAIN for r in layer.include):
                layer.data_param.batch_size = train_batch
        param.ClearField("net")
        param.net_param.CopyFrom(net_param)
        note["TRAIN batch_size"] = train_batch
    elif net:
        param.net = net
    note["net"] = net or "net_param (inlined)"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    caffe.io.write_prototxt(dst, param, f"derived from {src} by python -m deeppose train: {note}")
    return dst


def final_snapshot(solver) -> Path:
    """The weights file a solver writes when it finishes."""
    param = caffe.io.read_solver_prototxt(solver)
    return Path(f"{param.snapshot_prefix}_iter_{param.max_iter}.caffemodel")


def latest_state(solver) -> Path | None:
    """The newest `.solverstate` an interrupted run of this solver left (iteration below max_iter;
    training snapshots when stopped with SIGINT), or None."""
    param = caffe.io.read_solver_prototxt(solver)
    prefix = Path(param.snapshot_prefix)
    states = []
    for path in prefix.parent.glob(f"{prefix.name}_iter_*.solverstate"):
        n = path.name[len(prefix.name) + len("_iter_"):-len(".solverstate")]
        if n.isdigit() and int(n) < param.max_iter:
            states.append((int(n), path))
    return max(states)[1] if states else None
