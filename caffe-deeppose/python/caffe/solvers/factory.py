"""The solver types by name (Caffe's SolverRegistry): `register_solver` adds one, `get_solver`
makes the solver a solver file or SolverParameter names."""
from ..formats.protoio import parse_prototxt
from ..formats.upgrade import UpgradeError, upgrade_solver
from ..proto import caffe_pb2
from .lr_policy import SolverError
from .params import read_solver_param

_SOLVERS = {}


def register_solver(type_name):
    """Class decorator: the solver class for `type: "<type_name>"`."""

    def decorate(cls):
        _SOLVERS[type_name] = cls
        cls.type = type_name
        return cls

    return decorate


def solver_class(type_name):
    try:
        return _SOLVERS[type_name]
    except KeyError:
        raise SolverError(f"unknown solver type {type_name!r}; known: {', '.join(_SOLVERS)}") from None


def get_solver_from_string(text):
    """The solver for a SolverParameter given as prototxt text (`net` paths are relative to the
    working directory)."""
    param = parse_prototxt(text, caffe_pb2.SolverParameter(), "<solver string>")
    try:
        upgrade_solver(param, "<solver string>")
    except UpgradeError as e:
        raise SolverError(str(e)) from None
    return get_solver(param)


def get_solver(solver_file_or_param):
    """The solver of the type a solver file (or SolverParameter) names (`type`, or the legacy
    `solver_type`); pycaffe's `caffe.get_solver`."""
    if isinstance(solver_file_or_param, caffe_pb2.SolverParameter):
        param = caffe_pb2.SolverParameter()
        param.CopyFrom(solver_file_or_param)
        upgrade_solver(param, "<SolverParameter>")
    else:
        param = read_solver_param(solver_file_or_param)
    return solver_class(param.type)(param)
