"""The solver: Caffe's Solver + SGDSolver machinery shared by every solver type (snapshots and
resuming: caffe.solvers.snapshot; the types by name: caffe.solvers.factory).

One training iteration (`step`): clear the param diffs, test if due, `iter_size` forward/backward
passes (the diffs accumulate), then `apply_update` in Caffe's order:
rate = lr_policy(iter) -> clip the diffs to `clip_gradients` by their global L2 norm ->
normalise (diff /= iter_size) -> regularise (diff += weight_decay * decay_mult * data, or
* sign(data) for L1) -> `compute_update` (the type's own rule, which leaves the update in the
diff, using the per-param rate lr * lr_mult) -> data -= diff; iter += 1.

Differences from Caffe, on purpose: a NaN or infinite loss stops training with `SolverError`
naming the iteration, before the weights are touched (Caffe would go on and ruin them);
`solver_mode` is read by the `caffe` tool, while pycaffe solvers compute where
`caffe.set_mode_*` says (as in pycaffe).
"""
import math
import time

import numpy as np
import torch

from .. import common, glog
from ..blob import settle_diff
from ..formats.protoio import prototxt_text
from ..proto import caffe_pb2
from . import resume_state
from .lr_policy import SolverError, learning_rate
from .params import build_test_nets, build_train_net, read_solver_param
from .snapshot import check_snapshot_prefix, claim_snapshot_prefix, restore_snapshot, write_snapshot

NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"  # actions requested from outside (signals)


def format_float(x):
    """A number as C++'s ostream prints a float (6 significant digits)."""
    return f"{float(x):.6g}"


def weighted_loss(net):
    """The net's loss after a forward: sum of loss_weight * top (Caffe's Forward(&loss))."""
    return sum(w * float(net.blobs[n].data.sum()) for n, w in net.blob_loss_weights.items() if w)


