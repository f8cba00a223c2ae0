"""Log lines in glog's format, as Caffe writes them to stderr, so that log-parsing habits keep
working: `I1123 12:00:00.123456  4242 solver.cpp:218] Iteration 20 ..., loss = 0.53`."""
import datetime
import os
import sys

_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
min_level = int(os.environ.get("GLOG_minloglevel", "0"))
root_solver = True  # False in the workers other than rank 0: they log warnings and errors only


def log(severity, where, message, stream=None):
    """Write one line; `severity` is I, W, E or F, `where` the source tag (e.g. "solver.cpp:218").
    As glog, a message ending with a newline (a DebugString) gets no second one."""
    if _LEVELS[severity] < min_level or (severity == "I" and not root_solver):
        return
    now = datetime.datetime.now()
    end = "" if message.endswith("\n") else "\n"
    line = f"{severity}{now:%m%d %H:%M:%S}.{now.microsecond:06d} {os.getpid():>6d} {where}] {message}{end}"
    stream = stream or sys.stderr
    stream.write(line)
    stream.flush()


def info(where, message):
    log("I", where, message)


def warning(where, message):
    log("W", where, message)


def error(where, message):
    log("E", where, message)


def init_log(level=None, stderr=None):
    """pycaffe's `caffe.init_log([level[, stderr]])`: log only messages of severity >= level
    (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL). Lines always go to stderr, so `stderr` changes nothing."""
    global min_level
    if level is not None:
        min_level = int(level)

