"""Caffe's solvers: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam (one module each) on a shared
base (`base.Solver`: nets, training loop, testing, lr policies, snapshots)."""
from .base import Solver, claim_snapshot_prefix, get_solver, get_solver_from_string, register_solver, solver_class, weighted_loss, format_float  # noqa: F401
from .lr_policy import SolverError, learning_rate  # noqa: F401
from .sgd import SGDSolver  # noqa: F401
from .nesterov import NesterovSolver  # noqa: F401
from .adagrad import AdaGradSolver  # noqa: F401
from .rmsprop import RMSPropSolver  # noqa: F401
from .adadelta import AdaDeltaSolver  # noqa: F401
from .adam import AdamSolver  # noqa: F401
