"""Fidelity as a measured distance from float64: the real Caffe, a 1-ulp-nudged real Caffe, and
our engine (reference path, and as shipped), each against a float64 replay, per blob.

    python bench/fidelity.py [--steps 8] [--batch 32] [--cases ...] [--draws 16] [--ablate] [--off NAME ...]
                             [--out docs/fidelity.md]

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
           W and b over 6 steps, the losses);
  relu     AlexNet's forward on `--draws` random inputs: how many ReLU decisions each engine takes
           against float64 (a count, not a distance: see docs/fidelity.md).
Engines (each in its own process, bench/lib/fidelity_worker.py, one thread):
  caffe    the real Caffe (BVLC Caffe 1.0 + the DeepPose patches, pycaffe, CPU), `--seed-caffe`;
  nudged   the real Caffe with every initial weight (golden: every input and param) moved one ulp
           toward +inf (np.nextafter): the size of Caffe's own rounding noise, propagated;
  ref      ours, CAFFE_REFERENCE=1 (plain torch, no acceleration);
  accel    ours as shipped (every acceleration its registry turns on here);
  compiled ours as shipped, inference after torch.compile (CAFFE_COMPILE_AFTER=0; infer only);
  f64      ours, reference path in float64 (torch's default dtype double, the nets cast).
The float64 result each is measured against: for stage1 / alexnet / infer, bench/lib/fidelity_replay.py
(plain torch in double with Caffe's rules, independent of the engine; `f64` is then a cross-check);
for golden, `f64`. Distance: relative L2, |x - x64| / |x64| (absolute where |x64| = 0). The check:
neither of our paths farther than 1.5 x the nudged Caffe, per blob.

Each engine's arrays are measured as soon as its worker is done and deleted (the stage-1 net and
AlexNet hold 60 M params: 240 MB an array set); the real Caffe's distances are cached under --cache
(keyed by the content of everything they depend on: the inputs, the worker, the float64 result),
ours are recomputed, and so is the float64 replay (a few minutes). `--ablate` also runs ours as
shipped with each acceleration switched in turn (off, or on for those off by default; stage1,
alexnet, infer) and tabulates each variant's median distance and worst ratio.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "caffe-deeppose", "python"))
sys.path.insert(0, HERE)

from caffe.proto import caffe_pb2  # noqa: E402  (the prototxt reader only: no engine computation)
from caffe.formats.protoio import read_prototxt, write_prototxt, parse_prototxt  # noqa: E402
from lib import fidelity_replay as replay  # noqa: E402

TRAIN_NET = os.path.join(ROOT, "models", "deeppose", "deeppose_train_test.prototxt")
SOLVER = os.path.join(ROOT, "models", "deeppose", "deeppose_solver.prototxt")
DEPLOY = os.path.join(ROOT, "models", "deeppose", "deeppose.prototxt")
GOLDEN = os.path.join(ROOT, "tests", "golden")
WORKER = os.path.join(HERE, "lib", "fidelity_worker.py")
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


def nudge(a):
    """One ulp toward +inf, in float32; zeros stay 0 (the smallest denormal instead of 0 changes
    rules, e.g. BatchNorm's factor 0 means no statistics, rather than rounding)."""
    a = np.asarray(a, np.float32)
    return np.where(a != 0, np.nextafter(a, np.float32(np.inf)), a)


SAMPLES = ("up", "down", "r1", "r2")  # the perturbations each engine's spread is measured over


def perturb(a, kind, name=""):
    """`a` in float32, its nonzero elements moved one ulp: "up" toward +inf (`nudge`), "down"
    toward -inf, "r<k>" each in a random direction (seeded by k and `name`)."""
    a = np.asarray(a, np.float32)
    if kind is None:
        return a
    if kind == "up":
        return nudge(a)
    if kind == "down":
        toward = np.float32(-np.inf)
    else:
        rng = np.random.default_rng([int(kind[1:]), zlib.crc32(name.encode())])
        toward = np.where(rng.integers(0, 2, a.shape, dtype=np.int8) == 1, np.float32(np.inf), np.float32(-np.inf))
    return np.where(a != 0, np.nextafter(a, toward), a)


def sample_params(work, stem, flat):
    """{kind: npz path} of the params under each of SAMPLES."""
    return {kind: save(os.path.join(work, f"{stem}_params_{kind}.npz"), {k: perturb(v, kind, k) for k, v in flat.items()})
            for kind in SAMPLES}


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
    paths["samples"] = sample_params(work, f"stage1_b{batch}", flat_params(params))
    paths["params_nudged"] = paths["samples"]["up"]
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


def deploy_inputs(work, name, text_or_path, batch, seed, force_backward, samples=False):
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
             "inputs": save(os.path.join(work, f"{name}_b{batch}_inputs.npz"), inputs)}
    if samples:
        paths["samples"] = sample_params(work, f"{name}_b{batch}", flat_params(params))
        paths["params_nudged"] = paths["samples"]["up"]
    else:
        paths["params_nudged"] = save(os.path.join(work, f"{name}_b{batch}_params_up.npz"),
                                      {k: nudge(v) for k, v in flat_params(params).items()})
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
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GLOG_minloglevel="2",
                   GLOG_logtostderr="1")
        if self.real:
            env["PYTHONPATH"] = os.path.join(args.seed_caffe, "python")
            env["PATH"] = os.path.join(args.seed_caffe, "bin") + os.pathsep + env.get("PATH", "")
            return [os.path.join(args.seed_caffe, "venv", "bin", "python"), WORKER], env
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "caffe-deeppose", "python"), ROOT])
        env.update(self.env)
        return [sys.executable, WORKER], env

    def key(self):
        return digest(self.name, self.real, self.float64, self.off, sorted(self.env.items()))


