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
