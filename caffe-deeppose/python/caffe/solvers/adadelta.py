"""AdaDelta (adadelta_solver.cpp). Two history blobs per param (the .solverstate holds all the
gradient histories, then all the update histories):
g2 = momentum * g2 + (1 - momentum) * diff^2;
update = diff * sqrt((u2 + delta) / (g2 + delta)); u2 = momentum * u2 + (1 - momentum) * update^2;
update *= rate."""
import torch

from .factory import register_solver
from .sgd import SGDSolver


@register_solver("AdaDelta")
class AdaDeltaSolver(SGDSolver):
    history_slots = 2

    def compute_update(self, grads, rates):
        g2, u2 = self._slots
        momentum, delta = self.param.momentum, self.param.delta
        torch._foreach_mul_(g2, momentum)
        torch._foreach_addcmul_(g2, grads, grads, value=1.0 - momentum)
        ratio = torch._foreach_add(u2, delta)
        torch._foreach_div_(ratio, torch._foreach_add(g2, delta))
        torch._foreach_sqrt_(ratio)
        torch._foreach_mul_(grads, ratio)
        torch._foreach_mul_(u2, momentum)
        torch._foreach_addcmul_(u2, grads, grads, value=1.0 - momentum)
        torch._foreach_mul_(grads, rates)