def run_worker(engine, tasks, args, info=None):
    """Run `tasks` ({id: task without "out"}) in one process of `engine`; returns {id: npz path}."""
    outs = {tid: os.path.join(args.cache, "work", f"{tid}.{engine.name}.npz") for tid in tasks}
    job = {"float64": engine.float64, "off": None if engine.real else engine.off, "info": info,
           "tasks": [dict(t, out=outs[tid]) for tid, t in tasks.items()]}
    path = os.path.join(args.cache, "work", f"job.{engine.name}.json")
    with open(path, "w") as f:
        json.dump(job, f, indent=1)
    cmd, env = engine.command(args)
    began = time.time()
    print(f"# {engine.label}: {', '.join(tasks) or 'library info'}", flush=True)
    subprocess.run(cmd + [path], env=env, check=True)
    print(f"#   {time.time() - began:.0f} s", flush=True)
    return outs


def measure(engine, cases, args):
    """Each case's distances ({row: (distance, absolute)}) for `engine`, from its worker's results
    (deleted once measured). The real Caffe's are cached under --cache/dists, keyed by everything
    they depend on (the task's files, the worker, the float64 reference)."""
    worker_digest = file_digest(WORKER)
    dists, todo, cached = {}, {}, {}
    for case in cases:
        for tid, task in case.tasks(engine).items():
            deps = [file_digest(v) for _, v in sorted(task.items()) if isinstance(v, str) and os.path.exists(v)]
            key = digest(engine.key(), json.dumps(task, sort_keys=True), worker_digest, case.ref_digest, *deps)
            cached[tid] = os.path.join(args.cache, "dists", f"{tid}.{engine.name}.{key}.json")
            if engine.real and not args.no_cache and os.path.exists(cached[tid]):
                dists[tid] = json.load(open(cached[tid]))
            else:
                todo[tid] = task
    info = os.path.join(args.cache, "dists" if engine.real else "work", f"info.{engine.name}.json")
    if todo or not os.path.exists(info):
        outs = run_worker(engine, todo, args, info)
        for case in cases:
            for tid in case.tasks(engine):
                if tid in outs:
                    with np.load(outs[tid]) as z:
                        dists[tid] = case.distances(z, engine, tid)
                    os.remove(outs[tid])
                    if engine.real:
                        for old in glob.glob(os.path.join(args.cache, "dists", f"{tid}.{engine.name}.*.json")):
                            os.remove(old)
                        with open(cached[tid], "w") as f:
                            json.dump(dists[tid], f)
    for case in cases:  # each row's mean over the perturbed runs
        runs = [dists[t] for t in case.tasks(engine) if t.startswith(case.tid + "@")]
        if runs:
            dists[case.tid + "~"] = {row: (float(np.mean([r[row][0] for r in runs])), runs[0][row][1])
                                     for row in runs[0]}
    return dists, json.load(open(info))


