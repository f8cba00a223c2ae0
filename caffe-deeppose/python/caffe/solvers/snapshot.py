"""A solver's snapshots (Caffe's Solver::Snapshot and Restore): the weights as a .caffemodel and
the solver's state as a .solverstate (or both as HDF5), written atomically, read back to resume;
and the snapshot prefix, claimed by one training run at a time."""
import glob
import os

import numpy as np
import torch

from .. import common, filelock, glog
from ..atomic_file import atomic_write
from ..formats import hdf5
from ..formats.caffemodel import blob_chunks, caffemodel_chunks, message_chunks
from ..formats.protoio import blobproto_to_array, parse_binary_proto, read_file
from ..net.weights import blobs_of, layers_proto
from ..proto import caffe_pb2
from . import resume_state
from .lr_policy import SolverError

_STATE_HISTORY = 3  # SolverState.history


def _check_folder(prefix):
    folder = os.path.dirname(prefix) or "."
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        raise SolverError(f"Cannot write to snapshot prefix '{prefix}'. Make sure that the directory exists and "
                          "is writable.")
    return folder


def check_snapshot_prefix(param):
    """A solver that snapshots names a prefix in a writable folder."""
    if not param.snapshot:
        return
    if not param.HasField("snapshot_prefix"):
        raise SolverError("the solver sets snapshot but not snapshot_prefix")
    _check_folder(param.snapshot_prefix)


def claim_snapshot_prefix(prefix):
    """Hold the lock of a snapshot prefix for one training run (released when the returned lock
    is, or when the process ends however it ends), then remove the temporary files that a run
    killed while snapshotting left under it: holding the lock proves that no writer of them lives.
    Raises `filelock.LockedError` naming the prefix and its holder."""
    folder = _check_folder(prefix)
    lock = filelock.hold(prefix if os.path.basename(prefix) else os.path.join(prefix, "_iter"), "snapshot prefix")
    pattern = os.path.join(glob.escape(folder), ".tmp-" + glob.escape(os.path.basename(prefix)) + "_iter_*")
    for orphan in sorted(glob.glob(pattern)):
        glog.warning("solver.cpp", f"Removing {orphan}: a snapshot file left half written by a run killed while "
                                   "snapshotting")
        os.unlink(orphan)
    return lock


def _filename(solver, extension):
    return f"{solver.param.snapshot_prefix}_iter_{solver.iter}{extension}"


def write_snapshot(solver):
    """Write <prefix>_iter_N.caffemodel and .solverstate, or with `snapshot_format: HDF5`
    .caffemodel.h5 and .solverstate.h5 in Caffe's layouts (each atomically: an interrupted
    write leaves no partial file and keeps the previous one). The solver state also holds the
    data layers' read positions and the random states (caffe.solvers.resume_state; in the .h5 a
    `resume_state` dataset Caffe does not read), so a resumed run continues exactly."""
    param, net = solver.param, solver.net
    if param.snapshot_format == caffe_pb2.SolverParameter.HDF5:
        model_file = _filename(solver, ".caffemodel.h5")
        glog.info("solver.cpp:471", f"Snapshotting to HDF5 file {model_file}")
        net.save_hdf5(model_file, param.snapshot_diff)
        state_file = _filename(solver, ".solverstate.h5")
        glog.info("sgd_solver.cpp:300", f"Snapshotting solver state to HDF5 file {state_file}")
        hdf5.save_solver_state(state_file, solver.iter, model_file, solver.current_step,
                               [h.detach().cpu().numpy() for h in solver.history],
                               resume_state.encode(_data_positions(solver), _worker_states(solver)))
        solver.last_snapshot_iter = solver.iter
        return
    model_file = _filename(solver, ".caffemodel")
    glog.info("solver.cpp:464", f"Snapshotting to binary proto file {model_file}")
    atomic_write(model_file, caffemodel_chunks(layers_proto(net), blobs_of(net, param.snapshot_diff)).parts)
    state = caffe_pb2.SolverState(iter=solver.iter, learned_net=model_file, current_step=solver.current_step)
    history = [blob_chunks(h.detach().cpu().numpy()) for h in solver.history]
    state_file = _filename(solver, ".solverstate")
    glog.info("sgd_solver.cpp:284", f"Snapshotting solver state to binary proto file {state_file}")
    extra = resume_state.encode(_data_positions(solver), _worker_states(solver))
    atomic_write(state_file, message_chunks(state, _STATE_HISTORY, history).parts + [extra])
    solver.last_snapshot_iter = solver.iter


def _worker_states(solver):
    """Every worker's random states and train-net data positions, this one's as they are now,
    if caffe.NCCL gathered the others' at this iteration (else None: a single worker)."""
    if solver.worker_states is None or solver.worker_states[0] != solver.iter:
        return None
    workers = list(solver.worker_states[1])
    workers[common.solver_rank()] = resume_state.worker_state(solver.net)
    return workers


def _data_positions(solver):
    """The data positions of the train net and each test net (a test net being tested: as at the
    test's start, since a resumed run repeats that test)."""
    testing = solver._testing
    return [resume_state.net_positions(solver.net)] + [
        testing[1] if testing and testing[0] == i else resume_state.net_positions(net)
        for i, net in enumerate(solver.test_nets)]


def restore_snapshot(solver, state_file):
    """Continue from a .solverstate (or a .solverstate.h5): iteration, current_step, history,
    the weights of its `learned_net` (as written, else relative to the state's folder), and
    where we wrote them, the data positions and random states."""
    state_file = os.fspath(state_file)
    if state_file.endswith(".h5"):
        try:
            iteration, learned_net, current_step, history, extra = hdf5.load_solver_state(
                state_file, [tuple(h.shape) for h in solver.history])
        except hdf5.HDF5Error as e:
            raise SolverError(str(e)) from None
        extra = resume_state.decode(extra, state_file) if extra is not None else None
    else:
        data = read_file(state_file, binary=True)
        state = parse_binary_proto(data, caffe_pb2.SolverState, state_file)
        extra = resume_state.decode(data, state_file)
        learned_net = state.learned_net if state.HasField("learned_net") else None
        iteration, current_step = state.iter, state.current_step
        if len(state.history) != len(solver.history):
            raise SolverError(f"{state_file}: {len(state.history)} history blobs, but a {solver.type} solver on "
                              f"this net has {len(solver.history)} ({solver.history_slots} per parameter blob)")
        history = [blobproto_to_array(blob) for blob in state.history]
        for i, (h, values) in enumerate(zip(solver.history, history)):
            if values.size != h.numel():
                raise SolverError(f"{state_file}: history blob {i} has shape {values.shape}, the parameter "
                                  f"has shape {tuple(h.shape)}")
    if learned_net is not None:
        solver.net.copy_from(_find_learned_net(learned_net, state_file))
    for h, values in zip(solver.history, history):
        with torch.no_grad():
            h.copy_(torch.from_numpy(np.asarray(values, np.float32).reshape(h.shape)))
    solver.iter = iteration
    solver.current_step = current_step
    glog.info("sgd_solver.cpp:358", f"{solver.type}Solver: restoring history")
    resume_state.apply(extra, [solver.net] + list(solver.test_nets), state_file)
    solver.last_snapshot_iter = solver.iter


def _find_learned_net(name, state_file):
    folder = os.path.dirname(state_file)
    tries = [name, os.path.join(folder, name), os.path.join(folder, os.path.basename(name))]
    for path in tries:
        if os.path.isfile(path):
            return path
    raise SolverError(f"{state_file}: its learned_net {name!r} is not found (tried {', '.join(dict.fromkeys(tries))})")
