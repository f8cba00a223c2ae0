"""Options named in their own words: every option of the driver (`python -m deeppose train`, its
DEEPPOSE_* defaults) and of the tools and model scripts is checked where it is parsed, and a bad
value ends the command with status 2 and a message naming the option (or the environment
variable) and the value (the Caffe tools' flags: tests/engine/test_options.py); a dataset
description file that fails (a syntax error, an exception while it runs, no DATASET) ends the
command with status 1 and a message naming file:line with the line's text."""
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from deeppose import cli, driver, evaluate
from tests import conftest

ROOT = Path(conftest.ROOT)


def refused(capsys, main, argv):
    """`main(argv)` exits with status 2 (argparse's); its message."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, value, must", [
    ("--iter1", "-3", "a positive integer"), ("--iter2", "0", "a positive integer"),
    ("--batch1", "x", "a positive integer"), ("--batch2", "-1", "a positive integer"),
    ("--lr1", "0", "a positive number"), ("--lr2", "nan", "a positive number"),
    ("--test-iter", "0", "a positive integer"), ("--gpus", "0,-1", "'all' or device ids"),
    ("--synth-train", "0", "a positive integer"), ("--synth-test", "2.5", "a positive integer"),
    ("--synth-seed", "-1", "an integer >= 0"), ("--per-image", "0", "a positive integer"),
    ("--seed", "-1", "an integer >= 0"), ("--schedule", "gpu", "one of auto, full, cpu"),
    ("--displacements", "random", "one of simulated, predictions"), ("--from", "train3", "one of data, "),
    ("--cpu-solver", "fast", "one of tuned, seed"), ("--targets", "inches", "one of box, pixels"),
    ("--solver1", "lr_policy", "FIELD=VALUE items"), ("--solver2", "momentum=0.9 foo=1", "fields of Caffe's SolverParameter (no field 'foo')"),
    ("--solver1", "max_iter=5", "fields the driver does not set itself (max_iter: use --iter1/--iter2)"),
    ("--solver2", "power=x", "power a number"), ("--solver1", "solver_type=RMS", "solver_type one of SGD, "),
    ("--solver1", "test_initialization=no", "test_initialization true or false"),
])
def test_driver_names_a_bad_option(capsys, option, value, must):
    message = refused(capsys, driver.main, [option, value])
    assert message.startswith(f"python -m deeppose train: error: argument {option}: must be {must}")
    assert message.endswith(f", got {value}")


ENV_CASES = [
    ("DEEPPOSE_ITER1", "-3"), ("DEEPPOSE_ITER2", "x"), ("DEEPPOSE_BATCH1", "0"), ("DEEPPOSE_BATCH2", "-2"),
    ("DEEPPOSE_LR1", "fast"), ("DEEPPOSE_LR2", "-1"), ("DEEPPOSE_TEST_ITER", "0"), ("DEEPPOSE_GPUS", "first"),
    ("DEEPPOSE_SYNTH_TRAIN", "0"), ("DEEPPOSE_SYNTH_TEST", ""), ("DEEPPOSE_SYNTH_SEED", "-5"),
    ("DEEPPOSE_PER_IMAGE", "0"), ("DEEPPOSE_SCHEDULE", "gpu"), ("DEEPPOSE_DISPLACEMENTS", "random"),
    ("DEEPPOSE_CPU_SOLVER", "fast"), ("DEEPPOSE_TARGETS", "inches"), ("DEEPPOSE_SOLVER1", "lr_policy=poly power"),
    ("DEEPPOSE_SOLVER2", "net=x.prototxt"),
]


@pytest.mark.parametrize("variable, value", ENV_CASES)
def test_driver_names_a_bad_environment_default(capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    message = refused(capsys, driver.main, [])
    assert f"the environment variable {variable} (its default) must be " in message
    assert message.endswith(f", got {value or repr(value)}")


def test_every_environment_default_is_checked():
    """Each DEEPPOSE_* variable the help names is one of the cases above."""
    named = {word.strip("[]") for word in driver.parser().format_help().split() if word.startswith("[DEEPPOSE_")}
    assert named == {variable for variable, _ in ENV_CASES}


def test_the_shell_script_names_the_option(tmp_path):
    """The issue's case: ./deeppose_train.sh --iter1 -3 stops before any work, naming --iter1."""
    r = subprocess.run(["bash", str(ROOT / "deeppose_train.sh"), "--iter1", "-3"], capture_output=True, text=True)
    assert r.returncode == 2 and "argument --iter1: must be a positive integer, got -3" in r.stderr
    assert "Traceback" not in r.stderr


def script(path):
    return runpy.run_path(str(ROOT / path))["main"]


