"""Nesterov's accelerated gradient (nesterov_solver.cpp): history' = momentum * history + rate * diff;
update = (1 + momentum) * history' - momentum * history."""
import torch

from .factory import register_solver
from .sgd import SGDSolver


@register_solver("Nesterov")
class NesterovSolver(SGDSolver):
    def compute_update(self, grads, rates):
        history, momentum = self._slots[0], self.param.momentum
        previous = torch._foreach_mul(history, -momentum)
        torch._foreach_mul_(grads, rates)
        torch._foreach_add_(grads, history, alpha=momentum)  # the new history
        torch._foreach_copy_(history, grads)
        torch._foreach_add_(previous, grads, alpha=1.0 + momentum)
        torch._foreach_copy_(grads, previous)
