"""`caffe`: Caffe's command-line brew (tools/caffe.cpp) with its gflags-style flags.

    caffe train -solver S [-weights W1,W2 | -snapshot S.solverstate] [-gpu N|N,M,..|all] [-level L] [-stage a,b]
    caffe test -model M -weights W [-iterations 50] [-gpu N]
    caffe time -model M [-iterations 50] [-phase TRAIN|TEST] [-gpu N]
    caffe device_query -gpu N|all

Logs go to stderr in glog's format with Caffe's messages (`grep "Iteration" log | grep loss`);
there is no progress bar, the log lines are the progress. During `train`, signals are acted on
between iterations (and test batches), as Caffe's SignalHandler does: SIGINT (Ctrl-C) stops and
SIGHUP snapshots, as -sigint_effect / -sighup_effect say (stop, snapshot or none); a stopped run
writes its snapshot when `snapshot_after_train` is on (Caffe's default). SIGTERM (`timeout`,
`docker stop`, a scheduler's preemption), which kills Caffe, stops too and always snapshots, then
exits with status 143; `-snapshot` resumes it exactly. A second Ctrl-C before the first was acted
on interrupts at once; snapshots are written atomically, so no file is left half written. One
`train` at a time may use a snapshot prefix (a lock beside it). A NaN or infinite loss stops
training with an error naming the iteration, before the weights are updated.

Several workers (caffe.distributed): `caffe train -gpu 0,1` (or `-gpu all`) starts one worker
process per device; `caffe train` started by torchrun joins its workers (NCCL on GPUs, gloo with
solver_mode CPU). Rank 0 logs, tests and snapshots (and holds the prefix's lock); a signal to any
worker stops (or snapshots) them all at the same iteration.
"""
import contextlib
import signal
import sys
import time

import torch

from .. import accel, common, distributed, glog
from ..filelock import LockedError
from ..net import TEST, TRAIN, Net
from ..layer_modules.python import PythonLayerError
from ..registry import UnknownLayerError
from ..proto import caffe_pb2
from ..solvers import claim_snapshot_prefix, format_float, get_solver, weighted_loss
from ..signals import SignalHandler
from ..solvers.params import read_solver_param
from .flags import Flag, parse_or_exit, usage

FLAGS = {
    "gpu": Flag("", "Optional; run in GPU mode on given device IDs separated by ','. Use '-gpu all' to run on "
                    "all available GPUs."),
    "solver": Flag("", "The solver definition protocol buffer text file."),
    "model": Flag("", "The model definition protocol buffer text file."),
    "phase": Flag("", "Optional; network phase (TRAIN or TEST). Only used for 'time'."),
    "level": Flag(0, "Optional; network level."),
    "stage": Flag("", "Optional; network stages (not to be confused with phase), separated by ','."),
    "snapshot": Flag("", "Optional; the snapshot solver state to resume training."),
    "weights": Flag("", "Optional; the pretrained weights to initialize finetuning, separated by ','. Cannot be "
                        "set simultaneously with snapshot."),
    "iterations": Flag(50, "The number of iterations to run."),
    "sigint_effect": Flag("stop", "Optional; action to take when a SIGINT signal is received: snapshot, stop or "
                                  "none."),
    "sighup_effect": Flag("snapshot", "Optional; action to take when a SIGHUP signal is received: snapshot, stop "
                                      "or none."),
    "minloglevel": Flag(0, "Messages logged at a lower level than this don't actually get logged anywhere "
                           "(0 INFO, 1 WARNING, 2 ERROR)."),
}
USAGE = ("command line brew\nusage: caffe <command> <args>\n\ncommands:\n"
         "  train           train or finetune a model\n"
         "  test            score a model\n"
         "  device_query    show GPU diagnostic information and the engine's accelerations\n"
         "  time            benchmark model execution time")
class CommandError(ValueError):
    """A command that cannot run as asked; the message says why."""


