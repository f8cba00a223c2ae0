"""SGD with momentum (sgd_solver.cpp): history = momentum * history + rate * diff; update = history
(computed into the history, which the diffs then read as, without a copy of 44M floats an
iteration on the DeepPose net)."""
import torch

from .base import Solver, register_solver


@register_solver("SGD")
class SGDSolver(Solver):
    def compute_update(self, grads, rates):
        history = self._slots[0]
        torch._foreach_mul_(grads, rates)
        for g, h in zip(grads, history):
            torch.add(g, h, alpha=self.param.momentum, out=h)
        return history
