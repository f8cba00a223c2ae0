"""Caffe's solvers: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam (one module each) on a shared
base (`solver.Solver`: nets, training loop, testing, the update's lr policy, clipping and
regularisation), with snapshots and resuming apart (`snapshot`) and the types by name (`factory`)."""
from .factory import get_solver, get_solver_from_string, register_solver, solver_class  # noqa: F401
from .lr_policy import SolverError, learning_rate  # noqa: F401
from .snapshot import claim_snapshot_prefix  # noqa: F401
from .solver import Solver, format_float, weighted_loss  # noqa: F401
from .sgd import SGDSolver  # noqa: F401
from .nesterov import NesterovSolver  # noqa: F401
from .adagrad import AdaGradSolver  # noqa: F401
from .rmsprop import RMSPropSolver  # noqa: F401
from .adadelta import AdaDeltaSolver  # noqa: F401
from .adam import AdamSolver  # noqa: F401