def _gpus(flag):
    """The device ids of -gpu ('' none, 'all', or '0,1')."""
    if flag == "all":
        count = torch.cuda.device_count()
        if not count:
            raise CommandError("-gpu all: PyTorch sees no CUDA device on this machine")
        return list(range(count))
    try:
        return [int(g) for g in flag.split(",")] if flag else []
    except ValueError:
        raise CommandError(f"-gpu={flag}: give device ids separated by ',' or 'all'") from None


def _check_gpus(gpus, what):
    count = torch.cuda.device_count()
    for g in gpus:
        if not 0 <= g < count:
            raise CommandError(f"{what} asks for GPU {g}, but PyTorch sees {count} CUDA device(s) on this machine"
                               + ("" if count else "; run on the CPU (no -gpu flag, solver_mode: CPU; several CPU "
                                                   "workers: torchrun --nproc_per_node N $(which caffe) train ...)"))


def _use(gpus, what):
    """Compute on the first of `gpus` (checked to exist) or, with none, on the CPU."""
    if not gpus:
        glog.info("caffe.cpp:197", "Use CPU.")
        common.set_mode_cpu()
        return
    _check_gpus(gpus, what)
    common.set_device(gpus[0])
    common.set_mode_gpu()


def _stages(flags):
    return flags["stage"].split(",")  # as Caffe: no -stage gives the one stage ""


def train(flags, argv=()):
    if not flags["solver"]:
        raise CommandError("Need a solver definition to train.")
    if flags["snapshot"] and flags["weights"]:
        raise CommandError("Give a snapshot to resume training or weights to finetune but not both.")
    param = read_solver_param(flags["solver"])
    param.train_state.level = flags["level"]
    param.train_state.stage.extend(_stages(flags))
    workers = distributed.environment()
    if workers:  # before anything is logged: only rank 0 logs
        common.set_solver_count(workers[0])
        common.set_solver_rank(workers[1])
    gpu = flags["gpu"]
    if not gpu and param.HasField("solver_mode") and param.solver_mode == caffe_pb2.SolverParameter.GPU:
        gpu = str(param.device_id)
    gpus = _gpus(gpu)
    what = "-gpu" if flags["gpu"] else f"{flags['solver']} (solver_mode: GPU, device_id: {param.device_id})"
    if gpus:
        glog.info("caffe.cpp:208", f"Using GPUs {', '.join(map(str, gpus))}")
    if len(gpus) > 1 and not workers:
        _check_gpus(gpus, what)
        return distributed.launch(argv, len(gpus))
    if workers and gpus:  # a worker's device: the LOCAL_RANK-th of -gpu; with solver_mode GPU, LOCAL_RANK
        if flags["gpu"] and workers[2] >= len(gpus):
            raise CommandError(f"-gpu={gpu} names {len(gpus)} device(s), but this worker's LOCAL_RANK is "
                               f"{workers[2]}: give one device per worker of the node")
        gpus = [gpus[workers[2]] if flags["gpu"] else workers[2]]
    _use(gpus, what)
    if workers:
        distributed.join()
    if gpus:
        glog.info("caffe.cpp:216", f"GPU {gpus[0]}: {torch.cuda.get_device_name(gpus[0])}")
        param.device_id = gpus[0]
    signals = SignalHandler(flags["sigint_effect"], flags["sighup_effect"])
    if flags["snapshot"] or flags["weights"]:
        param.ClearField("weights")
    if flags["weights"]:
        param.weights.append(flags["weights"])
    prefix_lock = claim_snapshot_prefix(param.snapshot_prefix) if common.root_solver() else contextlib.nullcontext()
    try:
        with signals, prefix_lock:
            solver = get_solver(param)
            solver.prefix_lock = prefix_lock
            solver.set_action_function(signals.requested)
            if flags["snapshot"]:
                glog.info("caffe.cpp:234", f"Resuming from {flags['snapshot']}")
                solver.restore(flags["snapshot"])
            if workers:
                nccl = distributed.NCCL(solver)
                nccl.bcast()
                solver.add_callback(nccl)
                nccl.watch(signals.requested)
            glog.info("caffe.cpp:239", "Starting Optimization")
            solver.solve()
            if signals.terminated and solver.iter < param.max_iter:
                if common.root_solver() and solver.last_snapshot_iter != solver.iter:
                    solver.snapshot()
                glog.info("caffe.cpp", f"Stopped by SIGTERM at iteration {solver.iter}; resume with -snapshot "
                                       f"{param.snapshot_prefix}_iter_{solver.iter}.solverstate")
                return 128 + signal.SIGTERM
    finally:
        distributed.leave()
    glog.info("caffe.cpp:250", "Optimization Done.")
    return 0