class Solver:
    """A Caffe solver (pycaffe's `caffe.SGDSolver(path)` etc.).

    `solver.net`, `solver.test_nets`, `solver.iter`, `solver.lr`, `solver.param`, `step(n)`,
    `solve([resume_file])`, `snapshot()`, `restore(path)`, `apply_update()`, `add_callback()`.
    Subclasses give `history_slots` (history blobs per param) and `compute_update`.
    """

    history_slots = 1
    takes_momentum = True  # AdaGrad and RMSProp refuse a momentum, as in Caffe

    def __init__(self, solver_file_or_param):
        if isinstance(solver_file_or_param, caffe_pb2.SolverParameter):
            param = caffe_pb2.SolverParameter()
            param.CopyFrom(solver_file_or_param)
        else:
            param = read_solver_param(solver_file_or_param)
        self.param = param
        glog.info("solver.cpp:45", f"Initializing solver from parameters: \n{prototxt_text(param)}")  # DebugString
        if param.average_loss < 1:
            raise SolverError(f"average_loss must be >= 1, got {param.average_loss}")
        if param.iter_size < 1:
            raise SolverError(f"iter_size must be >= 1, got {param.iter_size}")
        if not self.takes_momentum and param.momentum != 0:
            raise SolverError(f"Momentum cannot be used with {self.type}.")
        if param.regularization_type not in ("L1", "L2"):
            raise SolverError(f"unknown regularization_type {param.regularization_type!r} (L1 or L2)")
        learning_rate(param, 0, 0)  # checks the lr_policy's fields
        check_snapshot_prefix(param)
        if param.random_seed >= 0:  # each worker its own stream (Dropout, mirror, crop), as Caffe
            common.set_random_seed(param.random_seed + common.solver_rank())
        self.net = build_train_net(param)
        self.test_nets = build_test_nets(param)
        for test_net in self.test_nets:
            test_net.share_with(self.net)
        glog.info("solver.cpp:57", "Solver scaffolding done.")
        self.iter = 0
        self.current_step = 0
        self._callbacks = []
        self._action_function = None
        self._early_exit = False
        self._testing = None  # (test net id, its data positions when the test began) during a test
        self.last_snapshot_iter = None  # the iteration of the last snapshot written or restored
        self.prefix_lock = None  # the snapshot prefix's lock, held while solving (see solve)
        self.worker_states = None  # (iteration, every worker's resume_state.worker_state), from caffe.NCCL
        self._losses, self._smoothed_loss = [], 0.0
        self._init_history()

    # -- parameters and history ---------------------------------------------------------------
    def _init_history(self):
        net = self.net
        self._all_params = net.all_params
        learnable = net.learnable_params
        specs = dict(zip(map(id, learnable), net.param_specs))
        self._params = learnable
        self._lr_mults = [np.float32(specs[id(p)][0]) for p in learnable]
        self._decay_mults = [np.float32(specs[id(p)][1]) for p in learnable]
        self.history = [torch.zeros_like(p, requires_grad=False)
                        for _ in range(self.history_slots) for p in self._all_params]
        index = {id(p): i for i, p in enumerate(self._all_params)}
        n = len(self._all_params)
        self._slots = [[self.history[s * n + index[id(p)]] for p in learnable] for s in range(self.history_slots)]

    @property
    def lr(self):
        """The learning rate the next update uses (pycaffe's GetLearningRate)."""
        return learning_rate(self.param, self.iter, self.current_step)[0]

    # -- the update ----------------------------------------------------------------------------
    def apply_update(self):
        """Update the weights from the accumulated diffs (Caffe's SGDSolver::ApplyUpdate)."""
        rate, step = learning_rate(self.param, self.iter, self.current_step)
        if self.param.lr_policy == "multistep" and step != self.current_step:
            glog.info("sgd_solver.cpp:46", f"MultiStep Status: Iteration {self.iter}, step = {step}")
        self.current_step = step
        if self.param.display and self.iter % self.param.display == 0:
            glog.info("sgd_solver.cpp:112", f"Iteration {self.iter}, lr = {format_float(rate)}")
        if self._params:
            for p in self._params:  # a param no loss reached has a zero diff
                settle_diff(p)
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in self._params]
            with torch.no_grad():
                self._clip_gradients(grads)
                if self.param.iter_size > 1:
                    torch._foreach_mul_(grads, 1.0 / self.param.iter_size)
                self._update_params(grads, [float(np.float32(rate) * m) for m in self._lr_mults])
        self.iter += 1

    def _update_params(self, grads, rates):
        """Caffe's Regularize, ComputeUpdateValue and Net::Update on every learnable param."""
        self._regularize(grads)
        updates = self.compute_update(grads, rates)
        torch._foreach_sub_(self._params, grads if updates is None else updates)
        if updates is not None:
            self.net.defer_param_diffs(self._params, updates)

    def _clip_gradients(self, grads):
        clip = self.param.clip_gradients
        if clip < 0:
            return
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        if norm > clip:
            scale = clip / norm
            glog.info("sgd_solver.cpp:137", f"Gradient clipping: scaling down gradients (L2 norm "
                                            f"{format_float(norm)} > {format_float(clip)}) by scale factor "
                                            f"{format_float(scale)}")
            torch._foreach_mul_(grads, scale)

    def _regularize(self, grads):
        """diff += weight_decay * decay_mult * (data, or sign(data) for L1); params sharing a
        local decay are done in one fused op."""
        groups = {}
        for i, decay in enumerate(self._decays()):
            if decay:
                groups.setdefault(decay, []).append(i)
        l1 = self.param.regularization_type == "L1"
        for decay, idx in groups.items():
            data = [self._params[i] for i in idx]
            torch._foreach_add_([grads[i] for i in idx], torch._foreach_sign(data) if l1 else data, alpha=decay)

    def _decays(self):
        """Each learnable param's local weight decay (weight_decay * decay_mult)."""
        return [float(np.float32(self.param.weight_decay) * mult) for mult in self._decay_mults]

    def compute_update(self, grads, rates):
        """Turn the regularised diffs into the update (in place), updating the history;
        `rates[i]` = lr * lr_mult of param i, `self._slots[s][i]` its history blob s. Returns
        None, or the tensors that hold the update if they are not the diffs (the diffs then
        read as them, copied only when read: `Net.defer_param_diffs`)."""
        raise NotImplementedError

    def share_weights(self, net):
        """Make `net` use this solver's net's weights (pycaffe's `solver.share_weights(net)`)."""
        net.share_with(self.net)

    # -- training loop -------------------------------------------------------------------------
    def add_callback(self, on_start, on_gradients_ready=None):
        """Call `on_start()` before each iteration's passes and `on_gradients_ready()` before its
        update; or give one object with both methods (pycaffe's `solver.add_callback(nccl)`)."""
        if on_gradients_ready is None:
            on_start, on_gradients_ready = on_start.on_start, on_start.on_gradients_ready
        self._callbacks.append((on_start, on_gradients_ready))

    def set_action_function(self, function):
        """`function()` -> "none", "stop" or "snapshot", asked after each iteration (the caffe tool's
        signal handler)."""
        self._action_function = function

    def _requested_action(self):
        return self._action_function() if self._action_function else NONE

    def _update_smoothed_loss(self, loss, start_iter):
        average = self.param.average_loss
        if len(self._losses) < average:
            self._losses.append(loss)
            size = len(self._losses)
            self._smoothed_loss = (self._smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % average
            self._smoothed_loss += (loss - self._losses[idx]) / average
            self._losses[idx] = loss

    def step(self, iters):
        """Run `iters` training iterations (Caffe's Solver::Step)."""
        p = self.param
        if iters > 0 and not any(self.net.blob_loss_weights.values()):
            raise SolverError(f"the train net {self.net.name!r} has no loss (no top has a non-zero loss_weight): "
                              "training it would change the weights by weight decay alone. Add a loss layer, or "
                              "set loss_weight on the top to minimise")
        start_iter, stop_iter = self.iter, self.iter + int(iters)
        self._losses, self._smoothed_loss = [], 0.0
        timer, last_iter = time.perf_counter(), self.iter
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if (p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization)
                    and common.root_solver()):
                self.test_all()
                if self._early_exit:
                    break
            for on_start, _ in self._callbacks:
                on_start()
            display = p.display and self.iter % p.display == 0
            loss = sum(self.net.forward_backward() for _ in range(p.iter_size)) / p.iter_size
            if not math.isfinite(loss):
                raise SolverError(f"Iteration {self.iter}: the loss is {loss}; stopped before updating the "
                                  "weights (lower base_lr, check the data, or clip_gradients)")
            self._update_smoothed_loss(loss, start_iter)
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - last_iter) / (lapse or 1.0)
                glog.info("solver.cpp:239", f"Iteration {self.iter} ({format_float(per_s)} iter/s, "
                                            f"{format_float(lapse)}s/{p.display} iters), "
                                            f"loss = {format_float(self._smoothed_loss)}")
                timer, last_iter = time.perf_counter(), self.iter
                self._log_outputs(self.net, "Train", "solver.cpp:258",
                                  [self.net.blobs[n].data.ravel() for n in self.net.outputs])
            for _, on_gradients_ready in self._callbacks:
                on_gradients_ready()
            self.apply_update()
            request = self._requested_action()
            if common.root_solver() and ((p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT):
                self.snapshot()
            if request == STOP:
                self._early_exit = True
                break

    def solve(self, resume_file=None):
        """Train up to max_iter (Caffe's Solver::Solve), optionally resuming from a .solverstate.
        The root solver holds the snapshot prefix's lock meanwhile, as `caffe train` does, so that a
        second run on the prefix refuses (`filelock.LockedError` naming it); a caller that holds it
        already (`caffe train`) sets `prefix_lock`."""
        if self.prefix_lock is not None or not common.root_solver():
            self._solve(resume_file)
            return
        self.prefix_lock = claim_snapshot_prefix(self.param.snapshot_prefix)
        try:
            self._solve(resume_file)
        finally:
            self.prefix_lock.release()
            self.prefix_lock = None

    def _solve(self, resume_file):
        p = self.param
        glog.info("solver.cpp:289", f"Solving {self.net.name}")
        glog.info("solver.cpp:290", f"Learning Rate Policy: {p.lr_policy}")
        self._early_exit = False
        if resume_file:
            glog.info("solver.cpp:296", f"Restoring previous solver status from {resume_file}")
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if not common.root_solver():  # only the root solver snapshots, displays and tests
            return
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self._early_exit:
            glog.info("solver.cpp:314", "Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            with torch.no_grad():
                self.net.forward()
            self._update_smoothed_loss(weighted_loss(self.net), start_iter)
            glog.info("solver.cpp:327", f"Iteration {self.iter}, loss = {format_float(self._smoothed_loss)}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        glog.info("solver.cpp:332", "Optimization Done.")

    # -- testing ---------------------------------------------------------------------------------
    def test_all(self):
        for i in range(len(self.test_nets)):
            if self._early_exit:
                break
            self.test(i)

    def test(self, test_net_id=0):
        """Average the test net's outputs over test_iter batches and log them (Caffe's Solver::Test)."""
        glog.info("solver.cpp:347", f"Iteration {self.iter}, Testing net (#{test_net_id})")
        net, n_iter = self.test_nets[test_net_id], self.param.test_iter[test_net_id]
        self._testing = (test_net_id, resume_state.net_positions(net))
        try:
            self._test(net, n_iter)
        finally:
            self._testing = None

    def _test(self, net, n_iter):
        scores, loss = None, 0.0
        for _ in range(n_iter):
            request = self._requested_action()
            while request != NONE:
                if request == SNAPSHOT:
                    self.snapshot()
                elif request == STOP:
                    self._early_exit = True
                request = self._requested_action()
            if self._early_exit:
                break
            with torch.no_grad():
                outputs = net.forward()
            if self.param.test_compute_loss:
                loss += weighted_loss(net)
            result = [np.array(outputs[n], np.float64).ravel() for n in net.outputs]
            scores = result if scores is None else [s + r for s, r in zip(scores, result)]
        if self._early_exit:  # the test net reads again from where this test began (as a resumed run does)
            resume_state.seek_net(net, self._testing[1], f"test net #{self._testing[0]}")
            glog.info("solver.cpp:393", "Test interrupted.")
            return
        if self.param.test_compute_loss:
            glog.info("solver.cpp:398", f"Test loss: {format_float(loss / n_iter)}")
        self._log_outputs(net, "Test", "solver.cpp:414", [s / n_iter for s in scores or []])

    @staticmethod
    def _log_outputs(net, which, where, values):
        """`    Train net output #k: name = v (* w = w*v loss)` for every element of every output."""
        weights = net.blob_loss_weights
        k = 0
        for name, vals in zip(net.outputs, values):
            w = weights[name]
            for v in vals:
                extra = f" (* {format_float(w)} = {format_float(np.float32(w) * np.float32(v))} loss)" if w else ""
                glog.info(where, f"    {which} net output #{k}: {name} = {format_float(v)}{extra}")
                k += 1

    # -- snapshots ---------------------------------------------------------------------------------
    def snapshot(self):
        """Write <prefix>_iter_N.caffemodel and .solverstate (caffe.solvers.snapshot.write_snapshot)."""
        write_snapshot(self)

    def restore(self, state_file):
        """Continue from a .solverstate or .solverstate.h5 (caffe.solvers.snapshot.restore_snapshot)."""
        restore_snapshot(self, state_file)