@pytest.mark.parametrize("path, argv, option", [
    ("tools/make_synthetic_k2hpd.py", ["--train", "1", "--test", "1", "--workers", "0"], "--workers"),
    ("tools/make_synthetic_k2hpd.py", ["--train", "1", "--test", "1", "--sheet-count", "-1"], "--sheet-count"),
    ("tools/make_synthetic_k2hpd.py", ["--train", "1", "--test", "1", "--size", "64"], "--size"),
    ("tools/make_synthetic_k2hpd.py", ["--train", "1", "--test", "1", "--seed", "x"], "--seed"),
    ("data/K2HPD/get_stage.py", ["--stage", "0"], "--stage"),
    ("data/K2HPD/get_stage.py", ["--stage", "1", "--val-fraction", "1.5"], "--val-fraction"),
    ("data/K2HPD/get_stage.py", ["--stage", "2", "--per-image", "0"], "--per-image"),
    ("data/K2HPD/get_stage.py", ["--stage", "2", "--displacements", "random"], "--displacements"),
    ("data/K2HPD/get_stage.py", ["--stage", "1", "--seed", "-1"], "--seed"),
])
def test_tools_name_a_bad_option(capsys, path, argv, option):
    assert f"error: argument {option}: must be " in refused(capsys, script(path), argv)


@pytest.mark.parametrize("main, argv, option", [
    (lambda argv: evaluate.main(argv, n_models=1, default_plot="p.png"), ["m.caffemodel", "--batch", "0"], "--batch"),
    (cli.output_main, ["m.caffemodel", "--batch", "-4"], "--batch"),
    (cli.output_main, ["m.caffemodel", "--split", "validation"], "--split"),
])
def test_model_scripts_name_a_bad_option(capsys, main, argv, option):
    assert f"error: argument {option}: must be " in refused(capsys, main, argv)


BROKEN = {
    "syntax.py": ("x = 1\nDATASET = dict(name='two'\n", 2, "SyntaxError: '(' was never closed",
                  "DATASET = dict(name='two'"),
    "raises.py": ("import math\n\nDATASET = math.nope\n", 3, "AttributeError: module 'math' has no attribute 'nope'",
                  "DATASET = math.nope"),
    "invalid.py": ("from deeppose.dataset import DatasetDescription\n"
                   "DATASET = DatasetDescription(name='two', size=(32, 24), joint_names=('a', 'b'), limbs=((0, 5),),\n"
                   "    torso_joints=(0, 1), flip_pairs=(), alpha=1.0, root='data/two', image_dir='i',\n"
                   "    train_annotations='tr.txt', test_annotations='te.txt', image_name_format='{}.png')\n",
                   2, "ValueError: two: joint indices out of range", "DATASET = DatasetDescription(name='two'"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_description_file_is_named_with_its_line(tmp_path, monkeypatch, name):
    text, line, message, source = BROKEN[name]
    (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        driver.main(["--dataset", name])
    first, second = str(e.value.code).split("\n")
    assert first.startswith(f"error: the dataset description {name}:{line}: {message}")
    assert second.strip().startswith(source)


def test_a_description_without_dataset_is_named(tmp_path, monkeypatch):
    (tmp_path / "empty.py").write_text("JOINTS = 14\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        driver.main(["--dataset", "empty.py"])
    assert e.value.code == ("error: the dataset description empty.py: defines no DATASET "
                            "(a DatasetDescription or a dataset name)")


def test_a_broken_globalvar_is_named_and_the_command_ends_with_status_1(tmp_path):
    """Through the real command: status 1, no traceback (here globalvar.py, the settings file)."""
    (tmp_path / "globalvar.py").write_text('SEED = 0\nDATASET = "K2HPD" +\n')
    r = subprocess.run([sys.executable, "-m", "deeppose", "train"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error: the settings file globalvar.py:2: SyntaxError: invalid syntax\n    DATASET = \"K2HPD\" +" in r.stderr


def test_solver_fields_reach_the_run_local_solver_in_order(tmp_path, monkeypatch):
    """--solver1 items come after CPU_SOLVER (base_lr, lr_policy replaced), in their types; the
    command line replaces DEEPPOSE_SOLVER2; each field is logged as the driver's other changes."""
    monkeypatch.setenv("DEEPPOSE_SOLVER2", "lr_policy=step stepsize=50 gamma=0.5")
    args = driver.parser().parse_args(["--solver1", "lr_policy=poly power=1", "--solver1", "base_lr=3e-4",
                                       "--solver1", 'type="RMSProp"', "--solver1", "snapshot_after_train=false"])
    assert args.solver1 == [("lr_policy", "poly"), ("power", 1.0), ("base_lr", 3e-4), ("type", "RMSProp"),
                            ("snapshot_after_train", False)]
    assert args.solver2 == [("lr_policy", "step"), ("stepsize", 50), ("gamma", 0.5)]
    assert driver.parser().parse_args(["--solver2", "momentum=0.5"]).solver2 == [("momentum", 0.5)]