def _iterations(flags):
    if flags["iterations"] <= 0:
        raise CommandError(f"-iterations={flags['iterations']}: give a positive number of iterations")
    return flags["iterations"]


def _device_for(flags):
    gpus = _gpus(flags["gpu"])
    if gpus:
        glog.info("caffe.cpp:265", f"Use GPU with device ID {gpus[0]}")
    _use(gpus[:1], "-gpu")
    if gpus:
        glog.info("caffe.cpp:269", f"GPU device name: {torch.cuda.get_device_name(gpus[0])}")


def test(flags):
    if not flags["model"]:
        raise CommandError("Need a model definition to score.")
    if not flags["weights"]:
        raise CommandError("Need model weights to score.")
    _device_for(flags)
    n = _iterations(flags)
    net = Net(flags["model"], TEST, level=flags["level"], stages=_stages(flags))
    net.copy_from(flags["weights"])
    glog.info("caffe.cpp:284", f"Running for {n} iterations.")
    scores, loss = None, 0.0
    for i in range(n):
        with torch.no_grad():
            outputs = net.forward()
        loss += weighted_loss(net)
        result = [(name, float(v)) for name in net.outputs for v in outputs[name].ravel()]
        for name, v in result:
            glog.info("caffe.cpp:307", f"Batch {i}, {name} = {format_float(v)}")
        scores = [v for _, v in result] if scores is None else [s + v for s, (_, v) in zip(scores, result)]
    glog.info("caffe.cpp:312", f"Loss: {format_float(loss / n)}")
    weights = net.blob_loss_weights
    names = [name for name in net.outputs for _ in range(net.blobs[name].count)]
    for name, total in zip(names, scores or []):
        mean, w = total / n, weights[name]
        extra = f" (* {format_float(w)} = {format_float(w * mean)} loss)" if w else ""
        glog.info("caffe.cpp:325", f"{name} = {format_float(mean)}{extra}")
    return 0


