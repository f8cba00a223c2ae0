"""parse_log and plot_training_log: a `caffe train` log as tables of its train and test outputs
(Caffe's tools/extra/parse_log.py) and a chart of any of their columns.

    parse_log [--verbose] [--delimiter=,] LOGFILE OUTPUT_DIR
        writes OUTPUT_DIR/<log name>.train and .test: CSV rows NumIters, Seconds, LearningRate and
        one column per net output ("Train net output #0: loss = ..."), as Caffe's script does
        (a row is kept once it has every column of the first row; the first row's NaN learning
        rate is taken from the second). Seconds count from the "Solving" line.
    plot_training_log [-x=NumIters|Seconds] [-out=PNG] LOGFILE COLUMN [COLUMN ...]
        a PNG of the columns (e.g. loss, accuracy, LearningRate) of both tables against the
        iterations or the seconds; the default PNG is the log's name with _<columns>.png.

Both glog time formats are read: `I0210 13:39:22.381027` (the year from the file's change
time, advanced when the month goes back, as Caffe's script does) and `I20240210 13:39:22.381027`.
"""
import collections
import csv
import datetime
import io
import math
import os
import re
import sys

from ..plot import line_chart
from ..atomic_file import atomic_write
from .flags import Flag, parse_or_exit

_ITERATION = re.compile(r"Iteration (\d+)")
_OUTPUT = {kind: re.compile(kind + r" net output #(\d+): (\S+) = ([\.\deE+-]+)") for kind in ("Train", "Test")}
_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")
_STAMP = re.compile(r"^[IWEF](\d{4}|\d{8}) (\d+):(\d+):(\d+)\.(\d+)")

PARSE_FLAGS = {"verbose": Flag(False, "Print some extra info (e.g., output filenames)"),
               "delimiter": Flag(",", "Column delimiter in output files")}
PLOT_FLAGS = {"x": Flag("NumIters", "The x axis: NumIters or Seconds"),
              "out": Flag("", "The PNG to write (default: LOGFILE's name with _<columns>.png)")}


class LogError(ValueError):
    """A log that cannot be parsed or plotted as asked; the message names the file."""


def _time(line, year):
    """The time stamp of a glog line (its own year if it has one, else `year`); None if it has none."""
    m = _STAMP.match(line.strip())
    if not m:
        return None
    day = m.group(1)
    if len(day) == 8:
        year, day = int(day[:4]), day[4:]
    try:
        return datetime.datetime(year, int(day[:2]), int(day[2:]), int(m.group(2)), int(m.group(3)),
                                 int(m.group(4)), int(m.group(5)))
    except ValueError:
        return None


def _add_output(regex, row, rows, line, iteration, seconds, rate):
    """Caffe's parse_line_for_net_output: start or extend the row of this iteration; keep it once
    it has as many columns as the first row."""
    match = regex.search(line)
    if match:
        if not row or row["NumIters"] != iteration:
            if row:
                rows.append(row)
            row = collections.OrderedDict([("NumIters", iteration), ("Seconds", seconds), ("LearningRate", rate)])
        row[match.group(2)] = float(match.group(3))
    if row and rows and len(row) == len(rows[0]):
        rows.append(row)
        row = None
    return row


