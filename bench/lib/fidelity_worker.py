"""One engine's side of bench/fidelity.py: runs the tasks of a job file through pycaffe's API and
writes each result as an .npz. The same file runs under the real Caffe's python (its pycaffe on
PYTHONPATH) and under ours (caffe-deeppose/python on PYTHONPATH), so both do exactly the same calls.

    python bench/lib/fidelity_worker.py JOB.json

JOB.json: {"float64": false, "off": [acceleration names], "info": path or null, "tasks": [...]}
- "float64" (ours only): torch's default dtype is float64 and every net is cast to it (our
  reference path in double);
- "off" (ours only): these entries of caffe.accel.REGISTRY are made unavailable in this process;
- "info": where to write the JSON of this side's libraries (BLAS, OpenMP, CPU);
- tasks, each with "kind", "out" and optionally "env" (variables set while it runs):
  sgd     {solver, params: npz "layer/i", inputs: npz "blob", steps}
          -> npz "final/layer/i" (the blobs after the steps), "loss" (each step's forward)
  net     {prototxt, phase, params, inputs, top_diffs: npz or null, outputs: [blob], backward, diffs: [blob],
          signs} -> npz "blob/NAME" (with signs: "sign/NAME", np.packbits(data > 0)), and with backward
          "paramdiff/layer/i", "inputdiff/NAME", "blobdiff/NAME"
  golden_layers  {dir, cases: {case: phase}, arrays: npz "case:key" (bottom_i, param_i, topdiff_i)}
          -> npz "case:top_i", "case:param_after_i", "case:bottomdiff_i", "case:paramdiff_i"
  golden_solvers {dir, cases: [case], arrays: npz "case:x|y|W0|b0", steps}
          -> npz "case:W", "case:b" (after each step), "case:loss"
"""
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np


def setup(job):
    """Import caffe (ours or the real one) with the job's switches; returns the module."""
    if job.get("float64"):
        import torch
        torch.set_default_dtype(torch.float64)
    import caffe
    if job.get("off"):
        from caffe import accel
        for name in job["off"]:
            accel.REGISTRY[name].available = lambda: "off (bench/fidelity.py)"
    if hasattr(caffe, "set_mode_cpu"):
        caffe.set_mode_cpu()
    return caffe


def as_float64(net):
    """Our net in double: its module (params and buffers) cast; blobs made later follow the default dtype."""
    if hasattr(net, "module"):
        net.module.double()


def load(path):
    return {} if path is None else dict(np.load(path))


def set_params(net, params):
    for key, value in params.items():
        layer, index = key.rsplit("/", 1)
        net.params[layer][int(index)].data[...] = value


def set_inputs(net, inputs):
    for name, value in inputs.items():
        net.blobs[name].data[...] = value


def run_sgd(caffe, task, f64):
    solver = caffe.get_solver(task["solver"])
    if f64:
        as_float64(solver.net)
    net, inputs = solver.net, load(task["inputs"])
    set_params(net, load(task["params"]))
    losses = []
    for _ in range(task["steps"]):
        set_inputs(net, inputs)
        solver.step(1)
        losses.append(float(net.blobs[loss_top(net)].data))
    out = {"loss": np.array(losses)}
    for layer, blobs in net.params.items():
        for i, b in enumerate(blobs):
            out[f"final/{layer}/{i}"] = np.array(b.data)
    return out


def loss_top(net):
    names = [n for n in net.blobs if n == "loss"] or list(net.outputs)
    return names[0]


def run_net(caffe, task, f64):
    phase = caffe.TEST if task["phase"] == "TEST" else caffe.TRAIN
    net = caffe.Net(task["prototxt"], phase)
    if f64:
        as_float64(net)
    set_params(net, load(task["params"]))
    inputs = load(task["inputs"])
    set_inputs(net, inputs)
    net.forward()
    if task.get("signs"):  # which elements are > 0 (e.g. ReLU tops), one bit each
        out = {f"sign/{name}": np.packbits(net.blobs[name].data > 0) for name in task["outputs"]}
    else:
        out = {f"blob/{name}": np.array(net.blobs[name].data) for name in task["outputs"]}
    if task.get("backward"):
        for blobs in net.params.values():
            for b in blobs:
                b.diff[...] = 0
        for name, diff in load(task.get("top_diffs")).items():
            net.blobs[name].diff[...] = diff
        net.backward()
        for layer, blobs in net.params.items():
            for i, b in enumerate(blobs):
                out[f"paramdiff/{layer}/{i}"] = np.array(b.diff)
        for name in inputs:
            out[f"inputdiff/{name}"] = np.array(net.blobs[name].diff)
        for name in task.get("diffs", []):
            out[f"blobdiff/{name}"] = np.array(net.blobs[name].diff)
    return out


