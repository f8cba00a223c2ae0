"""Caffe's learning-rate policies (SGDSolver::GetLearningRate), `iter` = updates done so far.

- fixed:     base_lr
- step:      base_lr * gamma ^ floor(iter / stepsize)
- exp:       base_lr * gamma ^ iter
- inv:       base_lr * (1 + gamma * iter) ^ (-power)
- multistep: base_lr * gamma ^ current_step; current_step moves past at most one `stepvalue`
             per call (so it is part of the solver state)
- poly:      base_lr * (1 - iter / max_iter) ^ power
- sigmoid:   base_lr / (1 + exp(-gamma * (iter - stepsize)))
"""
import numpy as np

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


class SolverError(ValueError):
    """A solver that cannot be set up or run; the message names the field, file or iteration."""


def _check(param):
    policy = param.lr_policy
    if policy not in POLICIES:
        raise SolverError(f"unknown lr_policy {policy!r}; Caffe knows {', '.join(POLICIES)}")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise SolverError(f"lr_policy {policy!r} needs stepsize > 0, got {param.stepsize}")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise SolverError(f"lr_policy {policy!r} needs gamma >= 0, got {param.gamma}")
    if policy == "poly" and param.max_iter <= 0:
        raise SolverError(f"lr_policy 'poly' needs max_iter > 0, got {param.max_iter}")


def learning_rate(param, iteration, current_step):
    """(rate, current_step) for the update made after `iteration` updates; the rate is rounded
    to float32 like Caffe's `Dtype rate`."""
    _check(param)
    policy = param.lr_policy
    base, gamma, it = np.float64(param.base_lr), np.float64(param.gamma), np.float64(iteration)
    power = np.float64(param.power)
    if policy == "step":
        current_step = iteration // param.stepsize
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and iteration >= param.stepvalue[current_step]:
            current_step += 1
    with np.errstate(all="ignore"):  # overflow, pow of a negative number: inf / nan, as in C++
        rate = {
            "fixed": lambda: base,
            "step": lambda: base * gamma ** current_step,
            "exp": lambda: base * gamma ** it,
            "inv": lambda: base * (1.0 + gamma * it) ** -power,
            "multistep": lambda: base * gamma ** current_step,
            "poly": lambda: base * (1.0 - it / param.max_iter) ** power,
            "sigmoid": lambda: base / (1.0 + np.exp(-gamma * (it - param.stepsize))),
        }[policy]()
    return float(np.float32(rate)), current_step
