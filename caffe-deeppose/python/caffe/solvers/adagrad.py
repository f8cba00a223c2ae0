"""AdaGrad (adagrad_solver.cpp): history += diff^2; update = rate * diff / (sqrt(history) + delta)."""
import torch

from .factory import register_solver
from .sgd import SGDSolver


@register_solver("AdaGrad")
class AdaGradSolver(SGDSolver):
    takes_momentum = False

    def compute_update(self, grads, rates):
        history = self._slots[0]
        torch._foreach_addcmul_(history, grads, grads)
        denom = torch._foreach_sqrt(history)
        torch._foreach_add_(denom, self.param.delta)
        torch._foreach_div_(grads, denom)
        torch._foreach_mul_(grads, rates)
