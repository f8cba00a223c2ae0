"""Fidelity as a measured distance from float64: the real Caffe, a 1-ulp-nudged real Caffe, and
our engine (reference path, and as shipped), each against a float64 replay, per blob.

    python bench/fidelity.py [--steps 8] [--batch 32] [--ablate] [--off NAME ...] [--out docs/fidelity.md]

Cases:
  stage1   the seed's stage-1 train net (models/deeppose/deeppose_train_test.prototxt, its Data layers
           replaced by Input layers holding one fixed batch, its Dropout layers left out: their masks
           are random) and its solver (deeppose_solver.prototxt, on the CPU, no test / display /
           snapshot), `--steps` SGD steps from fixed xavier weights: each param blob's change
           (final - initial) and the losses;
  alexnet  BVLC AlexNet's deploy net (batch 10, 227x227, random weights), one forward and one
           backward of a fixed input with a fixed diff on `prob` (force_backward): the outputs, every
           param's gradient and the input's;
  infer    the forward alone (no gradients: our inference path) of AlexNet's and the seed's stage-1
           deploy nets (random weights and BatchNorm statistics), eager and compiled;
  golden   tests/golden's layer cases (forward, and backward where Caffe has one; Dropout in TRAIN and
           the exact layers ArgMax / Accuracy / Threshold left out) and solver cases (the change of
           W and b over 6 steps, the losses).
Engines (each in its own process, bench/fidelity_worker.py, one thread):
  caffe    the real Caffe (BVLC Caffe 1.0 + the DeepPose patches, pycaffe, CPU), `--seed-caffe`;
  nudged   the real Caffe with every initial weight (golden: every input and param) moved one ulp
           toward +inf (np.nextafter): the size of Caffe's own rounding noise, propagated;
  ref      ours, CAFFE_REFERENCE=1 (plain torch, no acceleration);
  accel    ours as shipped (every acceleration its registry turns on here);
  compiled ours as shipped, inference after torch.compile (CAFFE_COMPILE_AFTER=0; infer only);
  f64      ours, reference path in float64 (torch's default dtype double, the nets cast).
The float64 result each is measured against: for stage1 / alexnet / infer, bench/fidelity_replay.py
(plain torch in double with Caffe's rules, independent of the engine; `f64` is then a cross-check);
for golden, `f64`. Distance: relative L2, |x - x64| / |x64| (absolute where |x64| = 0). The check:
neither of our paths farther than 1.5 x the nudged Caffe, per blob.

The real Caffe's results are cached under --cache (keyed by the content of everything they depend
on), as is the float64 replay; ours are recomputed. `--ablate` also runs ours as shipped with each
acceleration off in turn (stage1, alexnet, infer) and tabulates the worst ratios.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "caffe-deeppose", "python"))
sys.path.insert(0, HERE)

from caffe.proto import caffe_pb2  # noqa: E402  (the prototxt reader only: no engine computation)
from caffe.protoio import read_prototxt, write_prototxt, parse_prototxt  # noqa: E402
import fidelity_replay as replay  # noqa: E402

TRAIN_NET = os.path.join(ROOT, "models", "deeppose", "deeppose_train_test.prototxt")
SOLVER = os.path.join(ROOT, "models", "deeppose", "deeppose_solver.prototxt")
DEPLOY = os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt")
GOLDEN = os.path.join(ROOT, "tests", "golden")
WORKER = os.path.join(HERE, "fidelity_worker.py")
LIMIT = 1.5
NOISE = 1e-6  # two float64 computations farther apart than this: the blob is rounding noise in float64 too
# distances under 4 float32 rounding units are a handful of roundings (a scalar, a short sum): between
# two engines their ratio is chance, so the check reads a nudged distance below it as this
FLOOR = 2.0 ** -22
EXACT_TYPES = {"ArgMax", "Accuracy", "Threshold"}
OURS_ENV = ("CAFFE_REFERENCE", "CAFFE_COMPILE", "CAFFE_NATIVE", "CAFFE_COMPILE_AFTER")

ALEXNET = """name: "AlexNet"
layer { name: "data" type: "Input" top: "data" input_param { shape: { dim: 10 dim: 3 dim: 227 dim: 227 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 256 pad: 2 kernel_size: 5 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "norm2" type: "LRN" bottom: "conv2" top: "norm2" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool2" type: "Pooling" bottom: "norm2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 384 pad: 1 kernel_size: 3 } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "conv4" type: "Convolution" bottom: "conv3" top: "conv4"
  convolution_param { num_output: 384 pad: 1 kernel_size: 3 group: 2 } }
layer { name: "relu4" type: "ReLU" bottom: "conv4" top: "conv4" }
layer { name: "conv5" type: "Convolution" bottom: "conv4" top: "conv5"
  convolution_param { num_output: 256 pad: 1 kernel_size: 3 group: 2 } }
layer { name: "relu5" type: "ReLU" bottom: "conv5" top: "conv5" }
layer { name: "pool5" type: "Pooling" bottom: "conv5" top: "pool5" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 4096 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 4096 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 1000 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""


# ------------------------------------------------------------------------------------ helpers
def digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def file_digest(path):
    if path.endswith(".npz"):  # the arrays, not the zip file's own bytes (its timestamps)
        with np.load(path) as z:
            return digest(*(k + digest_obj(z[k]) for k in sorted(z.files)))
    if os.path.isdir(path):
        return digest(*(file_digest(os.path.join(path, f)) + f for f in sorted(os.listdir(path))))
    with open(path, "rb") as f:
        return digest(f.read())


def nudge(a):
    """One ulp toward +inf, in float32; zeros stay 0 (the smallest denormal instead of 0 changes
    rules, e.g. BatchNorm's factor 0 means no statistics, rather than rounding)."""
    a = np.asarray(a, np.float32)
    return np.where(a != 0, np.nextafter(a, np.float32(np.inf)), a)


def save(path, arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def flat_params(params):
    return {f"{layer}/{i}": a for layer, blobs in params.items() for i, a in enumerate(blobs)}


def nested(flat):
    out = {}
    for key in sorted(flat, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        layer, _ = key.rsplit("/", 1)
        out.setdefault(layer, []).append(flat[key])
    return out


def param_shapes(net_param, phase):
    """{layer: [blob shapes]} by building the net with our engine (shapes only)."""
    os.environ.setdefault("CAFFE_REFERENCE", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    path = os.path.join(os.environ["FIDELITY_TMP"], "shapes.prototxt")
    write_prototxt(path, net_param)
    net = caffe.Net(path, caffe.TRAIN if phase == "TRAIN" else caffe.TEST)
    return {layer: [tuple(b.data.shape) for b in blobs] for layer, blobs in net.params.items()}


# ------------------------------------------------------------------------------------ the cases
def stage1_inputs(work, batch):
    """The train net (Input layers, no Dropout), its solver, initial params, one batch."""
    net = read_prototxt(TRAIN_NET, caffe_pb2.NetParameter)
    keep = [lp for lp in net.layer if lp.type not in ("Data", "Dropout")]
    labels = {lp.data_param.label_num for lp in net.layer if lp.type == "Data"}.pop()
    side = 227
    del net.layer[:]
    for name, shape in (("data", (batch, 3, side, side)), ("label", (batch, labels))):
        lp = net.layer.add(name=name, type="Input", top=[name])
        lp.input_param.shape.add(dim=shape)
    net.layer.extend(keep)
    for lp in net.layer:  # ReLU after a removed Dropout: nothing to rewire (Dropout was in place)
        assert all(b != "" for b in lp.bottom)
    paths = {"net": os.path.join(work, f"stage1_b{batch}.prototxt"),
             "solver": os.path.join(work, f"stage1_b{batch}.solver.prototxt")}
    write_prototxt(paths["net"], net)
    solver = read_prototxt(SOLVER, caffe_pb2.SolverParameter)
    solver.solver_mode, solver.display, solver.snapshot = caffe_pb2.SolverParameter.CPU, 0, 0
    solver.snapshot_after_train = False
    for field in ("test_iter", "test_interval"):
        solver.ClearField(field)
    solver.net = paths["net"]
    write_prototxt(paths["solver"], solver)
    rng = np.random.default_rng(1)
    inputs = {"data": ((rng.integers(0, 256, (batch, 3, side, side)) - 127.5) / 256).astype(np.float32),
              "label": rng.normal(0, 40, (batch, labels)).astype(np.float32)}  # offsets in pixels
    params = replay.xavier_params(net, param_shapes(net, "TRAIN"), seed=2)
    paths["inputs"] = save(os.path.join(work, f"stage1_b{batch}_inputs.npz"), inputs)
    paths["params"] = save(os.path.join(work, f"stage1_b{batch}_params.npz"), flat_params(params))
    paths["params_nudged"] = save(os.path.join(work, f"stage1_b{batch}_params_nudged.npz"),
                                  {k: nudge(v) for k, v in flat_params(params).items()})
    return net, solver, params, inputs, paths


def random_params(net_param, shapes, seed):
    """He-scaled gaussian weights, small biases; BatchNorm statistics (mean, variance, factor 1);
    Scale around 1."""
    rng = np.random.default_rng(seed)
    types = {lp.name: lp.type for lp in net_param.layer}
    out = {}
    for layer, blob_shapes in shapes.items():
        blobs = []
        for i, shape in enumerate(blob_shapes):
            if types[layer] == "BatchNorm":
                a = [rng.normal(0, 0.2, shape), rng.uniform(0.5, 2.0, shape), np.ones(shape)][i]
            elif types[layer] == "Scale":
                a = rng.uniform(0.8, 1.2, shape) if i == 0 else rng.normal(0, 0.1, shape)
            elif len(shape) > 1:
                a = rng.normal(0, np.sqrt(2 / (np.prod(shape) / shape[0])), shape)
            else:
                a = rng.normal(0, 0.05, shape)
            blobs.append(np.asarray(a, np.float32))
        out[layer] = blobs
    return out


def deploy_inputs(work, name, text_or_path, batch, seed, force_backward):
    net = read_prototxt(text_or_path, caffe_pb2.NetParameter) if os.path.exists(text_or_path) else \
        parse_prototxt(text_or_path, caffe_pb2.NetParameter(), name)
    net.layer[0].input_param.shape[0].dim[0] = batch
    net.force_backward = force_backward
    path = os.path.join(work, f"{name}_b{batch}{'_fb' if force_backward else ''}.prototxt")
    write_prototxt(path, net)
    params = random_params(net, param_shapes(net, "TEST"), seed)
    shape = tuple(net.layer[0].input_param.shape[0].dim)
    rng = np.random.default_rng(seed + 100)
    inputs = {"data": rng.uniform(-1, 1, shape).astype(np.float32)}
    paths = {"net": path,
             "params": save(os.path.join(work, f"{name}_b{batch}_params.npz"), flat_params(params)),
             "params_nudged": save(os.path.join(work, f"{name}_b{batch}_params_nudged.npz"),
                                   {k: nudge(v) for k, v in flat_params(params).items()}),
             "inputs": save(os.path.join(work, f"{name}_b{batch}_inputs.npz"), inputs)}
    return net, params, inputs, paths


def golden_cases():
    """{case: info} of the measured golden layer cases, and the excluded ones with why."""
    index = json.load(open(os.path.join(GOLDEN, "layers", "index.json")))
    cases, left_out = {}, {}
    for case, info in sorted(index.items()):
        if info["type"] == "Dropout" and info["phase"] == "TRAIN":
            left_out[case] = "Dropout in TRAIN: its mask is random"
            continue
        if info["type"] in EXACT_TYPES:
            left_out[case] = f"{info['type']}: exact (integer or compared) results"
            continue
        arrays = np.load(os.path.join(GOLDEN, "layers", case + ".npz"))
        keys = arrays.files
        cases[case] = dict(phase=info["phase"], backward=info["backward"], type=info["type"],
                           ntop=sum(k.startswith("top_") for k in keys),
                           param_after=any(k.startswith("param_after_") for k in keys),
                           diffs=[k for k in keys if k.startswith("bottomdiff_")])
    return cases, left_out


def golden_arrays(work, cases):
    """The golden inputs (case:bottom_i, param_i, topdiff_i) and their nudged twins: params and the
    bottoms Caffe differentiates (forward-only cases: the non-integer bottoms) one ulp up."""
    plain, nudged = {}, {}
    for case, info in cases.items():
        arrays = np.load(os.path.join(GOLDEN, "layers", case + ".npz"))
        for k in arrays.files:
            if not (k.startswith("bottom_") or k.startswith("param_") and not k.startswith("param_after")
                    or k.startswith("topdiff_")):
                continue
            a = arrays[k]
            plain[f"{case}:{k}"] = a
            move = k.startswith("param_")
            if k.startswith("bottom_"):
                move = (f"bottomdiff_{k.split('_')[1]}" in info["diffs"] if info["backward"]
                        else not np.array_equal(a, np.round(a)))
            nudged[f"{case}:{k}"] = nudge(a) if move else a
    return (save(os.path.join(work, "golden_layers.npz"), plain),
            save(os.path.join(work, "golden_layers_nudged.npz"), nudged))


def golden_solver_arrays(work):
    folder = os.path.join(GOLDEN, "solvers")
    cases = sorted(f[:-len(".solver.prototxt")] for f in os.listdir(folder) if f.endswith(".solver.prototxt"))
    plain, nudged = {}, {}
    for case in cases:
        a = np.load(os.path.join(folder, case + ".npz"))
        for k in ("x", "y", "W0", "b0"):
            plain[f"{case}:{k}"] = a[k]
            nudged[f"{case}:{k}"] = nudge(a[k]) if k in ("W0", "b0") else a[k]
    return cases, (save(os.path.join(work, "golden_solvers.npz"), plain),
                   save(os.path.join(work, "golden_solvers_nudged.npz"), nudged))


# ------------------------------------------------------------------------------------ engines
class Engine:
    def __init__(self, name, label, real=False, nudged=False, env=None, off=(), float64=False):
        self.name, self.label, self.real, self.nudged = name, label, real, nudged
        self.env, self.off, self.float64 = dict(env or {}), list(off), float64

    def command(self, args):
        env = {k: v for k, v in os.environ.items() if k not in OURS_ENV and k != "PYTHONPATH"}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GLOG_minloglevel="2")
        if self.real:
            env["PYTHONPATH"] = os.path.join(args.seed_caffe, "python")
            env["PATH"] = os.path.join(args.seed_caffe, "bin") + os.pathsep + env.get("PATH", "")
            return [os.path.join(args.seed_caffe, "venv", "bin", "python"), WORKER], env
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "caffe-deeppose", "python"), ROOT])
        env.update(self.env)
        return [sys.executable, WORKER], env


def engines(args):
    out = [Engine("caffe", "real Caffe", real=True),
           Engine("nudged", "nudged Caffe", real=True, nudged=True),
           Engine("ref", "ours, reference", env={"CAFFE_REFERENCE": "1"}),
           Engine("accel", "ours, as shipped" + (f" without {', '.join(args.off)}" if args.off else ""),
                  off=args.off),
           Engine("f64", "ours in float64", env={"CAFFE_REFERENCE": "1"}, float64=True)]
    return {e.name: e for e in out}


def run_engine(engine, tasks, args, cache_real):
    """Run `tasks` (dicts without "out") on `engine`; returns {task id: npz path}. The real
    Caffe's results are reused from the cache when everything they depend on is the same."""
    worker_digest = file_digest(WORKER)
    todo, outs = [], {}
    for tid, task in tasks.items():
        deps = [file_digest(v) for k, v in sorted(task.items()) if isinstance(v, str) and os.path.exists(v)]
        key = digest(engine.name, engine.real, engine.float64, engine.off, sorted(engine.env.items()),
                     json.dumps(task, sort_keys=True), worker_digest, *deps)
        out = os.path.join(args.cache, "results", f"{tid}.{engine.name}.{key}.npz")
        outs[tid] = out
        if not ((engine.real and cache_real or args.reuse_ours) and os.path.exists(out)):
            todo.append(dict(task, out=out))
    info = os.path.join(args.cache, "results", f"info.{engine.name}.json")
    if todo or not os.path.exists(info):
        job = {"float64": engine.float64, "off": engine.off if not engine.real else None,
               "info": info, "tasks": todo}
        path = os.path.join(args.cache, f"job.{engine.name}.json")
        with open(path, "w") as f:
            json.dump(job, f, indent=1)
        cmd, env = engine.command(args)
        began = time.time()
        print(f"# {engine.label}: {len(todo)} task(s) ({', '.join(t['id'] for t in todo) or 'library info'})",
              flush=True)
        subprocess.run(cmd + [path], env=env, check=True)
        print(f"#   done in {time.time() - began:.0f} s", flush=True)
    return outs, json.load(open(info))


# ------------------------------------------------------------------------------------ measuring
def distance(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shape {x.shape} vs {ref.shape}")
    norm = np.linalg.norm(ref)
    err = np.linalg.norm(x - ref)
    return (err / norm, False) if norm > 0 else (err, True)


def ratio(ours, nudged, floor=0.0):
    """ours / nudged, the nudged distance taken as at least `floor`."""
    nudged = max(nudged, floor)
    if nudged > 0:
        return ours / nudged
    return 0.0 if ours == 0 else float("inf")


class Table:
    """Rows of (blob, {engine: distance}) for one case."""

    def __init__(self, case, title, columns):
        self.case, self.title, self.columns, self.rows = case, title, columns, []

    def add(self, blob, dists, absolute=False, note=""):
        if dists.get("f64", 0) > NOISE:
            note = (note + "; " if note else "") + "not checked: 0 in exact arithmetic, its float64 value is " \
                "rounding noise (the two float64 computations differ)"
        self.rows.append((blob, dists, absolute, note))

    def ratios(self, floor=FLOOR):
        """[(ours / nudged, engine, blob)] of the checked rows (the nudged distance at least `floor`)."""
        out = []
        for blob, d, _, _ in self.rows:
            if "nudged" in d and d.get("f64", 0) <= NOISE and np.isfinite(d["nudged"]):
                for e in ("ref", "accel", "compiled"):
                    if e in d:
                        out.append((ratio(d[e], d["nudged"], floor), e, blob))
        return out


def stage1_table(outs, solver, net, params, inputs, steps, args):
    r64, losses64 = cached_replay("stage1", lambda: replay.sgd(net, solver, params, inputs, steps), args,
                                  net, solver, params, inputs, steps)
    table = Table("stage1", f"stage 1 train net, {steps} SGD steps, batch {inputs['data'].shape[0]}: "
                  "each param blob's change (final - initial), and the losses", ENGINE_COLUMNS + ["f64"])
    flat0, flat64 = flat_params(params), flat_params(r64)
    results = {e: np.load(p) for e, p in outs.items()}
    for key in flat0:
        change64 = flat64[key].astype(np.float64) - flat0[key]
        if not change64.any():
            continue  # lr_mult 0 and no running statistics: nothing moves
        dists = {"floor": distance(flat64[key].astype(np.float32).astype(np.float64) - flat0[key], change64)[0]}
        for e, res in results.items():
            start = nudge(flat0[key]) if e == "nudged" else flat0[key]
            dists[e], absolute = distance(res[f"final/{key}"].astype(np.float64) - start, change64)
        table.add(key, dists, absolute)
    loss = {e: distance(res["loss"], losses64)[0] for e, res in results.items()}
    loss["floor"] = distance(np.float32(losses64), losses64)[0]
    table.add("loss (each step)", loss)
    return table


def cached_replay(name, fn, args, *deps):
    key = digest(name, file_digest(replay.__file__), *[digest_obj(d) for d in deps])
    path = os.path.join(args.cache, "results", f"{name}.replay.{key}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return nested({k[2:]: z[k] for k in z.files if k.startswith("p:")}), z["loss"]
    print(f"# float64 replay: {name}", flush=True)
    params, losses = fn()
    save(path, dict({"p:" + k: v for k, v in flat_params(params).items()}, loss=np.array(losses)))
    return params, np.array(losses)


def digest_obj(obj):
    if isinstance(obj, dict):
        return digest(*(k + digest_obj(v) for k, v in sorted(obj.items())))
    if isinstance(obj, (list, tuple)):
        return digest(*(digest_obj(v) for v in obj))
    if isinstance(obj, np.ndarray):
        return digest(obj.dtype.str, obj.shape, obj.tobytes())
    if hasattr(obj, "SerializeToString"):
        return digest(obj.SerializeToString(deterministic=True))
    return digest(repr(obj))


def replay_forward(name, net, phase, params, inputs, top_diffs, outputs, args):
    key = digest(name, file_digest(replay.__file__), digest_obj(net), phase, digest_obj(params),
                 digest_obj(inputs), digest_obj(top_diffs), outputs)
    path = os.path.join(args.cache, "results", f"{name}.replay.{key}.npz")
    if not os.path.exists(path):
        print(f"# float64 replay: {name}", flush=True)
        blobs, pdiffs, idiffs = replay.forward_backward(net, phase, params, inputs, top_diffs)
        out = {f"blob/{b}": blobs[b] for b in outputs}
        if top_diffs:
            out.update({f"paramdiff/{k}": v for k, v in flat_params(pdiffs).items()})
            out.update({f"inputdiff/{k}": v for k, v in idiffs.items()})
        save(path, out)
    return dict(np.load(path))


def net_table(case, title, outs, ref64, columns):
    table = Table(case, title, columns)
    results = {e: np.load(p) for e, p in outs.items()}
    for key in ref64:
        dists = {"floor": distance(ref64[key].astype(np.float32), ref64[key])[0]}
        absolute = False
        for e, res in results.items():
            if key in res.files:
                dists[e], absolute = distance(res[key], ref64[key])
        table.add(key.split("/", 1)[1] if key.startswith("blob/") else key, dists, absolute)
    return table


def golden_tables(outs, cases, solver_cases):
    layers = {e: np.load(p) for e, p in outs["golden_layers"].items()}
    f64 = layers.pop("f64")
    table = Table("golden", "golden layer cases (tests/golden/layers): forward tops, BatchNorm's updated "
                  "blobs, bottom and param gradients", ENGINE_COLUMNS)
    for key in f64.files:
        dists = {"floor": distance(f64[key].astype(np.float32), f64[key])[0]}
        absolute = False
        for e, res in layers.items():
            dists[e], absolute = distance(res[key], f64[key])
        table.add(key, dists, absolute, note=cases[key.split(":")[0]]["type"])
    solvers = {e: np.load(p) for e, p in outs["golden_solvers"].items()}
    s64 = solvers.pop("f64")
    stable = Table("golden_solvers", "golden solver cases (tests/golden/solvers): the change of W and b over "
                   "6 steps, the losses", ENGINE_COLUMNS)
    for case in solver_cases:
        a = np.load(os.path.join(GOLDEN, "solvers", case + ".npz"))
        for k, start in (("W", "W0"), ("b", "b0")):
            ref = s64[f"{case}:{k}"][-1].astype(np.float64) - a[start]
            dists = {"floor": distance(s64[f"{case}:{k}"][-1].astype(np.float32).astype(np.float64) - a[start],
                                       ref)[0]}
            for e, res in solvers.items():
                s = nudge(a[start]) if e == "nudged" else a[start]
                dists[e], absolute = distance(res[f"{case}:{k}"][-1].astype(np.float64) - s, ref)
            stable.add(f"{case}: {k} change", dists, absolute)
        loss = {e: distance(res[f"{case}:loss"], s64[f"{case}:loss"])[0] for e, res in solvers.items()}
        loss["floor"] = distance(s64[f"{case}:loss"].astype(np.float32), s64[f"{case}:loss"])[0]
        stable.add(f"{case}: loss", loss)
    return table, stable


ENGINE_COLUMNS = ["floor", "caffe", "nudged", "ref", "accel"]


# ------------------------------------------------------------------------------------ the report
def fmt(x):
    if x == 0:
        return "0"
    if x == float("inf"):
        return "inf"
    return f"{x:.2g}" if x < 1e-3 or x >= 100 else f"{x:.3g}"


def render(tables, infos, labels, args, ablations, golden_left_out, elapsed):
    lines = ["# Fidelity: distance from float64", "",
             "Generated by `bench/fidelity.py` (do not edit by hand). Each number is a relative L2 distance "
             "|x - x64| / |x64| of a blob computed in float32 from the same blob computed in float64 "
             "(absolute where |x64| = 0, marked `abs`). The real Caffe's own distance is its rounding; the "
             "1-ulp-nudged real Caffe (initial weights, for golden cases inputs and params, moved one ulp "
             "toward +inf) shows how far a perturbation of Caffe's own rounding size carries. "
             f"**The check: neither of our paths farther than {LIMIT} x the nudged Caffe, per blob** "
             "(the ratio columns).", "",
             "Reproduce (about 25 minutes on one thread, the real Caffe's results cached after the first run):",
             "```", "export PYTHONPATH=$PWD/caffe-deeppose/python:$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1",
             " ".join(["python bench/fidelity.py"] + args.argv), "```", ""]
    lines += ["Columns: `floor` the float64 result rounded to float32 (no float32 engine can be nearer); " + "; ".join(f"`{k}` {v}" for k, v in labels.items()) + ". float64: "
              "`bench/fidelity_replay.py` (plain torch in double with Caffe's rules, independent of the engine) "
              "for stage1 / alexnet / infer, where `f64` (our reference path run in double) is a cross-check; "
              "for the golden cases `f64` itself.", ""]
    # summary
    summary = ENGINE_COLUMNS[1:] + ["compiled"]
    lines += ["## Summary", "", "| case | worst: " + " | ".join(summary) +
              " | worst ours / nudged | over " + f"{LIMIT} | over {LIMIT} raw |",
              "|" + "---|" * (len(summary) + 4)]
    failures = []
    for t in tables:
        worst = {e: max((d[e] for _, d, a, _ in t.rows if e in d and not a and d.get("f64", 0) <= NOISE),
                        default=None) for e in summary}
        rs, raw = t.ratios(), t.ratios(floor=0.0)
        over = [(r, e, b) for r, e, b in rs if r > LIMIT]
        failures += [(t.case, r, e, b) for r, e, b in over]
        w = max(rs, default=(0, "", ""))
        lines.append(f"| {t.case} | " + " | ".join("—" if worst[e] is None else fmt(worst[e]) for e in summary) +
                     f" | {fmt(w[0])} ({w[1]}, {w[2]}) | {len(over)} of {len(rs)} | "
                     f"{sum(r > LIMIT for r, _, _ in raw)} |")
    lines += ["", f"`over {LIMIT}`: blobs of ours farther than {LIMIT} x the nudged Caffe's distance, that distance "
              f"taken as at least {FLOOR:.2g} (2^-22, four float32 rounding units: below it, a distance is a handful of "
              f"roundings and the ratio of two engines' is chance); `raw`: without that floor. Not checked: blobs "
              f"whose exact value is 0 (the float64 replay and our float64 run differ by over {NOISE:g}: e.g. the "
              f"gradient of a convolution's bias under BatchNorm) and nudged runs that fail (NaN).", ""]
    if failures:
        lines += [f"Over {LIMIT}: " + "; ".join(f"{c} {b} {e} {fmt(r)}" for c, r, e, b in failures[:40]) +
                  (" ..." if len(failures) > 40 else ""), ""]
    else:
        lines += [f"No checked blob of ours is farther than {LIMIT} x the nudged Caffe's distance.", ""]
    if ablations:
        lines += ["## One acceleration off at a time (ours as shipped otherwise; stage1, alexnet, infer)", "",
                  "| off | worst distance | worst ratio to nudged | blobs over " + f"{LIMIT} |", "|---|---|---|---|"]
        for name, (worst, wr, over, n) in ablations.items():
            lines.append(f"| {name} | {fmt(worst)} | {fmt(wr[0])} ({wr[2]}) | {over} of {n} |")
        lines.append("")
    lines += ["## Libraries", ""]
    for e, info in infos.items():
        parts = [f"{k}: {v}" for k, v in info.items() if k in ("cpu", "openblas", "torch", "python")]
        libs = info.get("libraries")
        if isinstance(libs, list):
            parts.append("loaded: " + ", ".join(os.path.basename(l) for l in libs))
        if "accelerations" in info:
            parts.append("accelerations: " + ", ".join(f"{k} {'on' if v == 'on' else 'off'}"
                                                        for k, v in info["accelerations"].items()))
        lines.append(f"- `{e}`: " + "; ".join(parts))
    lines += ["", f"Run time {elapsed / 60:.0f} min.", ""]
    for t in tables:
        cols = [c for c in t.columns if any(c in d for _, d, _, _ in t.rows)]
        ours = [c for c in ("ref", "accel", "compiled") if c in cols]
        lines += [f"## {t.case}: {t.title}", ""]
        if t.case == "golden" and golden_left_out:
            lines += ["Left out: " + "; ".join(f"{c} ({why})" for c, why in golden_left_out.items()) + ".", ""]
        big = len(t.rows) > 60
        if big:
            lines += ["<details><summary>" + f"{len(t.rows)} blobs" + "</summary>", ""]
        lines += ["| blob | " + " | ".join(cols) + " | " + " | ".join(f"{c} / nudged" for c in ours) + " |",
                  "|" + "---|" * (1 + len(cols) + len(ours))]
        for blob, d, absolute, note in t.rows:
            cells = [fmt(d[c]) if c in d else "—" for c in cols]
            rs = []
            for c in ours:
                if c in d and "nudged" in d:
                    r = ratio(d[c], d["nudged"])
                    rs.append(f"**{fmt(r)}**" if ratio(d[c], d["nudged"], FLOOR) > LIMIT else fmt(r))
                else:
                    rs.append("—")
            name = f"{blob} ({note})" if note else blob
            lines.append(f"| {name}{' abs' if absolute else ''} | " + " | ".join(cells + rs) + " |")
        if big:
            lines += ["", "</details>"]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="the stage-1 train net's batch")
    ap.add_argument("--cases", nargs="+", default=["stage1", "alexnet", "infer", "golden"])
    ap.add_argument("--ablate", action="store_true", help="ours as shipped with each acceleration off in turn")
    ap.add_argument("--off", nargs="*", default=[], help="run ours as shipped with these accelerations off")
    ap.add_argument("--seed-caffe", default="/opt/seed-caffe")
    ap.add_argument("--cache", default=os.path.join(ROOT, ".cache", "fidelity"))
    ap.add_argument("--no-cache", action="store_true", help="recompute the real Caffe's results")
    ap.add_argument("--reuse-ours", action="store_true",
                    help="reuse our engine's cached results too (only to re-render after a run)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "fidelity.md"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    began = time.time()
    work = os.path.join(args.cache, "inputs")
    os.makedirs(work, exist_ok=True)
    os.makedirs(os.path.join(args.cache, "results"), exist_ok=True)
    os.environ["FIDELITY_TMP"] = work
    all_engines = engines(args)

    # the tasks each engine runs, and the float64 references
    tasks = {e: {} for e in all_engines}  # engine -> task id -> task

    def add(tid, task, nudged_task=None, only=None):
        for name, e in all_engines.items():
            if only and name not in only:
                continue
            tasks[name][tid] = dict(nudged_task if (e.nudged and nudged_task) else task, id=tid)

    plan = {}
    if "stage1" in args.cases:
        net, solver, params, inputs, p = stage1_inputs(work, args.batch)
        base = dict(kind="sgd", solver=p["solver"], inputs=p["inputs"], steps=args.steps)
        add("stage1", dict(base, params=p["params"]), dict(base, params=p["params_nudged"]))
        plan["stage1"] = (net, solver, params, inputs)
    if "alexnet" in args.cases:
        net, params, inputs, p = deploy_inputs(work, "alexnet", ALEXNET, 10, 3, force_backward=True)
        top_diffs = {"prob": np.random.default_rng(5).normal(0, 1, (10, 1000)).astype(np.float32)}
        p["top_diffs"] = save(os.path.join(work, "alexnet_topdiff.npz"), top_diffs)
        base = dict(kind="net", prototxt=p["net"], phase="TEST", inputs=p["inputs"], top_diffs=p["top_diffs"],
                    outputs=["fc8", "prob"], backward=True)
        add("alexnet", dict(base, params=p["params"]), dict(base, params=p["params_nudged"]))
        plan["alexnet"] = (net, params, inputs, top_diffs)
    if "infer" in args.cases:
        plan["infer"] = []
        for name, src, batch, outputs in (("alexnet", ALEXNET, 10, ["fc8", "prob"]),
                                          ("deploy", DEPLOY, 8, ["predict"])):
            net, params, inputs, p = deploy_inputs(work, name, src, batch, 3 if name == "alexnet" else 4,
                                                   force_backward=False)
            base = dict(kind="net", prototxt=p["net"], phase="TEST", inputs=p["inputs"], outputs=outputs,
                        backward=False)
            tid = f"infer_{name}"
            add(tid, dict(base, params=p["params"]), dict(base, params=p["params_nudged"]))
            tasks["accel"][tid + "_compiled"] = dict(base, params=p["params"], id=tid + "_compiled",
                                                     env={"CAFFE_COMPILE_AFTER": "0"})
            plan["infer"].append((tid, net, params, inputs, outputs))
    golden_left_out, cases, solver_cases = {}, {}, []
    if "golden" in args.cases:
        cases, golden_left_out = golden_cases()
        plain, nudged = golden_arrays(work, cases)
        base = dict(kind="golden_layers", dir=os.path.join(GOLDEN, "layers"), cases=cases)
        add("golden_layers", dict(base, arrays=plain), dict(base, arrays=nudged))
        solver_cases, (splain, snudged) = golden_solver_arrays(work)
        base = dict(kind="golden_solvers", dir=os.path.join(GOLDEN, "solvers"), cases=solver_cases, steps=6)
        add("golden_solvers", dict(base, arrays=splain), dict(base, arrays=snudged))

    outs, infos = {}, {}
    for name, e in all_engines.items():
        if not tasks[name]:
            continue
        res, infos[name] = run_engine(e, tasks[name], args, cache_real=not args.no_cache)
        for tid, path in res.items():
            outs.setdefault(tid, {})[name] = path

    # ablations: ours as shipped, one acceleration off at a time
    ablations = {}
    if args.ablate:
        from caffe import accel
        for acc in accel.REGISTRY:
            if acc == "heap":
                continue  # the allocator's settings: no arithmetic
            e = Engine(f"accel-{acc}", f"ours as shipped without {acc}", off=args.off + [acc])
            todo = {tid: t for tid, t in tasks["accel"].items() if not tid.startswith("golden")}
            res, _ = run_engine(e, todo, args, cache_real=False)
            ablations[acc] = res

    tables = []
    labels = {e.name: e.label for e in all_engines.values()}
    if "infer" in args.cases:
        labels["compiled"] = "ours as shipped, inference after torch.compile (CAFFE_COMPILE_AFTER=0)"
    if "stage1" in args.cases:
        net, solver, params, inputs = plan["stage1"]
        tables.append(stage1_table(outs["stage1"], solver, net, params, inputs, args.steps, args))
    if "alexnet" in args.cases:
        net, params, inputs, top_diffs = plan["alexnet"]
        ref64 = replay_forward("alexnet", net, "TEST", params, inputs, top_diffs, ["fc8", "prob"], args)
        tables.append(net_table("alexnet", "AlexNet deploy (batch 10, random weights): forward outputs, one "
                                "backward of a fixed diff on prob: param and input gradients",
                                outs["alexnet"], ref64, ENGINE_COLUMNS + ["f64"]))
    if "infer" in args.cases:
        for tid, net, params, inputs, outputs in plan["infer"]:
            ref64 = replay_forward(tid, net, "TEST", params, inputs, {}, outputs, args)
            o = dict(outs[tid], compiled=outs[tid + "_compiled"]["accel"])
            tables.append(net_table(tid, f"{'AlexNet' if 'alexnet' in tid else 'the seed stage-1'} deploy net, "
                                    "forward alone (our inference path)", o, ref64,
                                    ENGINE_COLUMNS + ["compiled", "f64"]))
    if "golden" in args.cases:
        tables += golden_tables(outs, cases, solver_cases)

    for acc, res in ablations.items():
        rows = []
        for t in tables:
            if t.case not in ("stage1", "alexnet") and not t.case.startswith("infer"):
                continue
            tid = t.case
            sub = {"caffe": outs[tid]["caffe"], "nudged": outs[tid]["nudged"], "accel": res[tid], "f64": outs[tid]["f64"]}
            if t.case == "stage1":
                net, solver, params, inputs = plan["stage1"]
                tt = stage1_table(sub, solver, net, params, inputs, args.steps, args)
            elif t.case == "alexnet":
                net, params, inputs, top_diffs = plan["alexnet"]
                tt = net_table("alexnet", "", sub, replay_forward("alexnet", net, "TEST", params, inputs, top_diffs,
                                                                   ["fc8", "prob"], args), ENGINE_COLUMNS)
            else:
                _, net, params, inputs, outputs = [x for x in plan["infer"] if x[0] == tid][0]
                sub["compiled"] = res[tid + "_compiled"]
                tt = net_table(tid, "", sub, replay_forward(tid, net, "TEST", params, inputs, {}, outputs, args),
                               ENGINE_COLUMNS + ["compiled"])
            rows.append(tt)
        dists = [d[e] for t in rows for _, d, a, _ in t.rows for e in ("accel", "compiled")
                 if e in d and not a and d.get("f64", 0) <= NOISE]
        rs = [r for t in rows for r in t.ratios()]
        ablations[acc] = (max(dists, default=0), max(rs, default=(0, "", "")), sum(r > LIMIT for r, _, _ in rs),
                          len(rs))

    text = render(tables, infos, labels, args, ablations, golden_left_out, time.time() - began)
    with open(args.out, "w") as f:
        f.write(text)
    print(text.split("## Libraries")[0])
    print(f"# written: {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