def parse_log(path):
    """(train rows, test rows) of a training log, each row an OrderedDict of its columns."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror}") from None
    year = datetime.datetime.fromtimestamp(os.path.getctime(path)).year
    first = next((i for i, line in enumerate(lines) if "Solving" in line), None)
    start = None if first is None else _time(lines[first], year)
    if start is None:
        raise LogError(f"{path}: no 'Solving' line with a time stamp: not a caffe train log")
    iteration, rate, last = -1, float("nan"), start
    rows = {"Train": [], "Test": []}
    current = {"Train": None, "Test": None}
    for line in lines[first + 1:]:
        match = _ITERATION.search(line)
        if match:
            iteration = float(match.group(1))
        if iteration == -1:
            continue
        time = _time(line, year)
        if time is None:
            continue
        if time.month < last.month and len(_STAMP.match(line.strip()).group(1)) == 4:  # a new year
            year += 1
            time = _time(line, year)
        last = time
        seconds = (time - start).total_seconds()
        match = _LEARNING_RATE.search(line)
        if match:
            rate = float(match.group(1))
        for kind in rows:
            current[kind] = _add_output(_OUTPUT[kind], current[kind], rows[kind], line, iteration, seconds, rate)
    for table in rows.values():
        if len(table) > 1:
            table[0]["LearningRate"] = table[1]["LearningRate"]
    return rows["Train"], rows["Test"]


def csv_text(rows, delimiter=","):
    """The rows as Caffe's script writes them (csv.excel with `delimiter`)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()), dialect=csv.excel, delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv=None):
    """The parse_log tool."""
    flags, args = parse_or_exit(sys.argv[1:] if argv is None else argv, PARSE_FLAGS, "parse_log",
                                "Parse a Caffe training log into two CSV files containing training and testing "
                                "information\nUsage: parse_log [FLAGS] LOGFILE OUTPUT_DIR")
    if len(args) != 2:
        print("Usage: parse_log [FLAGS] LOGFILE OUTPUT_DIR", file=sys.stderr)
        return 1
    log, out_dir = args
    try:
        if len(flags["delimiter"]) != 1:
            raise LogError(f"-delimiter={flags['delimiter']!r}: must be one character")
        tables = parse_log(log)
        if not os.path.isdir(out_dir):
            raise LogError(f"{out_dir}: not a directory")
    except LogError as e:
        print(f"parse_log: {e}", file=sys.stderr)
        return 1
    for suffix, rows in zip((".train", ".test"), tables):
        name = os.path.join(out_dir, os.path.basename(log) + suffix)
        if not rows:
            if flags["verbose"]:
                print(f"Not writing {name}; no lines to write")
            continue
        atomic_write(name, csv_text(rows, flags["delimiter"]))
        if flags["verbose"]:
            print(f"Wrote {name}")
    return 0


def plot(log, columns, x="NumIters", out=""):
    """Draw `columns` of the log's train and test tables against `x`; returns the PNG's path."""
    if x not in ("NumIters", "Seconds"):
        raise LogError(f"-x must be NumIters or Seconds, not {x!r}")
    series = {}
    for kind, rows in zip(("train", "test"), parse_log(log)):
        for column in columns:
            points = [(row[x], row[column]) for row in rows if column in row and not math.isnan(row[column])]
            if points:
                series[f"{kind} {column}"] = tuple(zip(*points))
    missing = [c for c in columns if not any(name.endswith(" " + c) for name in series)]
    if missing:
        known = sorted({k for rows in parse_log(log) for row in rows for k in row} - {"NumIters", "Seconds"})
        raise LogError(f"{log}: no column {', '.join(missing)} in its tables (columns: {', '.join(known) or 'none'})")
    out = out or os.path.splitext(log)[0] + "_" + "_".join(columns) + ".png"
    line_chart(series, out, os.path.basename(log), "iterations" if x == "NumIters" else "seconds", ", ".join(columns))
    return out


def main_plot(argv=None):
    """The plot_training_log tool."""
    flags, args = parse_or_exit(sys.argv[1:] if argv is None else argv, PLOT_FLAGS, "plot_training_log",
                                "Plot columns of a Caffe training log against iterations or seconds\n"
                                "Usage: plot_training_log [FLAGS] LOGFILE COLUMN [COLUMN ...]")
    if len(args) < 2:
        print("Usage: plot_training_log [FLAGS] LOGFILE COLUMN [COLUMN ...]", file=sys.stderr)
        return 1
    try:
        print(plot(args[0], args[1:], flags["x"], flags["out"]))
    except (LogError, OSError) as e:
        print(f"plot_training_log: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
