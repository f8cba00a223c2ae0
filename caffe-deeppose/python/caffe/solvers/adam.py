"""Adam (adam_solver.cpp). Two history blobs per param (all the m, then all the v):
m = beta1 * m + (1 - beta1) * diff; v = beta2 * v + (1 - beta2) * diff^2;
update = rate * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + delta), with t = iter + 1,
beta1 = momentum, beta2 = momentum2."""
import numpy as np
import torch

from .factory import register_solver
from .sgd import SGDSolver


@register_solver("Adam")
class AdamSolver(SGDSolver):
    history_slots = 2

    def compute_update(self, grads, rates):
        m, v = self._slots
        beta1, beta2 = np.float32(self.param.momentum), np.float32(self.param.momentum2)
        t = self.iter + 1
        correction = np.float32(np.sqrt(1.0 - np.float64(beta2) ** t) / (1.0 - np.float64(beta1) ** t))
        torch._foreach_mul_(m, float(beta1))
        torch._foreach_add_(m, grads, alpha=float(1 - beta1))
        torch._foreach_mul_(v, float(beta2))
        torch._foreach_addcmul_(v, grads, grads, value=float(1 - beta2))
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, self.param.delta)
        torch._foreach_copy_(grads, m)
        torch._foreach_div_(grads, denom)
        torch._foreach_mul_(grads, [r * float(correction) for r in rates])
