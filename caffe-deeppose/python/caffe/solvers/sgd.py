"""SGD with momentum (sgd_solver.cpp): history = momentum * history + rate * diff; update = history."""
import torch

from .base import Solver, register_solver


@register_solver("SGD")
class SGDSolver(Solver):
    def compute_update(self, grads, rates):
        history = self._slots[0]
        torch._foreach_mul_(grads, rates)
        torch._foreach_add_(grads, history, alpha=self.param.momentum)
        torch._foreach_copy_(history, grads)
