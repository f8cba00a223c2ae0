"""Caffe's multi-GPU training (Caffe 1.0 with NCCL) on torch.distributed: NCCL between GPU
workers, gloo between CPU workers.

N worker processes run the same solver, each on its own batches: the Data layer of worker r
reads the records whose running index i has i mod N == r (Caffe's DataLayer::Skip). Before each
update the param diffs are summed over the workers and scaled by 1/N, so N workers with batch B
make the update of one worker with `iter_size: N` and batch B. Rank 0 (the root solver) alone
logs, tests and snapshots; its snapshots keep every worker's random streams and data positions
(caffe.solvers.resume_state), so N workers resumed from one continue each its own. Workers are started
by `caffe train -gpu 0,1` (`launch`: one process per device), by torchrun (WORLD_SIZE, RANK,
LOCAL_RANK in the environment), or by a pycaffe script (BVLC's python/train.py:
`caffe.NCCL(solver, uid)`).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import torch
import torch.distributed as dist

from . import common, glog
from .solvers import resume_state
from .solvers.solver import NONE, SNAPSHOT, STOP


def has_nccl():
    """Whether GPU workers can reduce with NCCL (pycaffe's caffe.has_nccl()). CPU workers use
    gloo and need no NCCL: `caffe.NCCL` works on any machine."""
    return dist.is_available() and dist.is_nccl_available()


def environment():
    """(world_size, rank, local_rank) of a process started as one of several workers (torchrun's
    WORLD_SIZE, RANK, LOCAL_RANK), else None."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    try:
        return tuple(int(os.environ[name]) for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    except KeyError as e:
        raise ValueError(f"WORLD_SIZE is set but {e.args[0]} is not: start the workers with torchrun") from None
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None


def join(init_method="env://", world_size=-1, rank=-1):
    """Join the workers' process group (NCCL when computing on a GPU, else gloo) and set Caffe's
    solver count and rank from it (workers other than rank 0 then log warnings and errors only)."""
    if not dist.is_initialized():
        backend = "nccl" if common.mode() == "gpu" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(common.device())
        dist.init_process_group(backend, init_method=init_method, world_size=world_size, rank=rank)
    common.set_solver_count(dist.get_world_size())
    common.set_solver_rank(dist.get_rank())
    common.set_multiprocess(True)


def leave():
    """Leave the process group (at the end of training)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class NCCL:
    """pycaffe's `caffe.NCCL(solver, uid)`: this worker's link to the others (rank and count from
    `caffe.set_solver_rank` / `set_solver_count`, or from the process group torchrun started).
    `bcast()` gives every worker rank 0's weights; added to the solver (`solver.add_callback(nccl)`)
    it sums the param diffs over the workers and scales them by 1/N before each update."""

    def __init__(self, solver, uid=None):
        if uid is not None and not dist.is_initialized():
            uid = uid.decode() if isinstance(uid, bytes) else str(uid)
            join(uid, common.solver_count(), common.solver_rank())
        elif not dist.is_initialized():
            raise RuntimeError("caffe.NCCL: give the uid of NCCL.new_uid(), or start the workers with torchrun")
        else:
            join()
        self.solver = solver
        self._requested = None
        self._agreed = NONE
        self._layer_wise = False

    @staticmethod
    def new_uid():
        """A fresh rendezvous for one set of workers on this machine (bytes, as pycaffe's)."""
        return f"file://{tempfile.gettempdir()}/caffe_nccl_{uuid.uuid4().hex}".encode()

    def bcast(self):
        """Copy rank 0's weights (every param blob) to every worker."""
        params = self.solver.net.all_params
        if not params:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            dist.broadcast(flat, 0)
            torch._foreach_copy_(params, [v.view_as(p) for v, p in zip(flat.split([p.numel() for p in params]), params)])

    def on_start(self):
        """Nothing to do before an iteration's passes (as Caffe's NCCL)."""

    def on_gradients_ready(self):
        """Sum the param diffs over the workers and scale them by 1/N (unless the net's
        after-backward hook did it layer by layer); in the same all-reduce the workers agree on
        the actions (stop, snapshot) asked of any of them."""
        local = self._requested() if self._requested else NONE
        params = [] if self._layer_wise else self.solver.net.learnable_params
        snapshot, stop = self._reduce(params, [local == SNAPSHOT, local == STOP])
        self._agreed = STOP if stop else SNAPSHOT if snapshot else NONE
        p, after = self.solver.param, self.solver.iter + 1  # the iteration once this update is applied
        if self._agreed != NONE or (p.snapshot and after % p.snapshot == 0) or after >= p.max_iter:
            self._gather_worker_states(after)

    def _gather_worker_states(self, iteration):
        """Give the root solver every worker's random states and data positions for a snapshot
        after this update (none of them changes before it: the next forward comes after)."""
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, resume_state.worker_state(self.solver.net))
        self.solver.worker_states = (iteration, states)

    def __call__(self, layer):
        """Layer-wise reduce (`solver.net.after_backward(nccl)` with `layer_wise_reduce: true`,
        as BVLC's train.py does): reduce the diffs of layer `layer`'s params after its backward."""
        if not self._layer_wise:
            net = self.solver.net
            if sum(len(module.blobs) for module in net.module.layers) != len(net.all_params):
                raise RuntimeError("Layer-wise reduce is not supported for nets with shared weights.")
            if not self.solver.param.layer_wise_reduce:
                raise RuntimeError("net.after_backward(nccl) reduces layer by layer, but the solver says "
                                   "layer_wise_reduce: false")
            self._layer_wise = True
        learnable = {id(p) for p in self.solver.net.learnable_params}
        self._reduce([p for p in self.solver.net.module.layers[layer].blobs if id(p) in learnable])

    def _reduce(self, params, flags=()):
        """All-reduce the diffs of `params` (summed, then scaled by 1/N, in place) and `flags`
        (summed) in one call; returns the summed flags."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if not grads and not flags:
            return []
        device = grads[0].device if grads else common.device()
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor(flags, dtype=torch.float32, device=device)])
        dist.all_reduce(flat)
        summed = flat[len(flat) - len(flags):].tolist()
        flat = flat[:len(flat) - len(flags)].mul_(1.0 / dist.get_world_size())
        with torch.no_grad():
            for p, g, reduced in zip(params, grads, flat.split([g.numel() for g in grads])):
                if p.grad is None:
                    p.grad = g
                p.grad.copy_(reduced.view_as(g))
        return summed

    def watch(self, requested):
        """Make the solver act on `requested()` (the caffe tool's signal handler) only as all the
        workers agreed: a signal to any worker stops (or snapshots) all of them at the same
        iteration, after its update."""
        self._requested = requested
        self.solver.set_action_function(self._agreed_action)

    def _agreed_action(self):
        action, self._agreed = self._agreed, NONE
        return action


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv, count):
    """Run `caffe <argv>` as `count` workers on this machine, as torchrun would (worker r gets
    RANK=LOCAL_RANK=r and takes the r-th device of -gpu): SIGINT, SIGTERM and SIGHUP are passed
    on to every worker; when one fails the others are ended. Returns the first failed worker's
    exit status (1 if a signal killed it), else 0."""
    env = dict(os.environ, WORLD_SIZE=str(count), LOCAL_WORLD_SIZE=str(count), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()))
    workers = [subprocess.Popen([sys.executable, "-m", "caffe.tools.caffe_main", *argv], start_new_session=True,
                                env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(count)]

    def forward(signum, frame):
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)

    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), forward) for n in names}
    try:
        while any(w.poll() is None for w in workers):
            if any(w.returncode for w in workers if w.returncode is not None):
                _end(workers)
                break
            time.sleep(0.1)
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)
    failed = [(r, w.returncode) for r, w in enumerate(workers) if w.returncode]
    for r, code in failed:
        glog.error("caffe.cpp", f"worker {r} of {count} ended with exit status {code}")
    return (failed[0][1] if failed[0][1] > 0 else 1) if failed else 0


def _end(workers, grace=10.0):
    """SIGTERM the running workers, SIGKILL those still running after `grace` seconds."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
