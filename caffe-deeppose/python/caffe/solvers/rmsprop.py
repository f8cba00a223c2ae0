"""RMSProp (rmsprop_solver.cpp): history = rms_decay * history + (1 - rms_decay) * diff^2;
update = rate * diff / (sqrt(history) + delta)."""
import torch

from .factory import register_solver
from .sgd import SGDSolver


@register_solver("RMSProp")
class RMSPropSolver(SGDSolver):
    takes_momentum = False

    def compute_update(self, grads, rates):
        history, decay = self._slots[0], self.param.rms_decay
        torch._foreach_mul_(history, decay)
        torch._foreach_addcmul_(history, grads, grads, value=1.0 - decay)
        denom = torch._foreach_sqrt(history)
        torch._foreach_add_(denom, self.param.delta)
        torch._foreach_div_(grads, denom)
        torch._foreach_mul_(grads, rates)
