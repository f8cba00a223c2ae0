"""SGD with momentum (sgd_solver.cpp): history = momentum * history + rate * diff; update = history
(computed into the history, which the diffs then read as, without a copy of 44M floats an
iteration on the DeepPose net). On CPU float32 params with L2 (or no) decay, the decay, the
history and the weight update are one pass of a C kernel per param (caffe.accel.native.sgd_update)."""
import torch

from ..accel import active, native
from .factory import register_solver
from .solver import Solver


@register_solver("SGD")
class SGDSolver(Solver):
    def compute_update(self, grads, rates):
        history = self._slots[0]
        torch._foreach_mul_(grads, rates)
        for g, h in zip(grads, history):
            torch.add(g, h, alpha=self.param.momentum, out=h)
        return history

    def _update_params(self, grads, rates):
        fused = (active("native_sgd") and type(self).compute_update is SGDSolver.compute_update
                 and self.param.regularization_type == "L2"
                 and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                         for t in (*self._params, *grads, *self._slots[0])))
        if not fused:
            return super()._update_params(grads, rates)
        lib, threads = native.library(), torch.get_num_threads()
        for p, g, h, decay, rate in zip(self._params, grads, self._slots[0], self._decays(), rates):
            lib.sgd_update(p.data_ptr(), g.data_ptr(), h.data_ptr(), p.numel(), decay, rate,
                           self.param.momentum, threads)
        self.net.defer_param_diffs(self._params, self._slots[0])