# ------------------------------------------------------------------------------------ measuring
def distance(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shape {x.shape} vs {ref.shape}")
    norm = np.linalg.norm(ref)
    err = np.linalg.norm(x - ref)
    return (float(err / norm), False) if norm > 0 else (float(err), True)


def ratio(ours, nudged, floor=0.0):
    """ours / nudged, the nudged distance taken as at least `floor`."""
    nudged = max(nudged, floor)
    if nudged > 0:
        return ours / nudged
    return 0.0 if ours == 0 else float("inf")


class Case:
    """One table: its tasks per engine, the float64 reference, each engine's distances from it.
    `rows` ({row: note}) in order; `floor()` the reference rounded to float32. With `samples`
    ({kind: params npz}), the real Caffe and ours also run from each perturbation of the initial
    weights (SAMPLES): their mean distances are the columns `caffe~`, `ref~`, `accel~`."""
    columns = ["floor", "caffe", "nudged", "ref", "accel", "f64"]
    ref_digest = ""
    samples = {}

    def tasks(self, engine):
        if engine.nudged:
            return {self.tid: self.task_nudged}
        out = {self.tid: self.task}
        if self.samples and engine.name != "f64":
            out.update({f"{self.tid}@{kind}": dict(self.task, params=path) for kind, path in self.samples.items()})
        return out

    def start_kind(self, engine, tid):
        """The perturbation a run started from: None, or one of SAMPLES."""
        return "up" if engine.nudged else (tid.split("@", 1)[1] if "@" in tid else None)

    def table(self, dists):
        """{engine: {tid: {row: (d, absolute)}}} -> Table."""
        t = Table(self.tid, self.title, self.columns + (["caffe~", "ref~", "accel~"] if self.samples else []))
        floor = self.floor()
        for row, note in self.rows.items():
            d, absolute = {"floor": floor[row]}, False
            for e, per_task in dists.items():
                for tid, rows in per_task.items():
                    col = {self.tid: e, self.tid + "_compiled": "compiled", self.tid + "~": e + "~"}.get(tid)
                    if col is not None and row in rows:
                        d[col], absolute = rows[row]
            t.add(row, d, absolute, note)
        return t


class Stage1(Case):
    def __init__(self, work, args):
        self.tid = "stage1"
        net, solver, params, inputs, p = stage1_inputs(work, args.batch)
        self.title = (f"the seed's stage-1 train net, {args.steps} SGD steps, batch {args.batch}: each param blob's "
                      "change (final - initial), and the losses")
        base = dict(kind="sgd", solver=p["solver"], inputs=p["inputs"], steps=args.steps)
        self.task, self.task_nudged = dict(base, params=p["params"]), dict(base, params=p["params_nudged"])
        self.samples = p["samples"]
        began = time.time()
        print("# float64 replay: stage1", flush=True)
        final64, losses64 = replay.sgd(net, solver, params, inputs, args.steps)
        print(f"#   {time.time() - began:.0f} s", flush=True)
        self.flat0 = flat_params(params)
        flat64 = flat_params(final64)
        self.change64 = {k: flat64[k].astype(np.float64) - self.flat0[k] for k in self.flat0}
        self.final64 = {k: flat64[k].astype(np.float32) for k in self.flat0}
        self.losses64 = np.array(losses64)
        self.ref_digest = digest(digest_obj(flat64), digest_obj(self.losses64))
        self.rows = {k: "" for k in self.flat0 if self.change64[k].any()}  # a blob that does not move: no row
        self.rows["loss (each step)"] = ""

    def floor(self):
        out = {k: distance(self.final64[k].astype(np.float64) - self.flat0[k], self.change64[k])[0]
               for k in self.rows if k in self.change64}
        out["loss (each step)"] = distance(np.float32(self.losses64), self.losses64)[0]
        return out

    def distances(self, z, engine, tid):
        out, kind = {}, self.start_kind(engine, tid)
        for k in self.rows:
            if k in self.change64:
                start = perturb(self.flat0[k], kind, k)
                out[k] = distance(z[f"final/{k}"].astype(np.float64) - start, self.change64[k])
        out["loss (each step)"] = distance(z["loss"], self.losses64)
        return out


class Net(Case):
    """A deploy net's forward (and with `top_diffs` one backward), against the float64 replay."""

    def __init__(self, tid, title, work, name, source, batch, seed, outputs, top_diffs=None, compiled=False,
                 samples=False):
        self.tid, self.title = tid, title
        net, params, inputs, p = deploy_inputs(work, name, source, batch, seed, force_backward=bool(top_diffs),
                                               samples=samples)
        self.samples = p.get("samples", {})
        base = dict(kind="net", prototxt=p["net"], phase="TEST", inputs=p["inputs"], outputs=outputs,
                    backward=bool(top_diffs))
        if top_diffs:
            top_diffs = {k: np.random.default_rng(seed + 5).normal(0, 1, v).astype(np.float32)
                         for k, v in top_diffs.items()}
            base["top_diffs"] = save(os.path.join(work, f"{tid}_topdiff.npz"), top_diffs)
        self.task, self.task_nudged = dict(base, params=p["params"]), dict(base, params=p["params_nudged"])
        self.compiled = compiled
        if compiled:
            self.columns = Case.columns[:5] + ["compiled", "f64"]
        began = time.time()
        print(f"# float64 replay: {tid}", flush=True)
        blobs, pdiffs, idiffs = replay.forward_backward(net, "TEST", params, inputs, top_diffs or {})
        print(f"#   {time.time() - began:.0f} s", flush=True)
        self.ref = {f"blob/{b}": blobs[b] for b in outputs}
        if top_diffs:
            self.ref.update({f"paramdiff/{k}": v for k, v in flat_params(pdiffs).items()})
            self.ref.update({f"inputdiff/{k}": v for k, v in idiffs.items()})
        self.ref_digest = digest_obj(self.ref)
        self.rows = {k.split("/", 1)[1] if k.startswith("blob/") else k: "" for k in self.ref}
        self.params_path, self.prototxt = p["params"], p["net"]

    def tasks(self, engine):
        out = Case.tasks(self, engine)
        if self.compiled and engine.name.startswith("accel"):  # the inference path after torch.compile
            out[self.tid + "_compiled"] = dict(self.task, env={"CAFFE_COMPILE_AFTER": "0"})
        return out

    def floor(self):
        return {self._row(k): distance(v.astype(np.float32), v)[0] for k, v in self.ref.items()}

    @staticmethod
    def _row(k):
        return k.split("/", 1)[1] if k.startswith("blob/") else k

    def distances(self, z, engine, tid):
        return {self._row(k): distance(z[k], v) for k, v in self.ref.items()}


class GoldenLayers(Case):
    columns = ["floor", "caffe", "nudged", "ref", "accel"]

    def __init__(self, work):
        self.tid = "golden_layers"
        self.title = ("the golden layer cases (tests/golden/layers): forward tops, BatchNorm's updated blobs, bottom "
                      "and param gradients; float64: ours in float64")
        self.cases, self.left_out = golden_cases()
        plain, nudged = golden_arrays(work, self.cases)
        base = dict(kind="golden_layers", dir=os.path.join(GOLDEN, "layers"), cases=self.cases)
        self.task, self.task_nudged = dict(base, arrays=plain), dict(base, arrays=nudged)

    def set_reference(self, z):
        self.ref = {k: z[k] for k in z.files}
        self.ref_digest = digest_obj(self.ref)
        self.rows = {k: self.cases[k.split(":")[0]]["type"] for k in self.ref}

    def floor(self):
        return {k: distance(v.astype(np.float32), v)[0] for k, v in self.ref.items()}

    def distances(self, z, engine, tid):
        return {k: distance(z[k], v) for k, v in self.ref.items()}


class GoldenSolvers(Case):
    columns = ["floor", "caffe", "nudged", "ref", "accel"]

    def __init__(self, work):
        self.tid = "golden_solvers"
        self.title = "the golden solver cases (tests/golden/solvers): the change of W and b over 6 steps, the losses"
        self.cases, (plain, nudged) = golden_solver_arrays(work)
        base = dict(kind="golden_solvers", dir=os.path.join(GOLDEN, "solvers"), cases=self.cases, steps=6)
        self.task, self.task_nudged = dict(base, arrays=plain), dict(base, arrays=nudged)
        self.start = {c: np.load(os.path.join(GOLDEN, "solvers", c + ".npz")) for c in self.cases}

    def set_reference(self, z):
        self.ref = {k: z[k] for k in z.files}
        self.ref_digest = digest_obj(self.ref)
        self.rows = {f"{c}: {r}": "" for c in self.cases for r in ("W change", "b change", "loss")}

    def _values(self, z, nudged):
        out = {}
        for c in self.cases:
            for k, start in (("W", "W0"), ("b", "b0")):
                s = nudge(self.start[c][start]) if nudged else self.start[c][start]
                out[f"{c}: {k} change"] = z[f"{c}:{k}"][-1].astype(np.float64) - s
            out[f"{c}: loss"] = z[f"{c}:loss"]
        return out

    def floor(self):
        ref = self._values(self.ref, False)
        rounded = self._values({k: v.astype(np.float32) for k, v in self.ref.items()}, False)
        return {k: distance(rounded[k], ref[k])[0] for k in ref}

    def distances(self, z, engine, tid):
        ref, mine = self._values(self.ref, False), self._values(z, engine.nudged)
        return {k: distance(mine[k], ref[k]) for k in ref}


class Table:
    """Rows of (row, {engine: distance}, absolute, note) for one case."""

    def __init__(self, case, title, columns):
        self.case, self.title, self.columns, self.rows = case, title, columns, []

    def add(self, blob, dists, absolute=False, note=""):
        if dists.get("f64", 0) > NOISE:
            note = (note + "; " if note else "") + "not checked: 0 in exact arithmetic, its float64 value is " \
                "rounding noise (the two float64 computations differ)"
        self.rows.append((blob, dists, absolute, note))

    def checked(self, d, base="nudged"):
        return base in d and d.get("f64", 0) <= NOISE and np.isfinite(d[base])

    def ratios(self, floor=FLOOR, engines=("ref", "accel", "compiled"), spread=False):
        """[(ours / nudged, engine, row)] of the checked rows (the nudged distance at least `floor`);
        with `spread`, the means over the perturbed runs: ours~ / caffe~."""
        base, suffix = ("caffe~", "~") if spread else ("nudged", "")
        return [(ratio(d[e + suffix], d[base], floor), e + suffix, blob) for blob, d, _, _ in self.rows
                if self.checked(d, base) for e in engines if e + suffix in d]


def summary(table):
    """(median distance of ours as shipped over the checked rows, its worst ratio to the nudged Caffe
    and how many over LIMIT, and the same over the perturbed runs where the case has them)."""
    dists = [d[e] for _, d, a, _ in table.rows for e in ("compiled", "accel")
             if e in d and not a and table.checked(d)]
    out = [float(np.median(dists)) if dists else 0.0]
    for spread in (False, True):
        rs = table.ratios(engines=("accel", "compiled"), spread=spread)
        out += [max(rs, default=None), sum(r > LIMIT for r, _, _ in rs)]
    return out


RELU_BLOBS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]


