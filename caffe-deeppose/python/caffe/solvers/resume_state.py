"""What a .solverstate needs beyond Caffe's fields for a resumed run to continue exactly.

Caffe's SolverState keeps the iteration, the history and the weights' file; the next iterations
also depend on the data layers' read positions (next record, crop/mirror and shuffle RNGs), on
Caffe's global random generator (torch's, which `random_seed` seeds: Dropout's masks, random
fillers of DummyData) and on numpy's global one (Python layers drawing np.random). We write these as
JSON in field 1000 of the SolverState message, a field Caffe's schema does not have: protobuf
parsers skip unknown fields, so Caffe's own tools still read our .solverstate files, and a
.solverstate written by Caffe (without the field) resumes as in Caffe, the data from the start.

With N > 1 workers (caffe.distributed) each worker has its own random streams and train-net data
positions; the root solver's snapshot keeps every worker's (`workers`, in rank order), and a run
resumed with as many workers gives each its own. Resumed with another number of workers, every
worker continues rank 0's (a warning says so).
"""
import base64
import json

import numpy as np
import torch

from .. import common, glog
from ..formats.caffemodel import _fields, _length_delimited

FIELD = 1000
FORMAT = 1


def net_positions(net):
    """{layer name: read position} of a net's data layers."""
    out = {}
    for name, layer in zip(net._layer_names, net.module.layers):  # (a Python layer's view is the user's object)
        read_position = getattr(layer, "read_position", None)
        if read_position is not None:
            out[name] = read_position()
    return out


def seek_net(net, positions, where):
    """Move each data layer of `net` to its position in `positions` (from `net_positions`)."""
    layers = dict(zip(net._layer_names, net.module.layers))
    for name, position in positions.items():
        layer = layers.get(name)
        if layer is None or not hasattr(layer, "seek"):
            glog.warning("resume_state", f"{where}: the net has no data layer {name!r} to continue reading where "
                                         "the snapshot stopped")
            continue
        layer.seek(position)


def _numpy_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": base64.b64encode(keys.astype("<u4").tobytes()).decode(), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state):
    keys = np.frombuffer(base64.b64decode(state["keys"]), "<u4").astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _random_states():
    states = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(), "numpy": _numpy_state()}
    if common.mode() == "gpu":
        states["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return states


def _set_random_states(states):
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(states["torch"])), dtype=torch.uint8))
    if "numpy" in states:  # (files written before numpy's state was kept leave it as it is)
        _set_numpy_state(states["numpy"])
    if "cuda" in states and common.mode() == "gpu":
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(states["cuda"])), dtype=torch.uint8))


def worker_state(net):
    """This worker's part of the resume state: its random states and its train net's data positions."""
    return {"random": _random_states(), "data": net_positions(net)}


def encode(nets_positions, workers=None):
    """The wire bytes of the field: the random states now and the given data positions (a list of
    `net_positions`, the train net's first, then the test nets'), and with several workers each
    one's `worker_state` (rank order)."""
    value = {"format": FORMAT, "random": _random_states(), "data": nets_positions}
    if workers:
        value["workers"] = workers
    return _length_delimited(FIELD, json.dumps(value, sort_keys=True).encode())


def decode(data, path):
    """The field's value in the bytes of a .solverstate, or None if it has none (Caffe's)."""
    found = None
    for number, wire, value in _fields(data, 0, len(data)):
        if number == FIELD and wire == 2:
            found = value
    if found is None:
        return None
    try:
        value = json.loads(bytes(data[found[0]:found[1]]))
    except ValueError as e:
        raise ValueError(f"{path}: field {FIELD} (the data positions and random states) is corrupt: {e}") from None
    if value.get("format") != FORMAT:
        raise ValueError(f"{path}: field {FIELD} has format {value.get('format')!r}; this runtime reads {FORMAT}")
    return value


def apply(value, nets, path):
    """Restore the random states and move the data layers of `nets` (train net first) to `value`'s
    positions; without a value (Caffe's .solverstate) say that the data restart."""
    if value is None:
        glog.info("resume_state", f"{path} holds no data positions (written by Caffe?): the data layers "
                                  "read from their start, as in Caffe")
        return
    positions = list(value["data"])
    if len(positions) != len(nets):
        glog.warning("resume_state", f"{path} has data positions for {len(positions)} net(s), the solver has "
                                     f"{len(nets)}; matching them in order")
    workers = value.get("workers") or [{"random": value["random"], "data": positions[0] if positions else {}}]
    count = common.solver_count()
    if len(workers) != count:
        glog.warning("resume_state", f"{path} was written by {len(workers)} worker(s), this run has {count}: "
                                     "every worker continues the random streams and data positions of rank 0")
    mine = workers[common.solver_rank() if len(workers) == count else 0]
    positions[:1] = [mine["data"]]
    for i, (net, net_pos) in enumerate(zip(nets, positions)):
        seek_net(net, net_pos, f"{path} ({'train net' if i == 0 else f'test net #{i - 1}'})")
    _set_random_states(mine["random"])