def run_golden_layers(caffe, task, f64):
    """The golden procedure (tests/golden/README.md) on the given arrays, per case."""
    arrays, out = load(task["arrays"]), {}
    cwd = os.getcwd()
    os.chdir(task["dir"])  # paths inside the layer nets are relative to it
    try:
        for case, info in task["cases"].items():
            mine = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.split(":", 1)[0] == case}
            net = caffe.Net(case + ".prototxt", caffe.TEST if info["phase"] == "TEST" else caffe.TRAIN)
            if f64:
                as_float64(net)
            blobs = net.params["layer"] if "layer" in net.params else []
            bottoms = sorted(k for k in mine if k.startswith("bottom_"))
            for k in bottoms:
                net.blobs[k].data[...] = mine[k]
                net.blobs[k].diff[...] = 0
            for i, b in enumerate(blobs):
                b.data[...] = mine[f"param_{i}"]
                b.diff[...] = 0
            net.forward()
            tops = sorted(k for k in mine if k.startswith("top_") or k.startswith("topdiff_"))
            for k in range(info["ntop"]):
                out[f"{case}:top_{k}"] = np.array(net.blobs[f"top_{k}"].data)
            for i, b in enumerate(blobs):
                if info.get("param_after"):
                    out[f"{case}:param_after_{i}"] = np.array(b.data)
            if info["backward"]:
                for k in (t for t in tops if t.startswith("topdiff_")):
                    net.blobs["top_" + k.split("_")[1]].diff[...] = mine[k]
                net.backward()
                for k in bottoms:
                    if f"bottomdiff_{k.split('_')[1]}" in info["diffs"]:
                        out[f"{case}:bottomdiff_{k.split('_')[1]}"] = np.array(net.blobs[k].diff)
                for i, b in enumerate(blobs):
                    out[f"{case}:paramdiff_{i}"] = np.array(b.diff)
    finally:
        os.chdir(cwd)
    return out


def run_golden_solvers(caffe, task, f64):
    arrays, out = load(task["arrays"]), {}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "solvers")
        shutil.copytree(task["dir"], folder)
        os.chdir(folder)  # the solver files name net.prototxt relatively; snapshots land here
        try:
            for case in task["cases"]:
                a = {k: arrays[f"{case}:{k}"] for k in ("x", "y", "W0", "b0")}
                solver = caffe.get_solver(f"{case}.solver.prototxt")
                net = solver.net
                if f64:
                    as_float64(net)
                net.params["fc"][0].data[...] = a["W0"]
                net.params["fc"][1].data[...] = a["b0"]
                seen = {"W": [], "b": [], "loss": []}
                for _ in range(task["steps"]):
                    net.blobs["x"].data[...] = a["x"]
                    net.blobs["y"].data[...] = a["y"]
                    solver.step(1)
                    seen["loss"].append(float(net.blobs["loss"].data))
                    seen["W"].append(np.array(net.params["fc"][0].data))
                    seen["b"].append(np.array(net.params["fc"][1].data))
                for k, v in seen.items():
                    out[f"{case}:{k}"] = np.array(v)
        finally:
            os.chdir(cwd)
    return out


def libraries():
    """This process's view of its numerical libraries: the BLAS / LAPACK / OpenMP / oneDNN shared
    objects it loaded (from /proc/self/maps), OpenBLAS's own configuration, torch's build."""
    info = {"python": sys.version.split()[0], "numpy": np.__version__}
    try:
        maps = open("/proc/self/maps").read()
        libs = sorted({m for m in re.findall(r"(/\S+\.so[.\d]*)", maps)
                       if re.search(r"blas|lapack|mkl|omp|dnnl|atlas", os.path.basename(m))})
        info["libraries"] = [os.path.realpath(m) for m in libs]
        import ctypes
        blas = []
        for path in libs:
            if "openblas" not in os.path.basename(path):
                continue
            lib = ctypes.CDLL(path)
            for suffix in ("", "64_"):  # numpy's bundled OpenBLAS suffixes its symbols
                config = getattr(lib, "openblas_get_config" + suffix, None)
                threads = getattr(lib, "openblas_get_num_threads" + suffix, None)
                if config is not None and threads is not None:
                    config.restype = ctypes.c_char_p
                    blas.append(f"{os.path.basename(os.path.realpath(path))}: {config().decode().strip()}, "
                                f"{threads()} thread(s)")
                    break
        if blas:
            info["openblas"] = "; ".join(blas)
    except OSError as e:
        info["libraries"] = f"unknown ({e})"
    if "torch" in sys.modules:
        import torch
        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} thread(s), BLAS " \
                        f"{'MKL' if torch.backends.mkl.is_available() else 'other'}, oneDNN " \
                        f"{'on' if torch.backends.mkldnn.is_available() else 'off'}, CPU capability " \
                        f"{torch.backends.cpu.get_cpu_capability()}"
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        info["cpu"] = f"{cpu[0]} ({len(cpu)} logical)" if cpu else "unknown"
    except OSError:
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CAFFE_REFERENCE"):
        info[var] = os.environ.get(var)
    return info


def main():
    job = json.load(open(sys.argv[1]))
    caffe = setup(job)
    runners = {"sgd": run_sgd, "net": run_net, "golden_layers": run_golden_layers,
               "golden_solvers": run_golden_solvers}
    for task in job["tasks"]:
        saved = {k: os.environ.get(k) for k in task.get("env", {})}
        os.environ.update(task.get("env", {}))
        result = runners[task["kind"]](caffe, task, job.get("float64", False))
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
        tmp = task["out"] + ".tmp.npz"
        np.savez(tmp, **result)
        os.replace(tmp, task["out"])
    if job.get("info"):
        info = libraries()
        if job.get("off") is not None and "caffe.accel" in sys.modules:
            from caffe import accel
            info["accelerations"] = {name: a.why_off() or "on" for name, a in accel.REGISTRY.items()}
        with open(job["info"], "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
