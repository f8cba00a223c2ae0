"""Fixtures and helpers of the engine's tests (tests/engine)."""
import os
import sys


def tool(name):
    """The path of a console script installed beside this Python (caffe, convert_imageset, ...)."""
    return os.path.join(os.path.dirname(sys.executable), name)