def relu_decisions(alexnet, engines_, args, work):
    """AlexNet's forward (force_backward: our training path) with the alexnet case's weights on
    `args.draws` random inputs: per engine, how many ReLU decisions (top > 0 or not) differ from
    float64's, per draw."""
    import torch
    net = read_prototxt(alexnet.prototxt, caffe_pb2.NetParameter)
    params = nested(dict(np.load(alexnet.params_path)))
    tasks, refs = {}, {}
    print(f"# float64 replay: {args.draws} AlexNet forwards", flush=True)
    for seed in range(100, 100 + args.draws):
        shape = tuple(net.layer[0].input_param.shape[0].dim)
        inputs = {"data": np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}
        tid = f"relu{seed}"
        tasks[tid] = dict(kind="net", prototxt=alexnet.prototxt, phase="TEST", params=alexnet.params_path,
                          inputs=save(os.path.join(work, f"{tid}_inputs.npz"), inputs), outputs=RELU_BLOBS,
                          backward=False, signs=True)
        with torch.no_grad():
            blobs = replay.Replay(net, "TEST", params).forward(inputs)
        refs[tid] = {b: np.packbits(blobs[b].numpy() > 0) for b in RELU_BLOBS}
    ref_digest = digest_obj(refs)
    counts = {}
    for name, e in engines_.items():
        cached = os.path.join(args.cache, "dists", f"relu.{name}.{digest(e.key(), ref_digest, file_digest(WORKER))}.json")
        if e.real and not args.no_cache and os.path.exists(cached):
            counts[name] = json.load(open(cached))
            continue
        outs = run_worker(e, tasks, args)
        counts[name] = []
        for tid in tasks:
            with np.load(outs[tid]) as z:
                counts[name].append(sum(int(np.unpackbits(z[f"sign/{b}"] ^ refs[tid][b]).sum()) for b in RELU_BLOBS))
            os.remove(outs[tid])
        if e.real:
            with open(cached, "w") as f:
                json.dump(counts[name], f)
    return counts


