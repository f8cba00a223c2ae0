"""The real Caffe's side of bench/bench_vs_caffe.py, run by the real Caffe's python (pycaffe on
PYTHONPATH) as `python -m lib.seed_caffe_worker` in bench/: reads one JSON request a line on
stdin, answers one JSON line on stdout.

    {"op": "blas", "threadpoolctl": "/path/threadpoolctl.py"} -> {"blas": [threadpool_info]}
    {"op": "net", "key": k, "prototxt": p, "phase": "TEST"|"TRAIN", "weights": w, "inputs": {blob: .npy}}
    {"op": "solver", "key": k, "solver": s, "weights": w, "inputs": {blob: .npy}}
    {"op": "run", "key": k, "what": "forward"|"forward_backward"|"step", "save": {what: .npy}}
        what: "blob" / "blob.diff" (a blob's data / diff), "layer/i" / "layer/i.diff" (param blob i's)
    {"op": "time", "key": k, "what": ..., "seconds": s} -> {"calls": n, "elapsed": t}
"""
import importlib.util
import json
import sys

import numpy as np

import caffe

from .timing import time_slice


def blas_info(threadpoolctl_path):
    """threadpoolctl's view of the libraries loaded in this process (the file is pure Python and
    is loaded from the bench's own environment)."""
    spec = importlib.util.spec_from_file_location("threadpoolctl", threadpoolctl_path)
    module = sys.modules["threadpoolctl"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.threadpool_info()


def fill(net, weights, inputs):
    net.copy_from(weights)
    for name, path in inputs.items():
        net.blobs[name].data[...] = np.load(path)


def read(net, what):
    """A blob's data or diff ("blob", "blob.diff"), a param blob's ("layer/i", "layer/i.diff")."""
    name, _, field = what.partition(".")
    if "/" in name:
        layer, index = name.split("/")
        blob = net.params[layer][int(index)]
    else:
        blob = net.blobs[name]
    return blob.diff if field == "diff" else blob.data


def main():
    caffe.set_mode_cpu()
    nets, solvers = {}, {}
    actions = {
        "forward": lambda key: nets[key].forward(),
        "forward_backward": lambda key: (nets[key].forward(), nets[key].backward()),
        "step": lambda key: solvers[key].step(1),
    }
    for line in sys.stdin:
        req = json.loads(line)
        op, reply = req["op"], {}
        if op == "blas":
            reply["blas"] = blas_info(req["threadpoolctl"])
        elif op == "net":
            phase = caffe.TEST if req["phase"] == "TEST" else caffe.TRAIN
            nets[req["key"]] = net = caffe.Net(req["prototxt"], phase)
            fill(net, req["weights"], req["inputs"])
        elif op == "solver":
            solvers[req["key"]] = solver = caffe.get_solver(req["solver"])
            fill(solver.net, req["weights"], req["inputs"])
            nets[req["key"]] = solver.net
        elif op == "run":
            actions[req["what"]](req["key"])
            for what, path in req.get("save", {}).items():
                np.save(path, read(nets[req["key"]], what))
        elif op == "time":
            reply["calls"], reply["elapsed"] = time_slice(lambda: actions[req["what"]](req["key"]), req["seconds"])
        else:
            reply["error"] = f"unknown op {op!r}"
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
