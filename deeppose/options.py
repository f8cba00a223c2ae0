"""The values of the commands' options, checked where they are parsed: argparse `type=` functions
whose error says what the value must be and what it was (argparse names the option:
"argument --iter1: must be a positive integer, got -3"), and `env_default`, an option's default
read from an environment variable, whose bad value is reported as the variable's."""

from __future__ import annotations

import argparse
import os


class EnvValue(str):
    """An option's default as an environment variable gives it (a str, converted by the option's
    type as argparse converts string defaults), remembering the variable's name."""

    variable: str

    def __new__(cls, text: str, variable: str):
        value = super().__new__(cls, text)
        value.variable = variable
        return value


def env_default(variable: str, default: str | None = None) -> str | None:
    """The default of an option: the environment variable's value if it is set, else `default`."""
    text = os.environ.get(variable)
    return default if text is None else EnvValue(text, variable)


def _error(text: str, must: str) -> argparse.ArgumentTypeError:
    got = text if text.strip() == text and text else repr(text)
    where = f"the environment variable {text.variable} (its default) " if isinstance(text, EnvValue) else ""
    return argparse.ArgumentTypeError(f"{where}must be {must}, got {got}")


def _number(text: str, kind, valid, must: str):
    """`text` as a `kind` (int or float) for which `valid(value)` holds."""
    try:
        value = kind(text)
    except ValueError:
        raise _error(text, must) from None
    if not valid(value):
        raise _error(text, must)
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    return _number(text, float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


def one_of(*names: str):
    """A type accepting exactly one of `names` (unlike `choices`, it checks a default too)."""

    def choice(text: str) -> str:
        if text not in names:
            raise _error(text, f"one of {', '.join(names)}")
        return text

    return choice


def image_size(text: str) -> tuple[int, int]:
    """COLSxROWS, both positive, e.g. 512x424."""
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise _error(text, "COLSxROWS, e.g. 512x424") from None
    if cols < 1 or rows < 1:
        raise _error(text, "COLSxROWS with both positive")
    return cols, rows


def device_ids(text: str) -> str:
    """'all' or device ids (integers >= 0) separated by ','."""
    if text != "all" and not all(g.isascii() and g.isdigit() for g in text.split(",")):
        raise _error(text, "'all' or device ids (integers >= 0) separated by ','")
    return text


class Extend(argparse.Action):
    """A repeatable option whose values (lists) add up; given on the command line, it replaces
    its default from the environment."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, self.dest)
        setattr(namespace, self.dest, (items if isinstance(items, list) else []) + values)


# the fields the driver sets itself (with their options); --solver1/--solver2 may not
DRIVER_SOLVER_FIELDS = {"max_iter": "--iter1/--iter2", "snapshot": "--iter1/--iter2", "random_seed": "--seed",
                        "solver_mode": "--schedule", "net": None, "net_param": None, "train_net": None,
                        "train_net_param": None, "test_net": None, "test_net_param": None,
                        "snapshot_prefix": None, "test_iter": "--test-iter", "test_interval": None}


def solver_fields(text: str) -> list[tuple[str, object]]:
    """`FIELD=VALUE ...` (whitespace-separated) as [(field, value)] of SolverParameter fields:
    numbers, true/false, enum value names, strings (quotes optional)."""
    from caffe.proto import caffe_pb2
    from google.protobuf.descriptor import FieldDescriptor as F

    out = []
    for item in text.split():
        name, sep, value = item.partition("=")
        field = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name.get(name)
        if not sep or not value:
            raise _error(text, "FIELD=VALUE items of the solver (e.g. lr_policy=poly power=1)")
        if field is None:
            raise _error(text, f"fields of Caffe's SolverParameter (no field {name!r})")
        if name in DRIVER_SOLVER_FIELDS:
            use = DRIVER_SOLVER_FIELDS[name]
            raise _error(text, f"fields the driver does not set itself ({name}: {'use ' + use if use else 'the run sets it'})")
        if field.type == F.TYPE_MESSAGE:
            raise _error(text, f"fields with one value ({name} is a message)")
        if field.type == F.TYPE_ENUM:
            if value not in field.enum_type.values_by_name:
                raise _error(text, f"{name} one of {', '.join(field.enum_type.values_by_name)}")
        elif field.type == F.TYPE_BOOL:
            if value not in ("true", "false"):
                raise _error(text, f"{name} true or false")
            value = value == "true"
        elif field.type != F.TYPE_STRING:
            kind = float if field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE) else int
            try:
                value = kind(value)
            except ValueError:
                raise _error(text, f"{name} {'a number' if kind is float else 'an integer'}") from None
        else:
            value = value.strip('"')
        out.append((name, value))
    return out