# ------------------------------------------------------------------------------------ the report
def fmt(x):
    if x == 0:
        return "0"
    if x == float("inf"):
        return "inf"
    if x != x:
        return "nan"
    return f"{x:.2g}" if x < 1e-3 or x >= 100 else f"{x:.3g}"


def _commit():
    """The repository's commit (short hash, "+changes" if the work tree differs), or None."""
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "-uno") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def render(tables, infos, labels, args, ablations, golden_left_out, elapsed, relu):
    lines = ["# Fidelity: distance from float64", "",
             "Generated by `bench/fidelity.py` (do not edit by hand). Each number is a relative L2 distance "
             "|x - x64| / |x64| of a blob computed in float32 from the same blob computed in float64 "
             "(absolute where |x64| = 0, marked `abs`). The real Caffe's own distance is its rounding; the "
             "1-ulp-nudged real Caffe (every nonzero initial weight, for golden cases every input and param, "
             "moved one ulp toward +inf) shows how far a perturbation of the size of Caffe's own rounding carries. "
             f"**The check: neither of our paths farther than {LIMIT} x the nudged Caffe, per blob** "
             "(the ratio columns).", "",
             "Reproduce (one thread each side; the real Caffe's distances are cached in `--cache`):",
             "```", "export PYTHONPATH=$PWD/caffe-deeppose/python:$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1",
             " ".join(["python bench/fidelity.py"] + args.argv), "```", ""]
    lines += ["Columns: `floor` the float64 result rounded to float32 (no float32 engine can be nearer); " +
              "; ".join(f"`{k}` {v}" for k, v in labels.items()) + ". The float64 result: "
              "`bench/lib/fidelity_replay.py` (plain torch in double with Caffe's rules, independent of the engine) "
              "for stage1 / alexnet / infer, where `f64` (our reference path run in double) is a cross-check "
              "(its 3e-8 on the SGD steps: the solver rounds its rates to float32, as Caffe's does); for the golden "
              "cases `f64` itself.", ""]
    summary_cols = ["caffe", "nudged", "ref", "accel", "compiled"]
    lines += ["## Summary", "", "Worst distance per engine (checked rows); the worst ratio of ours to the nudged Caffe, and "
              f"how many rows over {LIMIT}: against the one nudged run, and against the mean over the {len(SAMPLES)} "
              "perturbed runs (`~`, stage1 and alexnet).", "",
              "| case | " + " | ".join(summary_cols) + f" | worst ours / nudged | over {LIMIT} | over {LIMIT} raw | "
              f"worst ours~ / caffe~ | over {LIMIT} |", "|" + "---|" * (len(summary_cols) + 6)]
    failures = []
    for t in tables:
        worst = {e: max((d[e] for _, d, a, _ in t.rows if e in d and not a and t.checked(d)), default=None)
                 for e in summary_cols}
        rs, raw, spread = t.ratios(), t.ratios(floor=0.0), t.ratios(spread=True)
        over = [(r, e, b) for r, e, b in rs if r > LIMIT]
        over_spread = [(r, e, b) for r, e, b in spread if r > LIMIT]
        failures += [(t.case, r, e, b) for r, e, b in over + over_spread]
        w, ws = max(rs, default=(0, "", "")), max(spread, default=None)
        lines.append(f"| {t.case} | " + " | ".join("—" if worst[e] is None else fmt(worst[e]) for e in summary_cols) +
                     f" | {fmt(w[0])} ({w[1]}, {w[2]}) | {len(over)} of {len(rs)} | "
                     f"{sum(r > LIMIT for r, _, _ in raw)} | " +
                     (f"{fmt(ws[0])} ({ws[1]}, {ws[2]}) | {len(over_spread)} of {len(spread)} |" if ws else "— | — |"))
    lines += ["", f"`over {LIMIT}`: rows of ours farther than {LIMIT} x the nudged Caffe's distance, that distance "
              f"taken as at least {FLOOR:.2g} (2^-22, four float32 rounding units: below it a distance is a handful of "
              f"roundings, a scalar or a short sum, and two engines' ratio is chance); `raw`: without that floor. "
              f"`~`: the mean distance over the runs from the initial weights perturbed by one ulp in {len(SAMPLES)} "
              "ways (all up, the nudged run; all down; two of random directions), the real Caffe's and ours: where a "
              "blob's distance is a few chance events (ReLU and max-pooling decisions taken against float64), one "
              "run is one draw of it, and the mean over several is what an engine is compared by. "
              f"Rows not checked: those whose exact value is 0 (the float64 replay and our float64 run differ by "
              f"over {NOISE:g}: the gradient of a convolution's bias under BatchNorm) and nudged runs that fail (NaN).",
              ""]
    if failures:
        lines += [f"Over {LIMIT}: " + "; ".join(f"{c} {b} {e} {fmt(r)}" for c, r, e, b in failures[:40]) +
                  (" ..." if len(failures) > 40 else "") + ".", ""]
        by_row = {(t.case, blob): d for t in tables for blob, d, _, _ in t.rows}
        for c, r, e, b in failures:
            d = by_row[(c, b)]
            if e.endswith("~") or "caffe~" not in d:
                continue
            lines += [f"- {c} {b}: {e} {fmt(d[e])} is {fmt(r)} x the nudged run's {fmt(d['nudged'])}; the real Caffe "
                      f"itself is {fmt(d['caffe'])}, {fmt(ratio(d['caffe'], d['nudged']))} x its nudged twin; over the "
                      f"{len(SAMPLES)} perturbed runs ours averages {fmt(d[e + '~'])}, "
                      f"{fmt(ratio(d[e + '~'], d['caffe~']))} x the real Caffe's {fmt(d['caffe~'])}."]
        lines.append("")
    else:
        lines += [f"No checked row of ours is farther than {LIMIT} x the nudged Caffe's distance.", ""]
    if relu:
        lines += [f"## ReLU decisions against float64 (AlexNet's forward, {args.draws} random inputs)", "",
                  "A ReLU input that rounds to the other side of 0 than float64's routes or blocks a whole element "
                  "of the gradient (about 1e-3 of a gradient blob's norm at batch 10), so one draw's gradient "
                  "distances hold such an event or not, by chance; how often an engine takes one follows how far "
                  "its forward rounds. Count per input (conv1..fc7 tops, batch 10, the alexnet case's weights; "
                  "ours with gradients: the training path), and in all:", "",
                  "| engine | per input | in all |", "|---|---|---|"]
        for name, counts in relu.items():
            lines.append(f"| {name} | {' '.join(map(str, counts))} | {sum(counts)} |")
        lines.append("")
    if ablations:
        cases = list(next(iter(ablations.values())))
        lines += ["## Each acceleration switched (ours as shipped otherwise)", "",
                  "Per case: the median distance of ours over the checked rows; its worst ratio to the nudged Caffe "
                  f"(rows over {LIMIT} in brackets); where the case has perturbed runs, the worst ratio of their "
                  "means (`~`).", "",
                  "| variant | " + " | ".join(cases) + " |", "|" + "---|" * (len(cases) + 1)]
        for name, per_case in ablations.items():
            cells = []
            for c in cases:
                med, worst, over, worst_spread, over_spread = per_case[c]
                cell = f"{fmt(med)}" + (f"; {fmt(worst[0])} {worst[2]}" if worst else "") + \
                    (f" **({over})**" if over else "")
                if worst_spread:
                    cell += f"; ~ {fmt(worst_spread[0])} {worst_spread[2]}" + \
                        (f" **({over_spread})**" if over_spread else "")
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
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
    at = f" at commit {args.commit}" if args.commit else ""
    lines += ["", f"This run: {elapsed / 60:.0f} min wall clock (the machine shared){at}.", ""]
    for t in tables:
        cols = [c for c in t.columns if any(c in d for _, d, _, _ in t.rows)]
        pairs = [(c, "nudged") for c in ("ref", "accel", "compiled") if c in cols]
        pairs += [(c, "caffe~") for c in ("ref~", "accel~") if c in cols]
        lines += [f"## {t.case}: {t.title}", ""]
        if t.case == "golden_layers" and golden_left_out:
            lines += ["Left out: " + "; ".join(f"{c} ({why})" for c, why in golden_left_out.items()) + ".", ""]
        big = len(t.rows) > 60
        if big:
            lines += [f"<details><summary>{len(t.rows)} rows</summary>", ""]
        lines += ["| blob | " + " | ".join(cols) + " | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
                  "|" + "---|" * (1 + len(cols) + len(pairs))]
        for blob, d, absolute, note in t.rows:
            cells = [fmt(d[c]) if c in d else "—" for c in cols]
            for a, b in pairs:
                if a in d and b in d:
                    r = ratio(d[a], d[b])
                    cells.append(f"**{fmt(r)}**" if t.checked(d, b) and ratio(d[a], d[b], FLOOR) > LIMIT else fmt(r))
                else:
                    cells.append("—")
            name = f"{blob} ({note})" if note else blob
            lines.append(f"| {name}{' abs' if absolute else ''} | " + " | ".join(cells) + " |")
        if big:
            lines += ["", "</details>"]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="the stage-1 train net's batch")
    ap.add_argument("--cases", nargs="+", default=["stage1", "alexnet", "infer", "golden", "relu"])
    ap.add_argument("--draws", type=int, default=16, help="random inputs of AlexNet for the relu case")
    ap.add_argument("--ablate", action="store_true", help="ours as shipped with each acceleration switched in turn")
    ap.add_argument("--off", nargs="*", default=[], help="run ours as shipped with these accelerations off")
    ap.add_argument("--seed-caffe", default="/opt/seed-caffe")
    ap.add_argument("--cache", default=os.path.join(ROOT, ".cache", "fidelity"))
    ap.add_argument("--no-cache", action="store_true", help="recompute the real Caffe's results")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "fidelity.md"))
    ap.add_argument("--render", action="store_true",
                    help="only write --out again from the last run's measurements (--cache/last_run.json)")
    args = ap.parse_args()
    args.argv, args.commit = sys.argv[1:], _commit()
    last = os.path.join(args.cache, "last_run.json")
    if args.render:
        run = json.load(open(last))
        tables = []
        for t in run["tables"]:
            table = Table(t["case"], t["title"], t["columns"])
            table.rows = [tuple(r) for r in t["rows"]]
            tables.append(table)
        args.argv, args.draws, args.commit = run["argv"], run["draws"], run.get("commit")
        ablations = {k: {c: [tuple(x) if isinstance(x, list) else x for x in v] for c, v in per.items()}
                     for k, per in run["ablations"].items()}
        text = render(tables, run["infos"], run["labels"], args, ablations, run["left_out"], run["elapsed"],
                      run["relu"])
        with open(args.out, "w") as f:
            f.write(text)
        print(f"# written: {os.path.relpath(args.out, ROOT)}")
        return
    began = time.time()
    work = os.path.join(args.cache, "work")
    for d in ("work", "dists"):
        os.makedirs(os.path.join(args.cache, d), exist_ok=True)
    os.environ["FIDELITY_TMP"] = work
    from caffe import accel
    engines = {e.name: e for e in (
        Engine("f64", "ours, reference path in float64", env={"CAFFE_REFERENCE": "1"}, float64=True),
        Engine("caffe", "the real Caffe", real=True),
        Engine("nudged", "the real Caffe, initial weights one ulp up", real=True, nudged=True),
        Engine("ref", "ours, reference path (CAFFE_REFERENCE=1)", env={"CAFFE_REFERENCE": "1"}),
        Engine("accel", "ours as shipped" + (f" without {', '.join(args.off)}" if args.off else ""), off=args.off))}
    labels = {k: e.label for k, e in engines.items() if k != "f64"}
    labels["compiled"] = "ours as shipped, inference after torch.compile (CAFFE_COMPILE_AFTER=0; infer cases)"
    labels["f64"] = engines["f64"].label
    labels.update({"caffe~": "the real Caffe's mean over the perturbed runs", "ref~": "ours, reference path, the same",
                   "accel~": "ours as shipped, the same"})

    try:
        cases = []
        if "stage1" in args.cases:
            cases.append(Stage1(work, args))
        alexnet = None
        if "alexnet" in args.cases or "relu" in args.cases:
            alexnet = Net("alexnet", "AlexNet's deploy net (BVLC's shapes, batch 10, random weights): forward outputs, "
                          "and one backward of a fixed diff on prob: the param and input gradients",
                          work, "alexnet", ALEXNET, 10, 3, ["fc8", "prob"], top_diffs={"prob": (10, 1000)},
                          samples=True)
            if "alexnet" in args.cases:
                cases.append(alexnet)
        if "infer" in args.cases:
            cases.append(Net("infer_alexnet", "AlexNet's deploy net, the forward alone (our inference path)",
                             work, "alexnet", ALEXNET, 10, 3, ["fc8", "prob"], compiled=True))
            cases.append(Net("infer_deploy", "the seed's stage-1 deploy net (random weights and BatchNorm "
                             "statistics, batch 8), the forward alone (our inference path)",
                             work, "deploy", DEPLOY, 8, 4, ["predict"], compiled=True))
        golden = []
        if "golden" in args.cases:
            golden = [GoldenLayers(work), GoldenSolvers(work)]
            # their float64 result is ours in float64: run it first
            outs = run_worker(engines["f64"], {g.tid: g.task for g in golden}, args)
            for g in golden:
                with np.load(outs[g.tid]) as z:
                    g.set_reference(z)
                os.remove(outs[g.tid])
        cases += golden

        dists, infos = {}, {}
        for name, e in engines.items():
            todo = [c for c in cases if not (name == "f64" and c in golden)]
            dists[name], infos[name] = measure(e, todo, args)
        tables = [c.table(dists) for c in cases]

        ablations = {}
        ablated = [c for c in cases if c.tid in ("stage1", "alexnet", "infer_alexnet", "infer_deploy")]
        if args.ablate and ablated:
            ablations["as shipped"] = {t.case: summary(t) for t in tables if t.case in {c.tid for c in ablated}}
            for acc, entry in accel.REGISTRY.items():
                if acc == "heap":
                    continue  # the allocator's settings: no arithmetic
                if entry.off_by_default:
                    e = Engine(f"accel+{acc}", f"ours as shipped with {acc} on", off=args.off, env={entry.knob: "1"})
                    label = f"{acc} on ({entry.knob}=1)"
                else:
                    e = Engine(f"accel-{acc}", f"ours as shipped without {acc}", off=args.off + [acc])
                    label = f"{acc} off"
                got, _ = measure(e, ablated, args)
                sub = {k: dists[k] for k in ("caffe", "nudged", "f64")}
                sub["accel"] = got
                ablations[label] = {c.tid: summary(c.table(sub)) for c in ablated}

        relu = None
        if "relu" in args.cases:
            knob = accel.REGISTRY["channels_last"].knob
            relu = relu_decisions(alexnet, {"caffe": engines["caffe"], "ref": engines["ref"], "accel": engines["accel"],
                                            "accel, channels_last on": Engine("accel+cl", "ours, channels_last on",
                                                                              off=args.off, env={knob: "1"})},
                                  args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the inputs (rewritten each run) and the engines' arrays

    elapsed, left_out = time.time() - began, golden[0].left_out if golden else {}
    with open(last, "w") as f:  # what --render needs
        json.dump({"tables": [dict(case=t.case, title=t.title, columns=t.columns, rows=t.rows) for t in tables],
                   "infos": infos, "labels": labels, "ablations": ablations, "left_out": left_out,
                   "elapsed": elapsed, "relu": relu, "argv": args.argv, "draws": args.draws,
                   "commit": args.commit}, f)
    text = render(tables, infos, labels, args, ablations, left_out, elapsed, relu)
    with open(args.out, "w") as f:
        f.write(text)
    print(text.split("## Libraries")[0])
    print(f"# written: {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