def _timed(fn, device):
    """fn() and its duration in ms (synchronising the GPU, like Caffe's Timer)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, (time.perf_counter() - start) * 1000.0


def _layer_pass(net, env, device):
    """One forward over the layers one by one, each on detached bottoms, then one backward layer
    by layer (each layer's own gradient); per-layer times in ms."""
    module = net.module
    n = len(module.layers)
    forward, backward, graphs = [0.0] * n, [0.0] * n, [None] * n
    for i, (layer, w) in enumerate(zip(module.layers, module.wiring)):
        if w.is_input:
            continue
        bottoms = [env[b].detach().requires_grad_(not cut and env[b].is_floating_point())
                   for b, cut in zip(w.bottoms, w.detach)]
        tops, forward[i] = _timed(lambda: layer(*bottoms), device)
        for name, t in zip(w.tops, tops):
            env[name] = t.detach()
        inputs = [b for b in bottoms if b.requires_grad] + [p for p in layer.blobs if p.requires_grad]
        outs = [t for t in tops if t.requires_grad]
        graphs[i] = (outs, inputs)
    for i in reversed(range(n)):
        if graphs[i] and graphs[i][0] and graphs[i][1]:
            outs, inputs = graphs[i]
            _, backward[i] = _timed(lambda: torch.autograd.grad(outs, inputs, [torch.ones_like(t) for t in outs],
                                                                allow_unused=True), device)
    return forward, backward


def time_(flags):
    if not flags["model"]:
        raise CommandError("Need a model definition to time.")
    phase = {"": TRAIN, "TRAIN": TRAIN, "TEST": TEST}.get(flags["phase"])
    if phase is None:
        raise CommandError('phase must be "TRAIN" or "TEST"')
    n = _iterations(flags)
    _device_for(flags)
    net = Net(flags["model"], phase, level=flags["level"], stages=_stages(flags))
    device = common.device()
    glog.info("caffe.cpp:352", "Performing Forward")
    net.forward()
    glog.info("caffe.cpp:357", f"Initial loss: {format_float(weighted_loss(net))}")
    glog.info("caffe.cpp:358", "Performing Backward")
    net.backward()
    glog.info("caffe.cpp:367", "*** Benchmark begins ***")
    glog.info("caffe.cpp:368", f"Testing for {n} iterations.")
    names = list(net._layer_names)
    forward, backward = [0.0] * len(names), [0.0] * len(names)
    total_start = time.perf_counter()
    for j in range(n):
        env = {name: blob.data_tensor() for name, blob in net.blobs.items()}
        (f, b), ms = _timed(lambda: _layer_pass(net, env, device), device)
        forward = [a + x for a, x in zip(forward, f)]
        backward = [a + x for a, x in zip(backward, b)]
        glog.info("caffe.cpp:396", f"Iteration: {j + 1} forward-backward time: {format_float(ms)} ms.")
    total = (time.perf_counter() - total_start) * 1000.0
    glog.info("caffe.cpp:399", "Average time per layer: ")
    for name, f, b in zip(names, forward, backward):
        glog.info("caffe.cpp:402", f"{name:>10}\tforward: {format_float(f / n)} ms.")
        glog.info("caffe.cpp:405", f"{name:>10}\tbackward: {format_float(b / n)} ms.")
    glog.info("caffe.cpp:410", f"Average Forward pass: {format_float(sum(forward) / n)} ms.")
    glog.info("caffe.cpp:412", f"Average Backward pass: {format_float(sum(backward) / n)} ms.")
    glog.info("caffe.cpp:414", f"Average Forward-Backward: {format_float(total / n)} ms.")
    glog.info("caffe.cpp:415", f"Total Time: {format_float(total)} ms.")
    glog.info("caffe.cpp:416", "*** Benchmark ends ***")
    return 0


def device_query(flags):
    glog.info("caffe.cpp:129", f"Querying GPUs {flags['gpu']}")
    gpus = _gpus(flags["gpu"])
    count = torch.cuda.device_count()
    for g in gpus:
        if not 0 <= g < count:
            raise CommandError(f"-gpu asks for GPU {g}, but PyTorch sees {count} CUDA device(s) on this machine")
        props = torch.cuda.get_device_properties(g)
        for label, value in (("Device id", g), ("Major revision number", props.major),
                             ("Minor revision number", props.minor), ("Name", props.name),
                             ("Total global memory", props.total_memory),
                             ("Number of multiprocessors", props.multi_processor_count)):
            glog.info("common.cpp:181", f"{label + ':':<31}{value}")
    glog.info("caffe.cpp", f"Reference path: {'on' if accel.reference() else 'off'}")
    for name, a in accel.REGISTRY.items():
        why = a.why_off()
        glog.info("caffe.cpp", f"Acceleration {name}: {'on' if why is None else f'off ({why})'}; replaces {a.replaces}; "
                               f"measured {a.gain}; off with {' or '.join(f'{k}=0' for k in a.knobs)}")
    return 0


COMMANDS = {"train": train, "test": test, "time": time_, "device_query": device_query}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    flags, args = parse_or_exit(argv, FLAGS, "caffe", USAGE)
    glog.min_level = flags["minloglevel"]
    if len(args) != 1:
        print(usage("caffe", USAGE, FLAGS), file=sys.stderr)
        return 1
    command = COMMANDS.get(args[0])
    if command is None:
        glog.error("caffe.cpp:80", "Available caffe actions:")
        for name in sorted(COMMANDS):
            glog.error("caffe.cpp:83", f"\t{name}")
        glog.log("F", "caffe.cpp:85", f"Unknown action: {args[0]}")
        return 1
    try:
        return train(flags, argv) if command is train else command(flags)
    except (ValueError, OSError, UnknownLayerError, LockedError, PythonLayerError) as e:
        glog.log("F", "caffe.cpp", str(e))
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C before the first was acted on
        glog.log("F", "caffe.cpp", "Interrupted")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
